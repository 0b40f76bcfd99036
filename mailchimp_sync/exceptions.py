"""Domain exceptions for everything that talks to Mailchimp.

Callers decide on two things only: may the same request succeed later
(:class:`MailchimpRetryableError`: throttling, server faults, timeouts), or
will it fail again as it is (:class:`MailchimpPermanentError` and its
subclasses).  Each error also carries a ``kind`` (one of :data:`KINDS`) so
that the Odoo side can tell people in one sentence what failed and what to
do, and Mailchimp's problem-detail ``title`` and ``detail`` so that a failed
row can say why.

A message is one plain sentence: never the API key, never a Python repr,
never the request's URL or query string.  The technical details go to the
server log where the error is raised (see :mod:`mailchimp_sync.client`).
"""

#: The host could not be reached at all (DNS, connection refused, TLS).
UNREACHABLE = "unreachable"
#: The host was reached but did not answer in time.
TIMEOUT = "timeout"
#: Mailchimp refused the API key (missing, invalid, wrong data centre).
AUTH = "auth"
#: The list, member, batch or webhook does not exist (404).
NOT_FOUND = "not_found"
#: Mailchimp throttles: too many requests or connections (429, bare 403).
RATE_LIMITED = "rate_limited"
#: Mailchimp itself failed (5xx).
SERVER_ERROR = "server_error"
#: Mailchimp refused the request as it is (400, 405, 422, ...).
INVALID = "invalid"
#: Mailchimp answered with something it does not document (a member
#: status, say), which the sync will not guess at.
UNEXPECTED = "unexpected"

KINDS = (UNREACHABLE, TIMEOUT, AUTH, NOT_FOUND, RATE_LIMITED, SERVER_ERROR, INVALID, UNEXPECTED)


class MailchimpError(Exception):
    """Base class: a request to Mailchimp did not succeed."""

    retryable = False
    kind = INVALID

    def __init__(self, message, status=None, title=None, detail=None, errors=None, kind=None):
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        if kind:
            if kind not in KINDS:
                raise ValueError(f"unknown Mailchimp error kind {kind!r}")
            self.kind = kind

    def as_text(self):
        """Return 'title: detail (field: message, ...)' for people to read."""
        parts = [p for p in (self.title, self.detail) if p]
        text = ": ".join(parts) if parts else str(self)
        if self.errors:
            fields = "; ".join(
                f"{e.get('field') or '-'}: {e.get('message')}" for e in self.errors
            )
            text = f"{text} ({fields})"
        return text

    @property
    def too_many_connections(self):
        """Mailchimp refused the request for its limit of ten simultaneous
        connections per API key (a 429 in the documented wording), not for
        anything the request asked: the same request may go at once."""
        return self.kind == RATE_LIMITED and "simultaneous connections" in (self.detail or "")


class MailchimpRetryableError(MailchimpError):
    """Throttled (429), server fault (5xx), bare 403/429, timeout or network error."""

    retryable = True
    kind = SERVER_ERROR


class MailchimpPermanentError(MailchimpError):
    """Mailchimp refused the request as it is (400, 405, 422, ...)."""


class MailchimpAuthError(MailchimpPermanentError):
    """The API key is missing, wrong, or for another data centre (401/403)."""

    kind = AUTH


class MailchimpNotFoundError(MailchimpPermanentError):
    """The list, member, batch or webhook does not exist (404)."""

    kind = NOT_FOUND


class MailchimpUnexpectedAnswer(MailchimpPermanentError):  # noqa: N818 - named as its siblings' kind
    """Mailchimp answered with a value it does not document: asked again,
    it answers the same, and deciding on a guess could subscribe or
    unsubscribe somebody by mistake."""

    kind = UNEXPECTED

    def __init__(self, message, email=None, value=None, **kwargs):
        super().__init__(message, **kwargs)
        self.email = email  # the member it was about
        self.value = value  # the value not documented
