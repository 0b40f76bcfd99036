"""The Odoo side of the cache: which rows Odoo changed since the last
cycle (memberships, removals, the blacklist, data), and what their Odoo
side is now.  Set-based SQL over the audience's rows; the stages
'odoo_changes' and 'data' of the cycle, and single rows (webhooks, Retry)."""

from odoo import api, models


# Each contact's blacklist entry (contact_id, active, mailchimp_changed_at):
# joined through every contact's address, a full refresh hashed all the
# contacts (1.4 million rows, 100 MB at a million members) to find the few
# that are blacklisted.  An entry deleted counts as out of the blacklist
# since its deletion (mailchimp.blacklist.removal), until the address is
# blacklisted again.
BLACKLISTED_SQL = """(SELECT c.id AS contact_id, b.active, b.mailchimp_changed_at
                        FROM mail_blacklist b JOIN mailing_contact c ON c.email_normalized = b.email
                      UNION ALL
                      SELECT c.id, FALSE, x.removed_at
                        FROM mailchimp_blacklist_removal x JOIN mailing_contact c ON c.email_normalized = x.email
                       WHERE NOT EXISTS (SELECT 1 FROM mail_blacklist o WHERE o.email = x.email))"""

# The cache row ``m`` holds another Odoo side than the one computed, ``st``.
ODOO_SIDE_DIFFERS = """(m.odoo_subscribed IS DISTINCT FROM st.sub
                        OR m.odoo_changed IS DISTINCT FROM st.changed
                        OR COALESCE(m.odoo_interests, '{}'::jsonb) IS DISTINCT FROM st.ivals
                        OR COALESCE(m.odoo_interests_changed, '{}'::jsonb) IS DISTINCT FROM st.itimes)"""


class MailchimpOdooChanges(models.AbstractModel):
    _name = "mailchimp.odoo.changes"
    _description = "Mailchimp Sync: Odoo-Side Changes"

    def _blacklist_clause(self, audience, alias="b"):
        return f"COALESCE({alias}.active, FALSE)" if audience.blacklist_unsubscribes else "FALSE"

    @api.model
    def _refresh_odoo_state(self, audience, member_ids=None, mark_todo=True, since=None, stamped_only=False):
        """Recompute the cached Odoo side (subscription and interest lists,
        with their change times) and mark rows whose Odoo side changed.

        A blacklisted email counts as not subscribed when the audience says
        so; entering or leaving the blacklist is then a change too.  A
        deleted contact is not subscribed since its deletion.  With
        ``since`` (an incremental cycle), only the rows the change stamps
        say may have changed are recomputed: proportional to the changes,
        not to the audience.  With ``stamped_only`` too, a row is not
        recomputed for being to do, only for a stamp: a first cycle's rows
        are all to do, and its stages wrote their Odoo side.
        """
        if member_ids is None and since:
            member_ids = self._changed_in_odoo_since(audience, since, stamped_only)
            if not member_ids:
                return 0
        state_sql, params = self._odoo_state_sql(audience, member_ids is not None)
        # MATERIALIZED: computed once.  Inlined, where the cache's statistics
        # said it was nearly empty, the planner could run it again for each
        # row it updates (as it did for the reconcile's write).
        self.env.cr.execute(
            f"""
            WITH st AS MATERIALIZED ({state_sql})
            UPDATE mailchimp_member m SET {self._odoo_state_assignments(mark_todo)}
              FROM st
             WHERE m.id = st.id AND {ODOO_SIDE_DIFFERS}
            """,
            dict(params, ids=member_ids),
        )
        self.env["mailchimp.member"].invalidate_model()
        return self.env.cr.rowcount

    def _odoo_state_sql(self, audience, some_rows=True, ids_param="ids"):
        """(SQL, parameters) of the rows' Odoo side now: a SELECT of ``id``,
        ``sub``, ``changed``, ``ivals`` and ``itimes`` over the audience's
        rows, or, with ``some_rows``, over the rows whose ids the parameter
        named ``ids_param`` lists (the caller adds it)."""
        columns, joins, params = self._odoo_state_parts(audience, lateral=some_rows)
        where_ids = f"AND m.id = ANY(%({ids_param})s::int[])" if some_rows else ""
        sql = f"""
                SELECT m.id, {columns}
                  FROM mailchimp_member m
             {joins}
                 WHERE m.audience_id = %(aud)s {where_ids}"""
        return sql, dict(params, aud=audience.id)

    def _odoo_state_assignments(self, mark_todo=True):
        """The SET clause of an UPDATE of cache rows ``m`` giving each the
        Odoo side computed as ``st`` (columns of :meth:`_odoo_state_parts`),
        and, with ``mark_todo``, marking a synced row whose Odoo side
        changed to do."""
        status = (f"""CASE WHEN m.sync_status IN ('ok', 'fail', 'live') AND {ODOO_SIDE_DIFFERS}
                                THEN 'todo' ELSE m.sync_status END""" if mark_todo else "m.sync_status")
        return f"""odoo_subscribed = st.sub, odoo_changed = st.changed,
                   odoo_interests = st.ivals, odoo_interests_changed = st.itimes,
                   sync_status = {status}"""

    def _odoo_state_parts(self, audience, contact="m.contact_id", deleted_at="m.odoo_deleted_at", lateral=True,
                          created=False):
        """(columns, joins, parameters) of the Odoo side of the contact
        ``contact`` (an SQL expression; NULL: the row has none, and
        ``deleted_at`` says since when): the columns ``sub``, ``changed``,
        ``ivals`` and ``itimes`` as the cache keeps them, and the joins
        they read, as lookups by index per row (``lateral``: for a few
        rows) or as plain joins (hashed: for the whole audience).  The
        stages that give rows their contact (match, create, Odoo-only)
        write the Odoo side with the contact, so that the Odoo-changes
        stage, which computes it again, finds nothing left to write.
        ``created``: the contacts are inserted by the same statement, which
        cannot see them; nothing can refer to them yet, so each lookup is
        an empty record instead (a blacklisted address of a new contact is
        found by the Odoo-changes stage)."""
        bl = self._blacklist_clause(audience)
        bl_time = "b.mailchimp_changed_at" if audience.blacklist_unsubscribes else "NULL::timestamp"
        lookups = [  # (alias, table, how the row finds its one record there)
            ("s", "mailing_subscription", f"s.contact_id = {contact} AND s.list_id = %(list)s"),
            ("r", "mailchimp_list_removal", f"r.contact_id = {contact} AND r.list_id = %(list)s"),
            ("b", BLACKLISTED_SQL, f"b.contact_id = {contact}"),
        ]
        params = {"list": audience.mailing_list_id.id}
        # Each mapped interest list is looked up as the audience's list is,
        # and its value and time put in the row's objects by name: grouping
        # every row's memberships to build them made the full refresh of a
        # million-member cache hash and aggregate two million rows.
        values, times = [], []
        for n, interest in enumerate(audience.interest_ids.filtered(lambda i: i.mailing_list_id and not i.stale)):
            lookups += [
                (f"s{n}", "mailing_subscription", f"s{n}.contact_id = {contact} AND s{n}.list_id = %(list{n})s"),
                (f"r{n}", "mailchimp_list_removal", f"r{n}.contact_id = {contact} AND r{n}.list_id = %(list{n})s"),
            ]
            params.update({f"list{n}": interest.mailing_list_id.id, f"interest{n}": interest.mailchimp_interest_id})
            values.append(f"%(interest{n})s::text, s{n}.id IS NOT NULL AND NOT COALESCE(s{n}.opt_out, FALSE)")
            times.append(f"%(interest{n})s::text, GREATEST(s{n}.mailchimp_changed_at, r{n}.removed_at)")
        if created:
            joins = "\n".join(
                f"""CROSS JOIN (SELECT NULL::int AS id, NULL::boolean AS opt_out, NULL::boolean AS active,
                                   NULL::timestamp AS mailchimp_changed_at, NULL::timestamp AS removed_at) {alias}"""
                for alias, _table, _on in lookups)
        elif lateral:
            # A lookup by index per row (LIMIT 1 keeps it one: none has two
            # records): for a chunk the planner guessed that hashing every
            # contact and membership would be cheaper, and it was four
            # times slower.
            joins = "\n".join(f"LEFT JOIN LATERAL (SELECT * FROM {table} {alias} WHERE {on} LIMIT 1) {alias} ON TRUE"
                               for alias, table, on in lookups)
        else:
            joins = "\n".join(f"LEFT JOIN {table} {alias} ON {on}" for alias, table, on in lookups)
        columns = f"""
                       CASE WHEN {contact} IS NULL THEN FALSE
                            ELSE (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE) AND NOT {bl})
                       END AS sub,
                       CASE WHEN {contact} IS NULL THEN {deleted_at}
                            ELSE GREATEST(s.mailchimp_changed_at, r.removed_at, {bl_time})
                       END AS changed,
                       CASE WHEN {contact} IS NULL THEN '{{}}'::jsonb
                            ELSE jsonb_build_object({", ".join(values)}) END AS ivals,
                       CASE WHEN {contact} IS NULL THEN '{{}}'::jsonb
                            ELSE jsonb_build_object({", ".join(times)}) END AS itimes"""
        return columns, joins, params

    def _changed_in_odoo_since(self, audience, since, stamped_only=False):
        """Rows whose Odoo side may have changed since ``since``: new or to-do
        rows (unless ``stamped_only``), rows whose contact was deleted, and
        rows of contacts whose membership of a mapped list, removal from
        one, blacklist entry or its deletion was stamped since then (the
        stamps are indexed)."""
        lists = [audience.mailing_list_id.id] + audience.interest_ids.mailing_list_id.ids
        # Each kind of row its own SELECT, each read through a partial index
        # (mailchimp.member's init): as one WHERE with ORs, the planner
        # scanned the whole cache (0.08 s at 100,000 members, 0.3 s of a
        # million-member incremental cycle that changed 2,000).
        todo = "" if stamped_only else """
            SELECT id FROM mailchimp_member WHERE audience_id = %(aud)s AND sync_status = 'todo'
            UNION"""
        self.env.cr.execute(
            f"""{todo}
            SELECT id FROM mailchimp_member WHERE audience_id = %(aud)s AND odoo_subscribed IS NULL
            UNION
            SELECT id FROM mailchimp_member WHERE audience_id = %(aud)s AND odoo_deleted_at >= %(since)s
            UNION
            SELECT m.id FROM mailing_subscription s
              JOIN mailchimp_member m ON m.contact_id = s.contact_id AND m.audience_id = %(aud)s
             WHERE s.mailchimp_changed_at >= %(since)s AND s.list_id = ANY(%(lists)s)
            UNION
            SELECT m.id FROM mailchimp_list_removal r
              JOIN mailchimp_member m ON m.contact_id = r.contact_id AND m.audience_id = %(aud)s
             WHERE r.removed_at >= %(since)s AND r.list_id = ANY(%(lists)s)
            UNION
            SELECT m.id FROM {BLACKLISTED_SQL} b
              JOIN mailchimp_member m ON m.contact_id = b.contact_id AND m.audience_id = %(aud)s
             WHERE b.mailchimp_changed_at >= %(since)s
            """,
            {"aud": audience.id, "since": since, "lists": lists},
        )
        return [r[0] for r in self.env.cr.fetchall()]

    def _tags_sql(self, contact_expr):
        return f"""SELECT COALESCE(jsonb_agg(t.name->>'en_US' ORDER BY t.name->>'en_US'), '[]'::jsonb)
                     FROM mailing_contact_res_partner_category_rel rel
                     JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                    WHERE rel.mailing_contact_id = {contact_expr}"""

    def _data_snapshot_sql(self, audience):
        """SQL of a fingerprint of the Odoo data a row syncs (aliases ``c``:
        the contact, ``p``: its partner): address, name, tags and every
        mapped field, with the audience's data settings.  A row whose
        fingerprint differs from the one stored at its last reconcile has
        Odoo data to reconcile (the sync's own writes are in the stored one)."""
        Mapping = self.env["mailchimp.merge.field"]
        columns = []
        for mapping in Mapping._of(audience):
            alias = "p" if mapping.odoo_model == "res.partner" else "c"
            columns += [f'{alias}."{column}"' for column in mapping._columns()]
        config = Mapping._data_config(audience)
        return (
            f"""md5(jsonb_build_array(%(data_config)s::text, c.email_normalized, c.name,
                                      ({self._tags_sql('c.id')}){"".join(", " + c for c in columns)})::text)""",
            {"data_config": config},
        )

    @api.model
    def _mark_data_changes(self, audience, since=None):
        """Mark rows whose Odoo data (address, names, tags, mapped fields)
        changed since their last reconcile; Mailchimp's changes are marked
        by the fetch.  A failed row is marked again once its Odoo data
        changes: that may be the fix.  With ``since`` (an incremental cycle
        whose data settings did not change), only contacts, partners and
        tags written since are fingerprinted.  Other addons extend
        ``mailchimp.sync._mailchimp_extra_merge_fields`` and may override
        this to mark rows of their own."""
        since = since or None  # an unset Datetime field reads False
        snapshot, params = self._data_snapshot_sql(audience)
        candidates = ""
        if since:
            # The contacts written since are listed first (a plain list the
            # planner counts right), so the rows looked at are theirs, not
            # every row of the audience.
            self.env.cr.execute(
                """SELECT id FROM mailing_contact WHERE write_date >= %(since)s
                    UNION
                   SELECT c.id FROM res_partner p JOIN mailing_contact c ON c.partner_id = p.id
                    WHERE p.write_date >= %(since)s
                    UNION
                   SELECT rel.mailing_contact_id FROM mailing_contact_res_partner_category_rel rel
                     JOIN res_partner_category t ON t.id = rel.res_partner_category_id
                    WHERE t.write_date >= %(since)s""",
                {"since": since},
            )
            params["contacts"] = [r[0] for r in self.env.cr.fetchall()]
            if not params["contacts"]:
                return
            candidates = "AND m.contact_id = ANY(%(contacts)s)"
        self.env.cr.execute(
            f"""
            UPDATE mailchimp_member m SET sync_status = 'todo'
              FROM mailing_contact c
         LEFT JOIN res_partner p ON p.id = c.partner_id
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id {candidates}
               AND m.mc_status IN ('subscribed', 'pending')
               AND (m.sync_status = 'ok' OR (m.sync_status = 'fail' AND m.sent_data ? 'odoo'))
               AND (m.sent_data->>'odoo') IS DISTINCT FROM {snapshot}
            """,
            {"aud": audience.id, **params},
        )
        self.env["mailchimp.member"].invalidate_model()

    def _data_snapshot_expression(self, audience):
        """SQL of what a reconciled row remembers of its Odoo data (alias
        ``m``: the cache row): the fingerprint of ``_data_snapshot_sql`` and
        the contact's name and address, which its partner may follow next
        time.  Parameters are inlined (and ``%`` doubled), so it fits in a
        statement that has parameters of its own."""
        snapshot, params = self._data_snapshot_sql(audience)
        sql = f"""COALESCE((SELECT jsonb_build_object('odoo', {snapshot},
                                                      'contact', jsonb_build_array(c.name, c.email_normalized))
                              FROM mailing_contact c
                         LEFT JOIN res_partner p ON p.id = c.partner_id
                             WHERE c.id = m.contact_id), '{{}}'::jsonb)"""
        return self.env.cr.mogrify(sql, params).decode().replace("%", "%%")
