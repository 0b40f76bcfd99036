"""Sentences for people: what failed, what to do, and whether the sync will
try again by itself.

The core client raises :class:`~..mailchimp_sync.exceptions.MailchimpError`
with a ``kind`` and logs the technical details where it happened; screens,
notifications and the run log show :func:`describe_error` instead, in the
user's language.
"""

import re

from odoo.exceptions import UserError

from ..mailchimp_sync import exceptions as mc
from ..mailchimp_sync import reasons

# A subscriber hash (md5 of the address) is Mailchimp's member id: managers
# may see it on the member form, marketing users never.
_HASH_RE = re.compile(r"\b[0-9a-f]{32}\b", re.IGNORECASE)


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
    if kind == mc.UNEXPECTED:
        return env._(
            "Mailchimp reported the member %(email)s with the status \"%(status)s\", which this sync does "
            "not know, so the sync of this audience stops here rather than subscribe or unsubscribe anybody "
            "on a guess: give that member a usual status at Mailchimp (or archive it), then run the sync "
            "again.",
            email=getattr(exc, "email", None) or "-", status=getattr(exc, "value", None) or "-",
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


def _mc_status_label(env, status):
    """Mailchimp's status in the user's language (the cache's selection labels)."""
    labels = dict(env["mailchimp.member"]._fields["mc_status"]._description_selection(env))
    return labels.get(status, status or env._("not a member"))


def _mailchimp_words(text, limit=300):
    """Mailchimp's own words, shortened, without a subscriber hash."""
    text = _HASH_RE.sub("…", " ".join(str(text or "").split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_reason(env, code, params=None):
    """Return one translated sentence for a failed row: what went wrong and
    what to do next (the sentence stored in ``mailchimp.member.sync_error``).

    :param env: an Odoo environment (its language is used).
    :param code: a reason code of :mod:`..mailchimp_sync.reasons`, as the
        core's reconcile rules and batch results return them.
    :param params: the reason's parameters (see the codes).
    """
    params = params or {}
    if code == reasons.OTHER_EMAIL_SUBSCRIBED:
        return env._(
            "This contact is also subscribed at Mailchimp under another address of this audience, while "
            "%(email)s is %(status)s there, so the sync cannot tell which address the person wants: correct "
            "or merge the addresses (on the contact or at Mailchimp), then press Retry.",
            email=params.get("email") or "-", status=_mc_status_label(env, params.get("mc_status")).lower(),
        )
    if code == reasons.NO_CONTACT:
        return env._(
            "This member is subscribed at Mailchimp, but no mailing contact has the address and none could "
            "be created (it may have been deleted in Odoo): create a contact with this address, or "
            "unsubscribe the member at Mailchimp, then press Retry."
        )
    if code == reasons.NO_EMAIL:
        return env._(
            "The contact is subscribed in Odoo but has no valid email address: correct the address on the "
            "mailing contact, then press Retry."
        )
    if code in (reasons.BLACKLISTED_IN_ODOO, reasons.BOUNCING_IN_ODOO) and not params.get("mc_status"):
        # Not a member at Mailchimp yet: the sync would have to create it.
        if code == reasons.BLACKLISTED_IN_ODOO:
            return env._(
                "The contact is subscribed in Odoo, but its address is blacklisted in Odoo, so the sync does "
                "not add it at Mailchimp: if the person wants your emails, remove the address from the "
                "blacklist and press Retry; otherwise remove the contact from the list."
            )
        return env._(
            "The contact is subscribed in Odoo, but its address bounces in Odoo, so the sync does not add it "
            "at Mailchimp: if the address works again, reset the contact's bounce count and press Retry; "
            "otherwise remove the contact from the list."
        )
    if code == reasons.BLACKLISTED_IN_ODOO:
        return env._(
            "The contact is subscribed in Odoo but %(status)s at Mailchimp, and its address is blacklisted in "
            "Odoo, so the sync does not subscribe it again: if the person wants your emails, remove the "
            "address from the blacklist and press Retry; otherwise remove the contact from the list.",
            status=_mc_status_label(env, params.get("mc_status")).lower(),
        )
    if code == reasons.BOUNCING_IN_ODOO:
        return env._(
            "The contact is subscribed in Odoo but %(status)s at Mailchimp, and its address bounces in Odoo, "
            "so the sync does not subscribe it again: if the address works again, reset the contact's "
            "bounce count and press Retry; otherwise remove the contact from the list.",
            status=_mc_status_label(env, params.get("mc_status")).lower(),
        )
    if code == reasons.CLEANED_AT_MAILCHIMP:
        return env._(
            "Mailchimp cleaned this address (it bounced, or its owner reported abuse) and does not let "
            "anyone subscribe it again, so a retry cannot help: ask the person for another address, or "
            "remove the contact from the list in Odoo."
        )
    if code == reasons.NO_RESULT:
        return env._(
            "Mailchimp returned no result for the last update of this member: press Include in Next Sync "
            "to send it again."
        )
    if code == reasons.COMPLIANCE_STATE:
        return env._(
            "Mailchimp will not subscribe this address: the person unsubscribed, bounced or is under "
            "compliance review there. Only the person can subscribe again, through one of your Mailchimp "
            "signup forms; until then, remove the contact from the list in Odoo."
        )
    if code == reasons.MEMBER_EXISTS:
        return env._(
            "Mailchimp already has a member with this address that the sync had not read yet: press Include "
            "in Next Sync, and the next sync reads it and updates it (if it fails again, run a Full Resync)."
        )
    if code == reasons.FORGOTTEN:
        return env._(
            "This address was permanently deleted at Mailchimp at the person's request, and the sync may not "
            "add it again: only the person can sign up again, through one of your Mailchimp forms. Remove "
            "the contact from the list in Odoo."
        )
    if code == reasons.INVALID_EMAIL:
        return env._(
            "Mailchimp refused the email address as fake or invalid: correct the address on the contact, "
            "then press Retry."
        )
    if code == reasons.INVALID_MERGE_FIELDS:
        return env._(
            "Mailchimp refused some of the member's data (%(fields)s): correct these values on the contact "
            "(or the merge field's settings at Mailchimp), then press Retry.",
            fields=_mailchimp_words(params.get("fields")),
        )
    if code == reasons.MEMBER_NOT_FOUND:
        return env._(
            "The member no longer exists at Mailchimp (it was deleted there): press Include in Next Sync, "
            "and the next sync decides again what to do with the contact."
        )
    if code == reasons.TEMPORARY:
        return env._(
            "Mailchimp could not process the last update of this member just then (error %(status)s): press "
            "Include in Next Sync to send it again.",
            status=params.get("status") or "-",
        )
    if code == reasons.REFUSED:
        words = ": ".join(p for p in (params.get("title"), params.get("detail")) if p)
        return env._(
            "Mailchimp refused the last update of this member (%(reason)s): correct what it names, then "
            "press Retry.",
            reason=_mailchimp_words(words or env._("error %s", params.get("status") or "-")),
        )
    return env._(
        "The sync could not handle this member (%(code)s): press Include in Next Sync; if it fails again, "
        "the details are in the server log.",
        code=code,
    )
