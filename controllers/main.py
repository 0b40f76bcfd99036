"""The two URLs Mailchimp calls: list (member) webhooks and batch webhooks.

Both carry the account's secret in the path.  Mailchimp validates a URL
with a GET, so GET answers 200 (with the right secret); POST carries a
form-encoded body (API-BEHAVIOUR.md §7.4, §8).

Answers: wrong or missing secret → 403; a body that is not a webhook the
addon understands → 400; a list or batch it does not know → 200 (logged),
so that Mailchimp stops retrying; Mailchimp unreachable while re-fetching
the member → 503, so that it retries later.  Work happens in a savepoint:
whatever fails changes nothing.  Secrets are compared in constant time and
never logged, not even in the access log (see ``_RedactSecrets``).
"""

import logging
import re

from odoo import SUPERUSER_ID, http
from odoo.http import request

from ..mailchimp_sync.exceptions import MailchimpError
from ..mailchimp_sync.webhooks import (
    BATCH_WEBHOOK_PATH,
    MEMBER_WEBHOOK_PATH,
    WebhookError,
    parse_batch_event,
    parse_member_event,
)

_logger = logging.getLogger(__name__)

# Real webhook bodies are a few kilobytes; anything bigger is refused (413)
# before it is parsed.
MAX_BODY = 64 * 1024

_SECRET_IN_PATH = re.compile(
    "(" + re.escape(MEMBER_WEBHOOK_PATH) + "|" + re.escape(BATCH_WEBHOOK_PATH) + r")/[^\s?\"]+"
)


class _RedactSecrets(logging.Filter):
    """Hide the secret of webhook URLs in werkzeug's access log lines."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- a log filter must never break logging
            return True
        if MEMBER_WEBHOOK_PATH in message or BATCH_WEBHOOK_PATH in message:
            record.msg = _SECRET_IN_PATH.sub(r"\1/***", message)
            record.args = ()
        return True


def _install_redaction():
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets())


_install_redaction()


class MailchimpWebhookController(http.Controller):
    @http.route(
        [MEMBER_WEBHOOK_PATH, f"{MEMBER_WEBHOOK_PATH}/<string:secret>"],
        type="http",
        auth="public",
        methods=["GET", "HEAD", "POST"],
        csrf=False,
        save_session=False,
        max_content_length=MAX_BODY,
    )
    def mailchimp_member_webhook(self, secret=None, **_form):
        return self._serve(secret, "member")

    @http.route(
        [BATCH_WEBHOOK_PATH, f"{BATCH_WEBHOOK_PATH}/<string:secret>"],
        type="http",
        auth="public",
        methods=["GET", "HEAD", "POST"],
        csrf=False,
        save_session=False,
        max_content_length=MAX_BODY,
    )
    def mailchimp_batch_webhook(self, secret=None, **_form):
        return self._serve(secret, "batch")

    # ------------------------------------------------------------------

    def _answer(self, status, text):
        return request.make_response(
            text, headers=[("Content-Type", "text/plain; charset=utf-8")], status=status
        )

    def _serve(self, secret, kind):
        # The work is the system's, not the public user's: run it as OdooBot,
        # so the notes, tracking and blacklist entries it writes are signed
        # by OdooBot rather than "Public user".
        env = request.env(user=SUPERUSER_ID, su=True)
        remote = request.httprequest.remote_addr
        account = env["mailchimp.webhook"]._account_for_secret(secret)
        if not account:
            _logger.info("Mailchimp %s webhook from %s refused: wrong or missing secret", kind, remote)
            return self._answer(403, "Forbidden")
        if request.httprequest.method in ("GET", "HEAD"):
            return self._answer(200, "OK")
        try:
            pairs = list(request.httprequest.form.items(multi=True))
            event = parse_member_event(pairs) if kind == "member" else parse_batch_event(pairs)
        except WebhookError as exc:
            _logger.info("Mailchimp %s webhook for account %s refused: %s", kind, account.id, exc)
            return self._answer(400, "Bad Request")
        try:
            with env.cr.savepoint():
                if kind == "member":
                    outcome = env["mailchimp.webhook"]._handle_member_event(account, event)
                else:
                    outcome = self._settle_batch(env, account, event)
        except MailchimpError as exc:
            _logger.warning(
                "Mailchimp %s webhook for account %s not applied, Mailchimp will retry: %s",
                kind,
                account.id,
                exc.as_text(),
            )
            return self._answer(503, "Try again later")
        _logger.info("Mailchimp %s webhook for account %s: %s", kind, account.id, outcome)
        return self._answer(200, "OK")

    def _settle_batch(self, env, account, event):
        batch = env["mailchimp.batch"].search(
            [("account_id", "=", account.id), ("mailchimp_batch_id", "=", event.batch_id)], limit=1
        )
        if not batch:
            return f"batch {event.batch_id} unknown"
        if batch.result_state == "done":
            return f"batch {event.batch_id} already settled"
        settled = batch._refresh_and_settle()
        return f"batch {event.batch_id}: {settled} operations settled"
