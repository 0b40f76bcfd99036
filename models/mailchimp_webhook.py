"""Webhooks: registration at Mailchimp and what a member event does.

Member events never trust the payload for state: each one re-fetches the
member (``GET /lists/{id}/members/{hash}``), merges it into the cache as a
fetch would, and runs that one row through the engine's single-row path
(match, create, Odoo state, reconcile).  Processing is idempotent: the same
event twice, or events out of order, end in the state Mailchimp holds now.
"""

import hmac
import logging
import secrets

from markupsafe import Markup
from odoo import api, models

from ..mailchimp_sync.client import subscriber_hash
from ..mailchimp_sync.exceptions import MailchimpError, MailchimpNotFoundError
from ..mailchimp_sync.webhooks import (
    batch_webhook_url,
    classify_webhooks,
    member_webhook_body,
    member_webhook_problems,
    member_webhook_url,
)
from ..tools.user_messages import describe_error

_logger = logging.getLogger(__name__)

NOT_SUBSCRIBED = ("unsubscribed", "cleaned", "archived", "transactional")


class MailchimpWebhook(models.AbstractModel):
    _name = "mailchimp.webhook"
    _description = "Mailchimp Webhooks"

    # ------------------------------------------------------------------
    # URLs and secrets
    # ------------------------------------------------------------------

    @api.model
    def _base_url(self):
        """Where Mailchimp reaches this Odoo: the explicit parameter
        ``mailchimp_sync.webhook_base_url`` if set (a public URL when Odoo
        sits behind a proxy), else ``web.base.url``."""
        params = self.env["ir.config_parameter"].sudo()
        return (
            params.get_param("mailchimp_sync.webhook_base_url") or params.get_param("web.base.url") or ""
        ).rstrip("/")

    @api.model
    def _urls(self, account):
        secret = account.sudo().webhook_secret
        base = self._base_url()
        return member_webhook_url(base, secret), batch_webhook_url(base, secret)

    @api.model
    def _account_for_secret(self, secret):
        """The active account whose webhook secret is ``secret``, compared in
        constant time against every account (no early exit).

        The secret a rotation is moving to is accepted too: Mailchimp checks
        each new URL with a request of its own while the rotation runs.
        An account without a secret (neutralized) accepts nothing."""
        found = self.env["mailchimp.account"]
        given = (secret or "").encode("utf-8", "replace")
        for account in self.env["mailchimp.account"].sudo().search([]):
            for candidate in (account.webhook_secret, account.webhook_secret_pending):
                expected = (candidate or "").encode("utf-8")
                if hmac.compare_digest(given, expected) and expected and not found:
                    found = account
        return found

    # ------------------------------------------------------------------
    # Registration
    # ------------------------------------------------------------------

    @api.model
    def _register_all(self, account, audiences=None):
        """Create or repair the webhooks at Mailchimp: the member webhook of
        each audience (of ``audiences`` only, when given) and, for the whole
        account, the batch webhook.  Records each one's health."""
        return self._sync_webhooks(account, audiences, repair=True)

    @api.model
    def _check_all(self, account, audiences=None):
        """Look at the webhooks at Mailchimp and record their health, changing nothing."""
        return self._sync_webhooks(account, audiences, repair=False)

    def _sync_webhooks(self, account, audiences, repair):
        account.ensure_one()
        if repair:
            account._ensure_webhook_secret()
        # Mailchimp validates a new URL with a GET to this server, which
        # must find the secret: have it written before calling out.
        self.env.flush_all()
        client = account._get_client()
        member_url, batch_url = self._urls(account)
        states = {}
        for audience in audiences if audiences is not None else account.audience_ids:
            states[audience] = self._record_webhook(
                audience, ("webhook_state", "webhook_message", "webhook_mailchimp_id"), repair,
                lambda a=audience: self._member_webhook(client, a, member_url, repair),
            )
        if audiences is None:
            states[account] = self._record_webhook(
                account, ("batch_webhook_state", "webhook_message", "batch_webhook_mailchimp_id"), repair,
                lambda: self._batch_webhook(client, batch_url, repair),
            )
        return states

    def _record_webhook(self, record, field_names, repair, check):
        """Run ``check`` (which returns state, message, Mailchimp id) and store
        its outcome on ``record``; a refusal by Mailchimp is stored too."""
        state_field, message_field, id_field = field_names
        try:
            state, message, webhook_id = check()
        except MailchimpError as exc:
            state = "missing" if repair else "unknown"
            message = self.env._("Mailchimp refused: %s", exc.as_text())
            webhook_id = record[id_field]
            _logger.info("Webhook of %s %s: %s", record._name, record.id, exc.as_text())
        record.write({state_field: state, message_field: message, id_field: webhook_id or False})
        return state

    def _reported_state(self, exact, stale, problems):
        """(state, message, id) of a webhook as found, without changing it."""
        if exact:
            if problems:
                return "wrong", "; ".join(problems), exact.get("id")
            return "ok", self.env._("Registered and healthy."), exact.get("id")
        if stale:
            return "wrong", self.env._("Registered with an old secret."), stale[0].get("id")
        return "missing", self.env._("Not registered at Mailchimp."), False

    def _repaired_state(self, done, webhook_id):
        """(state, message, id) after registering or repairing, naming what was done."""
        message = self.env._("Registered and healthy.")
        if done:
            message = f"{message} ({', '.join(done)})"
        return "ok", message, webhook_id

    def _member_webhook(self, client, audience, url, repair):
        """Return (state, message, webhook id) of one audience's member webhook."""
        list_id = audience.mailchimp_list_id
        exact, stale = classify_webhooks(client.list_webhooks(list_id), url)
        body = member_webhook_body(url)
        if not repair:
            return self._reported_state(exact, stale, member_webhook_problems(exact) if exact else [])
        done = []
        if exact:
            if member_webhook_problems(exact):
                client.update_webhook(
                    list_id, exact["id"], {"events": body["events"], "sources": body["sources"]}
                )
                done.append(self.env._("events and sources repaired"))
            webhook_id = exact["id"]
        elif stale:
            # Keep the first one, pointed at the current secret.
            client.update_webhook(list_id, stale[0]["id"], body)
            webhook_id = stale.pop(0)["id"]
            done.append(self.env._("moved to the current secret"))
        else:
            webhook_id = client.create_webhook(list_id, body).get("id")
            done.append(self.env._("created"))
        for old in stale:
            # Addon webhooks with a secret that no longer opens anything.
            client.delete_webhook(list_id, old["id"])
            done.append(self.env._("an outdated duplicate removed"))
        return self._repaired_state(done, webhook_id)

    def _batch_webhook(self, client, url, repair):
        exact, stale = classify_webhooks(client.list_batch_webhooks(), url)
        if not repair:
            disabled = bool(exact) and not exact.get("enabled", True)
            return self._reported_state(exact, stale, [self.env._("Registered but disabled.")] if disabled else [])
        done = []
        if exact:
            if not exact.get("enabled", True):
                client.update_batch_webhook(exact["id"], {"enabled": True})
                done.append(self.env._("enabled again"))
            webhook_id = exact["id"]
        elif stale:
            client.update_batch_webhook(stale[0]["id"], {"url": url, "enabled": True})
            webhook_id = stale.pop(0)["id"]
            done.append(self.env._("moved to the current secret"))
        else:
            webhook_id = client.create_batch_webhook(url).get("id")
            done.append(self.env._("created"))
        for old in stale:
            client.delete_batch_webhook(old["id"])
            done.append(self.env._("an outdated duplicate removed"))
        return self._repaired_state(done, webhook_id)

    # ------------------------------------------------------------------
    # Secret rotation
    # ------------------------------------------------------------------

    @api.model
    def _rotate_secret(self, account):
        """Move ``account`` to a new webhook secret without a moment in which
        Mailchimp's deliveries are refused; return (done, sentence).

        1. The new secret is committed as *pending* (accepted beside the
           current one): Mailchimp checks each new URL with its own request.
        2. The member webhook of each audience and the batch webhook are
           registered at the new URLs.  If one is refused, the ones just
           made are removed, the pending secret is dropped, and the old
           secret and webhooks stay as they were.
        3. The webhooks at the old URLs are removed, then the new secret
           becomes the current one, and the health of every webhook is
           checked and recorded.

        Every write to the account happens on a cursor of its own,
        committed at once: the request's own transaction only reads it, so
        its later commit (or rollback) cannot undo a step, nor conflict
        with one.  Between steps 1 and 3 both secrets are accepted.
        """
        account.ensure_one()
        account.check_access("write")
        client = account._get_client()
        new_secret = secrets.token_urlsafe(24)
        base = self._base_url()
        new_member_url, new_batch_url = member_webhook_url(base, new_secret), batch_webhook_url(base, new_secret)
        audiences = account.audience_ids
        if not account._set_webhook_secret_pending(new_secret):
            return False, self.env._(
                "The webhook secret was not changed: the account is being changed by someone else "
                "right now. Try again in a moment."
            )
        made = []  # (list id or None for the batch webhook, webhook id)
        try:
            for audience in audiences:
                step = self.env._("the member webhook of audience %s", audience.name)
                hook = client.create_webhook(audience.mailchimp_list_id, member_webhook_body(new_member_url))
                made.append((audience.mailchimp_list_id, hook.get("id")))
            step = self.env._("the batch webhook")
            hook = client.create_batch_webhook(new_batch_url)
            made.append((None, hook.get("id")))
        except MailchimpError as exc:
            _logger.info("Rotating the webhook secret of account %s failed: %s", account.id, exc.as_text())
            leftovers = self._remove_webhooks(client, made)
            account._set_webhook_secret_pending(None)
            message = self.env._(
                "The webhook secret was not changed: Mailchimp refused %(step)s (%(reason)s) The current "
                "secret and webhooks keep working.",
                step=step,
                reason=describe_error(self.env, exc),
            )
            if leftovers:
                message += " " + self.env._(
                    "Some webhooks made for the new secret could not be removed: press Register "
                    "Webhooks to clean them up."
                )
            return False, message
        # The new URLs work: the old ones go, and only then the secret moves.
        old_member_url, old_batch_url = self._urls(account)
        old = []
        for audience in audiences:
            exact, _stale = classify_webhooks(client.list_webhooks(audience.mailchimp_list_id), old_member_url)
            if exact:
                old.append((audience.mailchimp_list_id, exact["id"]))
        exact, _stale = classify_webhooks(client.list_batch_webhooks(), old_batch_url)
        if exact:
            old.append((None, exact["id"]))
        leftovers = self._remove_webhooks(client, old)
        with self.env.registry.cursor() as cr:
            env = self.env(cr=cr)
            rotated = env["mailchimp.account"].sudo().browse(account.id)
            rotated.write({"webhook_secret": new_secret, "webhook_secret_pending": False})
            rotated._message_log(
                body=Markup("<p>%s</p>") % self.env._(
                    "Webhook secret rotated: the webhooks were registered at the new URLs and the "
                    "old ones removed."
                ),
                author_id=self.env.user.partner_id.id,
            )
            states = env["mailchimp.webhook"]._check_all(rotated)
            unhealthy = [record.display_name for record, state in states.items() if state != "ok"]
        self.env.invalidate_all()
        message = self.env._("The webhook secret was rotated and the webhooks moved to the new URLs.")
        if leftovers:
            message += " " + self.env._(
                "Mailchimp kept some webhooks at the old URLs; they no longer open anything, and "
                "Register Webhooks removes them."
            )
        if unhealthy:
            message += " " + self.env._("Needing attention: %s.", ", ".join(unhealthy))
        return True, message

    def _remove_webhooks(self, client, webhooks):
        """Delete (list id or None, webhook id) pairs at Mailchimp; return
        how many could not be deleted (a refusal is logged, not raised)."""
        failed = 0
        for list_id, webhook_id in webhooks:
            if not webhook_id:
                continue
            try:
                if list_id:
                    client.delete_webhook(list_id, webhook_id)
                else:
                    client.delete_batch_webhook(webhook_id)
            except MailchimpError as exc:
                failed += 1
                _logger.info("Could not remove Mailchimp webhook %s: %s", webhook_id, exc.as_text())
        return failed

    # ------------------------------------------------------------------
    # Member events
    # ------------------------------------------------------------------

    @api.model
    def _handle_member_event(self, account, event):
        """Apply one member webhook; return a short outcome for the log.

        Raises MailchimpError when the member cannot be re-fetched (the
        caller answers so that Mailchimp retries)."""
        if event.is_campaign:
            return "campaign event ignored"
        audience = self.env["mailchimp.audience"].search(
            [("account_id", "=", account.id), ("mailchimp_list_id", "=", event.list_id)], limit=1
        )
        if not audience:
            return "unknown list"
        if not audience.mailing_list_id:
            return "audience without a subscription list"
        client = account._get_client()
        # Fetch first: a Mailchimp error then changes nothing.
        try:
            member = client.get_member(audience.mailchimp_list_id, event.email)
        except MailchimpNotFoundError:
            member = None
        if event.type == "upemail":
            refusal = self._upemail_unconfirmed(client, audience, event, member)
            if refusal:
                return f"upemail ignored: {refusal}"
        # One writer per member: hold the row(s) before reading their state.
        Member = self.env["mailchimp.member"]
        emails = [event.email] + ([event.old_email] if event.type == "upemail" else [])
        Member._lock_rows([r.id for r in (Member._row_of(audience, e) for e in emails) if r])
        if event.type == "upemail":
            refusal = self._upemail_outdated(audience, event)
            if refusal:
                return f"upemail ignored: {refusal}"
            Member._move_email(audience, event.old_email, event.email)
        row = self._apply_fetched(audience, event.email, member)
        if not row:
            return "member unknown on both sides"
        self.env.flush_all()
        if event.type in ("unsubscribe", "cleaned") and row.mc_status in NOT_SUBSCRIBED:
            # Only the person leaving cancels what is queued: a profile
            # event must not cancel a 'pending' retry queued after
            # "Member In Compliance State" (it would be re-queued as
            # 'subscribed' and fail again).
            self._cancel_unsent(row, self.env._("Cancelled: the member is %s at Mailchimp.", row.mc_status))
        self.env["mailchimp.reconcile"]._sync_members(audience, row.ids, from_mailchimp=True)
        self.env.invalidate_all()
        if row.mc_status == "cleaned":
            # (The reconcile marked a linked contact already; this also
            # covers an address no contact holds yet.  Idempotent.)
            self.env["mailing.contact"]._mailchimp_mark_cleaned(audience, row.ids)
            self.env["mailchimp.odoo.changes"]._refresh_odoo_state(audience, row.ids, mark_todo=False)
        return f"{event.type} applied"

    def _upemail_unconfirmed(self, client, audience, event, member):
        """Why Mailchimp does not confirm this ``upemail`` (None if it does).

        The event moves a contact to another address, so it is believed
        only when Mailchimp shows the rename: the new address is a member
        whose ``unique_email_id`` is the ``new_id`` the event announces,
        and the old address is no member any more (a rename frees it).  A
        forged or replayed event, or one whose rename was undone since,
        then renames nobody and unsubscribes nobody."""
        if not event.fired_at or not event.new_id:
            return "the event has no time or no new member id"
        if not member:
            return "Mailchimp has no member at the new address"
        if member.get("unique_email_id") != event.new_id:
            return "the member at the new address is not the one the event names"
        if subscriber_hash(event.old_email) == subscriber_hash(event.email):
            return None  # a change of case only: the same member
        try:
            client.get_member(audience.mailchimp_list_id, event.old_email)
        except MailchimpNotFoundError:
            return None
        return "the old address is still a member at Mailchimp"

    def _upemail_outdated(self, audience, event):
        """Why this ``upemail`` is older than what the cache knows (None if
        it is not): the cache saw the old address as a live member changed
        after the event's time, so the row is not the member renamed then.
        A row the cache marked archived itself (Mailchimp answered 404) has
        a time of Odoo's clock, not Mailchimp's: it proves nothing."""
        old_row = self.env["mailchimp.member"]._row_of(audience, event.old_email)
        if (old_row.mc_status and old_row.mc_status != "archived" and old_row.mc_last_changed
                and old_row.mc_last_changed > event.fired_at):
            return "the cache knows a later change of the old address"
        return None

    def _apply_fetched(self, audience, email, member):
        """Merge the re-fetched member into the cache; a member Mailchimp no
        longer has (404: deleted) counts as archived from now on."""
        Member = self.env["mailchimp.member"]
        self.env.flush_all()  # the engine reads and writes the cache in SQL
        if member:
            # What a person changed at Mailchimp, at Mailchimp's time, even
            # where it matches an update of ours in flight.
            Member._merge_page(audience, [member], echoes=False)
            Member.invalidate_model()
            return Member._row_of(audience, member.get("email_address") or email)
        row = Member._row_of(audience, email)
        if row and row.mc_status and row.mc_status != "archived":
            # Mailchimp's own time of the deletion is unknown: it is now
            # (to the microsecond, so an Odoo change of this very second
            # does not win).
            self.env.cr.execute(
                """UPDATE mailchimp_member
                      SET mc_status = 'archived', sync_status = 'todo',
                          mc_status_changed = clock_timestamp() AT TIME ZONE 'UTC',
                          mc_last_changed = clock_timestamp() AT TIME ZONE 'UTC'
                    WHERE id = %s""",
                (row.id,),
            )
            row.invalidate_recordset()
        return row if row and row.mc_status else Member

    def _cancel_unsent(self, row, reason):
        """Cancel the row's updates not yet sent to Mailchimp (a queued
        subscribe must not undo the member's unsubscribe)."""
        return len(self.env["mailchimp.update"]._cancel_unsent_of(row.ids, reason))
