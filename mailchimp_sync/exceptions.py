"""Domain exceptions for everything that talks to Mailchimp.

Callers decide on two things only: may the same request succeed later
(:class:`MailchimpRetryableError`: throttling, server faults, timeouts), or
will it fail again as it is (:class:`MailchimpPermanentError` and its
subclasses).  Mailchimp's problem-detail ``title`` and ``detail`` are kept so
that a failed row can say why.  No exception message ever carries the API key.
"""


class MailchimpError(Exception):
    """Base class: a request to Mailchimp did not succeed."""

    retryable = False

    def __init__(self, message, status=None, title=None, detail=None, errors=None):
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []

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


class MailchimpRetryableError(MailchimpError):
    """Throttled (429), server fault (5xx), bare 403/429, timeout or network error."""

    retryable = True


class MailchimpPermanentError(MailchimpError):
    """Mailchimp refused the request as it is (400, 405, 422, ...)."""


class MailchimpAuthError(MailchimpPermanentError):
    """The API key is missing, wrong, or for another data centre (401/403)."""


class MailchimpNotFoundError(MailchimpPermanentError):
    """The list, member, batch or webhook does not exist (404)."""
