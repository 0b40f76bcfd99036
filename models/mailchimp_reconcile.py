import json

from psycopg2.extras import execute_values

from odoo import api, models

from ..mailchimp_sync.reconcile import AudienceRules, reconcile_row, row_state_from_cache

CHUNK = 5000


class MailchimpReconcile(models.AbstractModel):
    """Reconcile cache rows: load a chunk (under the rows' locks), decide
    each row with the pure core (``mailchimp_sync.reconcile``), and apply
    the decisions in bulk through the models that own each table: Odoo
    memberships at once, Mailchimp changes as queued updates."""

    _name = "mailchimp.reconcile"
    _description = "Mailchimp Reconcile"

    @api.model
    def _load_rows(self, audience, after_id=0, member_ids=None, limit=CHUNK):
        """Lock and load a chunk: the rows still to do after ``after_id``, or
        the given rows.  The lock comes first, so a webhook or Retry holding
        one of them is waited for, and nobody decides the row meanwhile."""
        cr = self.env.cr
        if member_ids is None:
            cr.execute(
                """SELECT id FROM mailchimp_member
                    WHERE audience_id = %s AND sync_status = 'todo' AND id > %s
                 ORDER BY id LIMIT %s""",
                (audience.id, after_id, limit),
            )
            member_ids = [r[0] for r in cr.fetchall()]
        if not member_ids:
            return []
        self.env["mailchimp.member"]._lock_rows(member_ids)
        cr.execute(
            """
            SELECT m.id, m.email, m.mc_status, m.mc_status_changed, m.mc_first_name, m.mc_last_name,
                   m.mc_name_changed, m.mc_interests, m.mc_interests_changed, m.contact_id,
                   m.odoo_subscribed, m.odoo_changed, m.odoo_interests, m.odoo_interests_changed,
                   m.sent_data, m.sync_status, c.name AS contact_name, c.first_name, c.last_name,
                   c.email_normalized AS contact_email, COALESCE(c.message_bounce, 0) AS bounce,
                   c.write_date AS contact_write_date, COALESCE(b.active, FALSE) AS blacklisted
              FROM mailchimp_member m
         LEFT JOIN mailing_contact c ON c.id = m.contact_id
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE m.id = ANY(%s)
          ORDER BY m.id
            """,
            (list(member_ids),),
        )
        rows = cr.dictfetchall()
        # Per contact, the rows subscribed at Mailchimp (the "same contact,
        # other email" rule) and the tags: one grouped query each for the
        # chunk rather than a subquery per row.
        contact_ids = list({r["contact_id"] for r in rows if r["contact_id"]})
        cr.execute(
            """SELECT contact_id, array_agg(id) FROM mailchimp_member
                WHERE audience_id = %s AND contact_id = ANY(%s) AND mc_status IN ('subscribed', 'pending')
             GROUP BY contact_id""",
            (audience.id, contact_ids),
        )
        subscribed_rows = dict(cr.fetchall())
        cr.execute(
            """SELECT rel.mailing_contact_id, array_agg(t.name->>'en_US' ORDER BY t.name->>'en_US')
                 FROM mailing_contact_res_partner_category_rel rel
                 JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                WHERE rel.mailing_contact_id = ANY(%s)
             GROUP BY rel.mailing_contact_id""",
            (contact_ids,),
        )
        tags = dict(cr.fetchall())
        in_flight = self.env["mailchimp.update"]._in_flight_members(member_ids)
        for row in rows:
            row["in_flight"] = row["id"] in in_flight
            contact_id = row["contact_id"]
            row["other_sub"] = any(i != row["id"] for i in subscribed_rows.get(contact_id, ()))
            row["tags"] = tags.get(contact_id, []) if contact_id else None
        return rows

    @api.model
    def _reconcile_rows(self, audience, run, rows, in_flight_too=False):
        """Decide every row of a chunk, then apply the decisions in bulk.
        Rows with an update in flight wait for its result (settle first,
        then decide), except where Mailchimp just told us the member's
        state (a webhook: ``in_flight_too``).  ``run`` takes the counters
        (a run, or a tally)."""
        rows = [r for r in rows if in_flight_too or not r["in_flight"]]
        if not rows:
            return
        mapped = audience.interest_ids.filtered("mailing_list_id")
        interest_lists = {i.mailchimp_interest_id: i.mailing_list_id.id for i in mapped}
        # Plain tuples: read once per chunk, not through the ORM per row.
        interests = [(i.mailchimp_interest_id, i.trust_override or None) for i in mapped]
        rules = AudienceRules(trust_override=audience.trust_override or None, double_optin=audience.double_optin)
        extra = self.env["mailchimp.sync"]._mailchimp_extra_merge_fields(
            audience, [r["contact_id"] for r in rows if r["contact_id"]]
        )
        Update = self.env["mailchimp.update"]
        unsent = Update._unsent_for([r["id"] for r in rows])
        subscribe, unsubscribe, names, updates, row_vals = [], [], [], [], []
        # Counted here and written once: an ORM write per row would cost
        # more than the decision itself.
        to_add = to_remove = failed = 0
        list_id = audience.mailing_list_id.id
        for row in rows:
            state = row_state_from_cache(row, interests, extra)
            state.pending_cancelled = any(
                u["payload"].get("status") == "pending" for u in unsent.get(row["id"], []) if u["kind"] == "member"
            )
            decision = reconcile_row(state, rules)
            contact_id = row["contact_id"]
            if decision.odoo_subscribe is not None:
                (subscribe if decision.odoo_subscribe else unsubscribe).append((contact_id, list_id))
            for interest_id, value in decision.odoo_interests.items():
                (subscribe if value else unsubscribe).append((contact_id, interest_lists[interest_id]))
            if decision.odoo_names and contact_id:
                names.append((contact_id, *decision.odoo_names))
            body, tags = decision.mc_body, decision.tags
            if body and "email_address" in body and tags:
                # A member we create gets its tags in the same request: a
                # separate tags operation could run before the create.
                body["tags"] = [t["name"] for t in tags if t["status"] == "active"]
                tags = []
            if body:
                updates.append((row["id"], "member", body))
                subscribing = body.get("status") in ("subscribed", "pending")
                if subscribing and row["mc_status"] not in ("subscribed", "pending"):
                    to_add += 1
                elif body.get("status") == "unsubscribed":
                    to_remove += 1
            if tags:
                updates.append((row["id"], "tags", {"tags": tags}))
            failed += decision.status == "fail"
            sent = dict(row["sent_data"] or {})
            if decision.status != "fail" and decision.final_subscribed:
                sent.update(
                    names=list(decision.synced_names or ("", "")),
                    tags=sorted(decision.synced_tags or ()),
                    merge_fields=decision.synced_merge_fields or {},
                    odoo_name=self._final_contact_name(row, decision),
                )
            row_vals.append((row["id"], decision.status, decision.reason, json.dumps(sent)))
        self.env["mailing.subscription"]._mailchimp_apply(audience, subscribe, unsubscribe)
        self.env["mailchimp.member"]._apply_names(names)
        queued = Update._queue(audience, updates, unsent)
        run.reconciled += len(rows)
        run.to_add += to_add
        run.to_remove += to_remove
        run.failed += failed
        run.odoo_changes += len(subscribe) + len(unsubscribe)
        run.odoo_opt_ins += len(subscribe)
        run.odoo_opt_outs += len(unsubscribe)
        run.updates_queued += queued
        self._write_rows(row_vals)
        if subscribe or unsubscribe:
            # Our own writes are not Odoo-side changes to reconcile again.
            self.env["mailchimp.member"]._refresh_odoo_state(audience, [r["id"] for r in rows], mark_todo=False)

    @staticmethod
    def _final_contact_name(row, decision):
        if decision.odoo_names:
            first, last = decision.odoo_names
            return " ".join(p for p in (first, last) if p) or row["contact_name"]
        return row["contact_name"]

    def _write_rows(self, row_vals):
        execute_values(
            self.env.cr._obj,
            """UPDATE mailchimp_member m
                  SET sync_status = v.status, sync_error = v.reason, sent_data = v.sent::jsonb,
                      last_synced = now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(id, status, reason, sent)
                WHERE m.id = v.id""",
            row_vals,
            page_size=1000,
        )
        self.env["mailchimp.member"].invalidate_model()
