"""Sentences for people: what failed, what to do, and whether the sync will
try again by itself.

The core client raises :class:`~..mailchimp_sync.exceptions.MailchimpError`
with a ``kind`` and logs the technical details where it happened; screens,
notifications and the run log show :func:`describe_error` instead, in the
user's language.
"""

from odoo.exceptions import UserError

from ..mailchimp_sync import exceptions as mc


def describe_error(env, exc):
    """Return one translated sentence that tells a marketer what went wrong
    with a Mailchimp request, what to do about it, and, for failures that
    pass by themselves, that the sync will try again.

    :param env: an Odoo environment (its language is used).
    :param exc: the exception caught; any exception is accepted, but only
        :class:`MailchimpError` and :class:`UserError` get a specific text.
    """
    if isinstance(exc, UserError):
        # Already written for people.
        return exc.args[0] if exc.args else str(exc)
    if not isinstance(exc, mc.MailchimpError):
        return env._(
            "The sync stopped on an unexpected error; the details are in the server log, "
            "and the sync will try again on its next run."
        )
    kind = exc.kind
    if kind == mc.UNREACHABLE:
        return env._(
            "Odoo could not reach Mailchimp: check this server's internet connection "
            "(and the API address of the Mailchimp account, if one is set); "
            "the sync will try again on its next run."
        )
    if kind == mc.TIMEOUT:
        return env._(
            "Mailchimp did not answer in time; the sync will try again on its next run, "
            "and if this keeps happening, raise the timeout of the Mailchimp account."
        )
    if kind == mc.AUTH:
        return env._(
            "Mailchimp did not accept the API key: copy a valid key from Mailchimp "
            "(Profile › Extras › API keys) into the Mailchimp account and test the connection again."
        )
    if kind == mc.NOT_FOUND:
        return env._(
            "Mailchimp could not find the audience or record that was asked for, "
            "so it was probably deleted there: fetch the audiences again on the Mailchimp account "
            "and check this audience's mapping."
        )
    if kind == mc.RATE_LIMITED:
        return env._(
            "Mailchimp is receiving too many requests from this account right now; "
            "nothing needs to be done, the sync will try again on its next run."
        )
    if kind == mc.SERVER_ERROR:
        return env._(
            "Mailchimp had a problem on its side; nothing needs to be done, "
            "the sync will try again on its next run."
        )
    if exc.title or exc.detail:
        # Mailchimp's own title and detail name the field or rule at fault.
        return env._(
            "Mailchimp did not accept the request (%(reason)s): correct what it names and try again.",
            reason=exc.as_text(),
        )
    return env._(
        "Mailchimp did not accept the request: check the audience's settings and try again; "
        "the details are in the server log."
    )
