import json

from psycopg2.extras import execute_values

from odoo import api, fields, models

from ..mailchimp_sync.members import merge_member

MAILCHIMP_STATUSES = [
    ("subscribed", "Subscribed"),
    ("pending", "Pending"),
    ("unsubscribed", "Unsubscribed"),
    ("cleaned", "Cleaned"),
    ("transactional", "Transactional"),
    ("archived", "Archived"),
]

SYNC_STATUSES = [
    ("todo", "To Do"),
    ("live", "In Flight"),
    ("ok", "In Sync"),
    ("fail", "Failed"),
    ("redo", "Retry as Pending"),
]
# The Mailchimp-side columns a fetch writes (and a settled result).
MC_COLUMNS = (
    "subscriber_hash", "email", "mc_status", "mc_last_changed", "mc_status_changed", "mc_first_name",
    "mc_last_name", "mc_name_changed", "mc_interests", "mc_interests_changed", "mc_unique_email_id",
    "mc_merge_fields", "mc_merge_fields_changed", "mc_tags", "mc_tags_partial",
)
MC_TYPES = {
    "subscriber_hash": "varchar", "email": "varchar", "mc_status": "varchar", "mc_last_changed": "timestamp",
    "mc_status_changed": "timestamp", "mc_first_name": "varchar", "mc_last_name": "varchar",
    "mc_name_changed": "timestamp", "mc_interests": "jsonb", "mc_interests_changed": "jsonb",
    "mc_unique_email_id": "varchar", "mc_merge_fields": "jsonb", "mc_merge_fields_changed": "jsonb",
    "mc_tags": "jsonb", "mc_tags_partial": "boolean",
}
CREATE_CHUNK = 5000
# mass_mailing counts a contact as bouncing from 1 bounce and blacklists
# from 5 (BLACKLIST_MAX_BOUNCED_LIMIT): a cleaned address gets the latter.
CLEANED_BOUNCE_COUNT = 5


def _recordset_sql(extra=""):
    """``jsonb_to_recordset`` column list of the Mailchimp side."""
    return ", ".join(f"{c} {MC_TYPES[c]}" for c in MC_COLUMNS) + extra


class MailchimpMember(models.Model):
    """The sync cache: one row per audience and member-or-contact.

    The Mailchimp side mirrors what the last fetch saw, with a change
    timestamp per field that only moves when the value changed (Mailchimp's
    own ``last_changed`` moves on any edit).  The Odoo side caches the
    contact's memberships with the time each last changed.  This model owns
    the table's bulk operations (set-based SQL, a page or chunk at a time);
    the reconcile of rows lives beside them in mailchimp_member_reconcile.
    """

    _name = "mailchimp.member"
    _description = "Mailchimp Sync Cache Row"
    _order = "audience_id, email, id"
    _rec_name = "email"

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade", index=True
    )
    email = fields.Char(index=True)

    # Mailchimp side
    subscriber_hash = fields.Char(
        size=32, groups="mailchimp_sync.group_mailchimp_manager",
        help="md5 of the lowercased email: Mailchimp's member id.",
    )
    mc_status = fields.Selection(MAILCHIMP_STATUSES, string="Mailchimp Status")
    mc_last_changed = fields.Datetime(string="Mailchimp Last Changed")
    mc_status_changed = fields.Datetime(string="Status Changed at Mailchimp")
    mc_first_name = fields.Char(string="First Name at Mailchimp")
    mc_last_name = fields.Char(string="Last Name at Mailchimp")
    mc_name_changed = fields.Datetime(string="Name Changed at Mailchimp")
    mc_interests = fields.Json(string="Interests at Mailchimp")
    mc_interests_changed = fields.Json(string="Interest Change Times at Mailchimp")
    mc_unique_email_id = fields.Char(string="Mailchimp Unique Email ID")
    mc_merge_fields = fields.Json(string="Merge Fields at Mailchimp")
    mc_merge_fields_changed = fields.Json(
        string="Merge Field Change Times at Mailchimp",
        help="Per merge field, when its value last changed at Mailchimp (it moves only when the value does).",
    )
    mc_tags = fields.Json(string="Tags at Mailchimp")
    mc_tags_partial = fields.Boolean(
        string="Some Tags Not Shown", help="Mailchimp showed only some of this member's tags (it shows 50)."
    )

    # Odoo side
    contact_id = fields.Many2one(
        "mailing.contact", string="Mailing Contact", ondelete="set null", index="btree_not_null"
    )
    partner_id = fields.Many2one(
        "res.partner", ondelete="set null", index="btree_not_null"
    )
    odoo_deleted_at = fields.Datetime(
        string="Contact Deleted", help="When the Odoo contact of this row was deleted."
    )
    odoo_subscribed = fields.Boolean(string="Subscribed in Odoo")
    odoo_changed = fields.Datetime(string="Subscription Changed in Odoo")
    odoo_interests = fields.Json(string="Interests in Odoo")
    odoo_interests_changed = fields.Json(string="Interest Change Times in Odoo")
    sent_data = fields.Json(
        help="Data (names, tags, merge fields) Mailchimp is known to hold, so that "
        "only real changes are sent."
    )

    sync_status = fields.Selection(
        SYNC_STATUSES, default="todo", required=True, index=True
    )
    sync_error = fields.Text(string="Why It Failed")
    last_synced = fields.Datetime()
    update_ids = fields.One2many("mailchimp.update", "member_id", string="Updates")
    pending_update_count = fields.Integer(compute="_compute_pending_update_count")

    _sql_constraints = [
        (
            "hash_uniq",
            "unique(audience_id, subscriber_hash)",
            "One cache row per audience and Mailchimp member.",
        ),
    ]

    def init(self):
        res = super().init()
        # The access paths of the bulk stages: rows of an audience by
        # contact, by status in id order, and by email.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_contact_idx
                ON mailchimp_member (audience_id, contact_id);
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_status_idx
                ON mailchimp_member (audience_id, sync_status, id);
            CREATE INDEX IF NOT EXISTS mailchimp_member_audience_email_idx
                ON mailchimp_member (audience_id, lower(email));
            """
        )
        return res

    @api.depends("update_ids.state")
    def _compute_pending_update_count(self):
        counts = dict(
            self.env["mailchimp.update"]._read_group(
                [("member_id", "in", self.ids), ("state", "in", ("queued", "sent"))],
                ["member_id"],
                ["__count"],
            )
        )
        for member in self:
            member.pending_update_count = counts.get(member, 0)

    # ------------------------------------------------------------------
    # One writer per member
    # ------------------------------------------------------------------

    @api.model
    def _lock_rows(self, member_ids):
        """Lock cache rows, in id order (no deadlock between two writers),
        before reading their state and queueing updates for them: a webhook,
        Retry and a reconcile chunk never decide the same member at once."""
        if member_ids:
            self.env.flush_all()
            self.env.cr.execute(
                "SELECT id FROM mailchimp_member WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                (list(member_ids),),
            )

    # ------------------------------------------------------------------
    # Fetch: merge a page of members
    # ------------------------------------------------------------------

    @api.model
    def _merge_page(self, audience, members):
        """Upsert one page of members into the cache (two statements).
        Returns how many rows changed."""
        by_hash = {}
        for member in members:
            by_hash[member.get("id")] = member  # pages overlap: keep one
        if not by_hash:
            return 0
        cr = self.env.cr
        cr.execute(
            """SELECT subscriber_hash, mc_status, mc_status_changed, mc_first_name, mc_last_name,
                      mc_name_changed, mc_interests, mc_interests_changed, mc_last_changed, email,
                      mc_merge_fields, mc_merge_fields_changed, mc_tags, mc_tags_partial
                 FROM mailchimp_member WHERE audience_id = %s AND subscriber_hash = ANY(%s)""",
            (audience.id, list(by_hash)),
        )
        keys = ("subscriber_hash", "mc_status", "mc_status_changed", "mc_first_name", "mc_last_name",
                "mc_name_changed", "mc_interests", "mc_interests_changed", "mc_last_changed", "email",
                "mc_merge_fields", "mc_merge_fields_changed", "mc_tags", "mc_tags_partial")
        cached = {row[0]: dict(zip(keys, row, strict=True)) for row in cr.fetchall()}
        records = []
        for member_hash, member in by_hash.items():
            old = cached.get(member_hash)
            values = merge_member(old, member)
            if old and all(old[k] == values[k] for k in
                           ("mc_last_changed", "mc_status", "email", "mc_first_name", "mc_last_name",
                            "mc_interests", "mc_merge_fields", "mc_tags", "mc_tags_partial")):
                continue  # unchanged (typically the echo of our own update): no write
            records.append(values)
        if not records:
            return 0
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in MC_COLUMNS if c != "subscriber_hash")
        cr.execute(
            f"""
            INSERT INTO mailchimp_member AS m (audience_id, {", ".join(MC_COLUMNS)}, sync_status,
                                              create_uid, write_uid, create_date, write_date)
            SELECT %(aud)s, {", ".join("x." + c for c in MC_COLUMNS)}, 'todo',
                   %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
              FROM jsonb_to_recordset(%(rows)s::jsonb) AS x({_recordset_sql()})
            ON CONFLICT (audience_id, subscriber_hash) DO UPDATE SET {sets},
                -- only a real change at Mailchimp makes the row work to do
                sync_status = CASE
                    WHEN m.mc_last_changed IS DISTINCT FROM EXCLUDED.mc_last_changed
                      OR m.mc_status IS DISTINCT FROM EXCLUDED.mc_status
                    THEN 'todo' ELSE m.sync_status END,
                write_date = EXCLUDED.write_date
            """,
            {"aud": audience.id, "uid": self.env.uid, "rows": self._json_rows(records)},
        )
        self.invalidate_model()
        return len(records)

    @staticmethod
    def _json_rows(records):
        return json.dumps(records, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))

    @api.model
    def _write_fetched_values(self, member_vals):
        """Write the Mailchimp side of rows from [(id, merge_member values)]
        (settled batch results).  A row whose member's address changed (a
        rename sent from Odoo) moves to the new subscriber hash."""
        self._release_hashes([(member_id, values["subscriber_hash"]) for member_id, values in member_vals])
        rows = [{"id": member_id, **values} for member_id, values in member_vals]
        sets = ", ".join(f"{c} = x.{c}" for c in MC_COLUMNS if c != "mc_unique_email_id")
        self.env.cr.execute(
            f"""UPDATE mailchimp_member m
                   SET {sets}, mc_unique_email_id = COALESCE(x.mc_unique_email_id, m.mc_unique_email_id)
                  FROM jsonb_to_recordset(%s::jsonb) AS x(id int, {_recordset_sql()})
                 WHERE m.id = x.id""",
            (self._json_rows(rows),),
        )
        self.invalidate_model()

    # ------------------------------------------------------------------
    # Remove invalid, match, create, Odoo-only, duplicates
    # ------------------------------------------------------------------

    @api.model
    def _remove_invalid(self, audience):
        """Drop rows left with neither side; never one with an update that
        may have reached Mailchimp (its result must find its row)."""
        self.env.cr.execute(
            """DELETE FROM mailchimp_member m
                WHERE m.audience_id = %s AND m.mc_status IS NULL AND m.contact_id IS NULL
                  AND NOT EXISTS (SELECT 1 FROM mailchimp_update u
                                   WHERE u.member_id = m.id AND u.state = 'sent')""",
            (audience.id,),
        )
        self.invalidate_model()

    @api.model
    def _match_contacts(self, audience, member_ids=None):
        """Give rows without a contact their best contact (and partner)."""
        # Ranked in one statement: the one owner of the email; else the
        # lowest id already on the list; else the lowest with any history
        # on it; else the lowest.  A contact deleted in Odoo is not matched
        # again unless Mailchimp changed the member after the deletion.
        self.env.cr.execute(
            """
            WITH cand AS (
                SELECT m.id AS member_id, c.id AS contact_id,
                       (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE)) AS on_list,
                       (s.id IS NOT NULL OR r.id IS NOT NULL) AS has_history
                  FROM mailchimp_member m
                  JOIN mailing_contact c ON c.email_normalized = lower(m.email)
             LEFT JOIN mailing_subscription s ON s.contact_id = c.id AND s.list_id = %(list)s
             LEFT JOIN mailchimp_list_removal r ON r.contact_id = c.id AND r.list_id = %(list)s
                 WHERE m.audience_id = %(aud)s AND m.contact_id IS NULL
                   AND (m.odoo_deleted_at IS NULL OR m.mc_status_changed > m.odoo_deleted_at)
                   AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
            ), best AS (
                SELECT DISTINCT ON (member_id) member_id, contact_id
                  FROM cand ORDER BY member_id, on_list DESC, has_history DESC, contact_id
            )
            UPDATE mailchimp_member m SET contact_id = best.contact_id, odoo_deleted_at = NULL
              FROM best WHERE m.id = best.member_id
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "ids": member_ids},
        )
        self._match_partners(audience, member_ids)

    @api.model
    def _match_partners(self, audience, member_ids=None):
        """Link each row (and its contact) to the partner of its email."""
        self.env.cr.execute(
            """
            UPDATE mailchimp_member m SET partner_id = c.partner_id
              FROM mailing_contact c
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NOT NULL
               AND m.partner_id IS DISTINCT FROM c.partner_id
               AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]));
            WITH best AS (
                SELECT DISTINCT ON (m.id) m.id AS member_id, p.id AS partner_id
                  FROM mailchimp_member m
                  JOIN mailing_contact c ON c.id = m.contact_id
                  JOIN res_partner p ON p.email_normalized = c.email_normalized AND p.active
                 WHERE m.audience_id = %(aud)s AND m.partner_id IS NULL
                   AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
              ORDER BY m.id, p.id
            )
            UPDATE mailchimp_member m SET partner_id = best.partner_id
              FROM best WHERE m.id = best.member_id;
            UPDATE mailing_contact c SET partner_id = m.partner_id
              FROM mailchimp_member m
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NULL
               AND m.partner_id IS NOT NULL
               AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]));
            """,
            {"aud": audience.id, "ids": member_ids},
        )
        self.invalidate_model(["partner_id"])
        self.env["mailing.contact"].invalidate_model(["partner_id"])

    @api.model
    def _create_contacts(self, audience, member_ids=None):
        """Create mailing contacts for members subscribed or pending at
        Mailchimp that match nobody (a chunk), and, if the audience says so,
        partners for exactly those rows.  Returns how many were created."""
        self.env.cr.execute(
            """
            WITH src AS (
                SELECT id, email, lower(email) AS email_normalized,
                       NULLIF(mc_first_name, '') AS first_name, NULLIF(mc_last_name, '') AS last_name
                  FROM mailchimp_member
                 WHERE audience_id = %(aud)s AND contact_id IS NULL
                   AND mc_status IN ('subscribed', 'pending') AND email IS NOT NULL
                   AND (odoo_deleted_at IS NULL OR mc_status_changed > odoo_deleted_at)
                   AND (%(ids)s::int[] IS NULL OR id = ANY(%(ids)s::int[]))
              ORDER BY id LIMIT %(limit)s
            ), ins AS (
                INSERT INTO mailing_contact (name, first_name, last_name, email, email_normalized,
                                             message_bounce, create_uid, write_uid, create_date, write_date)
                SELECT COALESCE(NULLIF(concat_ws(' ', first_name, last_name), ''), email),
                       first_name, last_name, email, email_normalized, 0,
                       %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                  FROM src
                RETURNING id, email_normalized
            )
            UPDATE mailchimp_member m SET contact_id = ins.id, odoo_deleted_at = NULL
              FROM ins
             WHERE m.audience_id = %(aud)s AND lower(m.email) = ins.email_normalized
               AND m.contact_id IS NULL
            RETURNING m.id
            """,
            {"aud": audience.id, "uid": self.env.uid, "limit": CREATE_CHUNK, "ids": member_ids},
        )
        created_rows = [r[0] for r in self.env.cr.fetchall()]
        if audience.create_partners and created_rows:
            self._create_partners(audience, created_rows)
        self.env["mailing.contact"].invalidate_model()
        self.invalidate_model()
        return len(created_rows)

    @api.model
    def _create_partners(self, audience, member_ids):
        """Partners for the rows just given new contacts, and no others."""
        self._match_partners(audience, member_ids)
        self.env.cr.execute(
            """SELECT c.id, c.name, c.email FROM mailchimp_member m
                 JOIN mailing_contact c ON c.id = m.contact_id
                WHERE m.id = ANY(%s) AND m.partner_id IS NULL AND c.partner_id IS NULL""",
            (list(member_ids),),
        )
        rows = self.env.cr.fetchall()
        if rows:
            self.env["res.partner"].create([{"name": name, "email": email} for _id, name, email in rows])
            self.env.flush_all()
            self._match_partners(audience, member_ids)

    def _blacklist_clause(self, audience, alias="b"):
        return f"COALESCE({alias}.active, FALSE)" if audience.blacklist_unsubscribes else "FALSE"

    @api.model
    def _add_odoo_only(self, audience):
        """Rows for contacts subscribed in Odoo that Mailchimp does not know."""
        self.env.cr.execute(
            f"""
            INSERT INTO mailchimp_member AS m (audience_id, contact_id, partner_id, email, subscriber_hash,
                                          sync_status, create_uid, write_uid, create_date, write_date)
            SELECT DISTINCT ON (c.email_normalized)
                   %(aud)s, c.id, c.partner_id, c.email_normalized, md5(c.email_normalized), 'todo',
                   %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
              FROM mailing_subscription s
              JOIN mailing_contact c ON c.id = s.contact_id
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE s.list_id = %(list)s AND NOT COALESCE(s.opt_out, FALSE)
               AND c.email_normalized IS NOT NULL AND NOT {self._blacklist_clause(audience)}
               AND NOT EXISTS (SELECT 1 FROM mailchimp_member o
                                WHERE o.audience_id = %(aud)s AND o.contact_id = c.id)
          ORDER BY c.email_normalized, c.id
            ON CONFLICT (audience_id, subscriber_hash) DO NOTHING
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "uid": self.env.uid},
        )
        self.invalidate_model()

    @api.model
    def _drop_duplicates(self, audience):
        """A contact added in Odoo whose email then appeared at Mailchimp
        independently: keep the row Mailchimp knows.  (Joined rather than
        correlated: the candidates are few, the audience is large.)"""
        self.env.cr.execute(
            """
            DELETE FROM mailchimp_member d
             USING mailchimp_member o
             WHERE d.audience_id = %(aud)s AND d.mc_status IS NULL AND d.contact_id IS NOT NULL
               AND o.audience_id = %(aud)s AND o.contact_id = d.contact_id
               AND o.id <> d.id AND o.mc_status IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM mailchimp_update u WHERE u.member_id = d.id AND u.state = 'sent')
            """,
            {"aud": audience.id},
        )
        self.invalidate_model()

    # ------------------------------------------------------------------
    # Odoo changes and data
    # ------------------------------------------------------------------

    @api.model
    def _refresh_odoo_state(self, audience, member_ids=None, mark_todo=True, since=None):
        """Recompute the cached Odoo side (subscription and interest lists,
        with their change times) and mark rows whose Odoo side changed.

        A blacklisted email counts as not subscribed when the audience says
        so; entering or leaving the blacklist is then a change too.  A
        deleted contact is not subscribed since its deletion.  With
        ``since`` (an incremental cycle), only the rows the change stamps
        say may have changed are recomputed: proportional to the changes,
        not to the audience.
        """
        if member_ids is None and since:
            member_ids = self._changed_in_odoo_since(audience, since)
            if not member_ids:
                return 0
        bl = self._blacklist_clause(audience)
        bl_time = "b.mailchimp_changed_at" if audience.blacklist_unsubscribes else "NULL::timestamp"
        where_ids = "AND m.id = ANY(%(ids)s)" if member_ids is not None else ""
        status = (
            "CASE WHEN m.sync_status IN ('ok', 'fail', 'live') THEN 'todo' ELSE m.sync_status END"
            if mark_todo else "m.sync_status"
        )
        self.env.cr.execute(
            f"""
            WITH st AS (
                SELECT m.id,
                       CASE WHEN m.contact_id IS NULL THEN FALSE
                            ELSE (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE) AND NOT {bl})
                       END AS sub,
                       CASE WHEN m.contact_id IS NULL THEN m.odoo_deleted_at
                            ELSE GREATEST(s.mailchimp_changed_at, r.removed_at, {bl_time})
                       END AS changed,
                       COALESCE(iv.vals, '{{}}'::jsonb) AS ivals,
                       COALESCE(iv.times, '{{}}'::jsonb) AS itimes
                  FROM mailchimp_member m
             LEFT JOIN mailing_contact c ON c.id = m.contact_id
             LEFT JOIN mailing_subscription s ON s.contact_id = m.contact_id AND s.list_id = %(list)s
             LEFT JOIN mailchimp_list_removal r ON r.contact_id = m.contact_id AND r.list_id = %(list)s
             LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             LEFT JOIN LATERAL (
                    SELECT jsonb_object_agg(i.mailchimp_interest_id,
                                            s2.id IS NOT NULL AND NOT COALESCE(s2.opt_out, FALSE)) AS vals,
                           jsonb_object_agg(i.mailchimp_interest_id,
                                            GREATEST(s2.mailchimp_changed_at, r2.removed_at)) AS times
                      FROM mailchimp_interest i
                 LEFT JOIN mailing_subscription s2
                        ON s2.contact_id = m.contact_id AND s2.list_id = i.mailing_list_id
                 LEFT JOIN mailchimp_list_removal r2
                        ON r2.contact_id = m.contact_id AND r2.list_id = i.mailing_list_id
                     WHERE i.audience_id = %(aud)s AND i.mailing_list_id IS NOT NULL AND i.stale IS NOT TRUE
                       AND m.contact_id IS NOT NULL
                ) iv ON TRUE
                 WHERE m.audience_id = %(aud)s {where_ids}
            )
            UPDATE mailchimp_member m
               SET odoo_subscribed = st.sub, odoo_changed = st.changed,
                   odoo_interests = st.ivals, odoo_interests_changed = st.itimes,
                   sync_status = {status}
              FROM st
             WHERE m.id = st.id
               AND (m.odoo_subscribed IS DISTINCT FROM st.sub
                    OR m.odoo_changed IS DISTINCT FROM st.changed
                    OR COALESCE(m.odoo_interests, '{{}}'::jsonb) IS DISTINCT FROM st.ivals
                    OR COALESCE(m.odoo_interests_changed, '{{}}'::jsonb) IS DISTINCT FROM st.itimes)
            """,
            {"aud": audience.id, "list": audience.mailing_list_id.id, "ids": member_ids},
        )
        self.invalidate_model()
        return self.env.cr.rowcount

    def _changed_in_odoo_since(self, audience, since):
        """Rows whose Odoo side may have changed since ``since``: new or to-do
        rows, rows whose contact was deleted, and rows of contacts whose
        membership of a mapped list, removal from one, or blacklist entry
        was stamped since then (the stamps are indexed)."""
        lists = [audience.mailing_list_id.id] + audience.interest_ids.mailing_list_id.ids
        self.env.cr.execute(
            """
            SELECT id FROM mailchimp_member
             WHERE audience_id = %(aud)s
               AND (sync_status = 'todo' OR odoo_subscribed IS NULL OR odoo_deleted_at >= %(since)s)
            UNION
            SELECT m.id FROM mailing_subscription s
              JOIN mailchimp_member m ON m.contact_id = s.contact_id AND m.audience_id = %(aud)s
             WHERE s.mailchimp_changed_at >= %(since)s AND s.list_id = ANY(%(lists)s)
            UNION
            SELECT m.id FROM mailchimp_list_removal r
              JOIN mailchimp_member m ON m.contact_id = r.contact_id AND m.audience_id = %(aud)s
             WHERE r.removed_at >= %(since)s AND r.list_id = ANY(%(lists)s)
            UNION
            SELECT m.id FROM mail_blacklist b
              JOIN mailing_contact c ON c.email_normalized = b.email
              JOIN mailchimp_member m ON m.contact_id = c.id AND m.audience_id = %(aud)s
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
            columns.append(f'{alias}."{mapping._column()}"')
        config = Mapping._data_config(audience)
        return (
            f"""md5(jsonb_build_array(%(data_config)s::text, c.email_normalized, c.name,
                                      ({self._tags_sql('c.id')}){"".join(", " + c for c in columns)})::text)""",
            {"data_config": config},
        )

    @api.model
    def _mark_data_changes(self, audience):
        """Mark rows whose Odoo data (address, names, tags, mapped fields)
        changed since their last reconcile; Mailchimp's changes are marked
        by the fetch.  A failed row is marked again once its Odoo data
        changes: that may be the fix.  Other addons extend
        ``mailchimp.sync._mailchimp_extra_merge_fields`` and may override
        this to mark rows of their own."""
        snapshot, params = self._data_snapshot_sql(audience)
        self.env.cr.execute(
            f"""
            UPDATE mailchimp_member m SET sync_status = 'todo'
              FROM mailing_contact c
         LEFT JOIN res_partner p ON p.id = c.partner_id
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id
               AND m.mc_status IN ('subscribed', 'pending')
               AND (m.sync_status = 'ok' OR (m.sync_status = 'fail' AND m.sent_data ? 'odoo'))
               AND (m.sent_data->>'odoo') IS DISTINCT FROM {snapshot}
            """,
            {"aud": audience.id, **params},
        )
        self.invalidate_model()

    def _data_snapshot_expression(self, audience):
        """SQL of what a reconciled row remembers of its Odoo data (alias
        ``m``: the cache row): the fingerprint of ``_data_snapshot_sql`` and
        the contact's name and address, which its partner may follow next
        time.  Parameters are inlined, so it fits in a bulk statement's
        template (``execute_values``)."""
        snapshot, params = self._data_snapshot_sql(audience)
        sql = f"""COALESCE((SELECT jsonb_build_object('odoo', {snapshot},
                                                      'contact', jsonb_build_array(c.name, c.email_normalized))
                              FROM mailing_contact c
                         LEFT JOIN res_partner p ON p.id = c.partner_id
                             WHERE c.id = m.contact_id), '{{}}'::jsonb)"""
        return self.env.cr.mogrify(sql, params).decode().replace("%", "%%")

    @api.model
    def _partners_follow_contacts(self, audience, member_ids):
        """Where the audience says so, a partner takes its mailing
        contact's name and email when they changed since the row's last
        reconcile (at Mailchimp, or in Odoo); a partner is never changed
        otherwise.  Few rows change at once: one ORM write per partner, so
        the partner's chatter records the change."""
        if not audience.update_partners or not member_ids:
            return 0
        self.env.flush_all()
        self.env.cr.execute(
            """SELECT p.id,
                      CASE WHEN m.sent_data->'contact'->>0 IS DISTINCT FROM c.name
                            AND NULLIF(c.name, '') IS NOT NULL AND p.name IS DISTINCT FROM c.name
                           THEN c.name END,
                      CASE WHEN m.sent_data->'contact'->>1 IS DISTINCT FROM c.email_normalized
                            AND c.email_normalized IS NOT NULL
                            AND p.email_normalized IS DISTINCT FROM c.email_normalized
                           THEN c.email END
                 FROM mailchimp_member m
                 JOIN mailing_contact c ON c.id = m.contact_id
                 JOIN res_partner p ON p.id = c.partner_id
                WHERE m.id = ANY(%s) AND m.sent_data ? 'contact'""",
            (list(member_ids),),
        )
        Partner = self.env["res.partner"].sudo()
        changed = 0
        for partner_id, name, email in self.env.cr.fetchall():
            vals = {k: v for k, v in (("name", name), ("email", email)) if v}
            if vals:
                Partner.browse(partner_id).write(vals)
                changed += 1
        return changed

    @api.model
    def _apply_tags(self, add, remove):
        """Tags decided from Mailchimp: add and remove [(contact id, tag
        name)] on the contacts, in bulk; a tag Odoo does not have yet is
        created.  Returns how many links changed."""
        if not add and not remove:
            return 0
        cr = self.env.cr
        names = sorted({name for _contact, name in add})
        tag_ids = {}
        if names:
            cr.execute(
                """SELECT DISTINCT ON (name->>'en_US') name->>'en_US', id FROM res_partner_category
                    WHERE name->>'en_US' = ANY(%s) ORDER BY name->>'en_US', id""",
                (names,),
            )
            tag_ids = dict(cr.fetchall())
            missing = [name for name in names if name not in tag_ids]
            if missing:
                created = self.env["res.partner.category"].with_context(lang="en_US").create(
                    [{"name": name} for name in missing])
                self.env.flush_all()
                tag_ids.update(zip(missing, created.ids, strict=True))
        changed = 0
        if add:
            execute_values(
                cr._obj,
                """INSERT INTO mailing_contact_res_partner_category_rel (mailing_contact_id, res_partner_category_id)
                   VALUES %s ON CONFLICT DO NOTHING""",
                [(contact_id, tag_ids[name]) for contact_id, name in add],
            )
            changed += cr.rowcount
        if remove:
            execute_values(
                cr._obj,
                """DELETE FROM mailing_contact_res_partner_category_rel rel
                    USING res_partner_category t, (VALUES %s) AS v(contact_id, name)
                    WHERE rel.mailing_contact_id = v.contact_id AND rel.res_partner_category_id = t.id
                      AND t.name->>'en_US' = v.name""",
                remove,
            )
            changed += cr.rowcount
        self.env["mailing.contact"].invalidate_model(["tag_ids"])
        return changed

    @api.model
    def _release_hashes(self, moves):
        """Before rows move to another subscriber hash (an email change
        settled): a row already holding that hash in the audience is the
        same member as read by a fetch meanwhile, or an Odoo-only row of
        the new address.  It gives the hash up and is emptied (its unsent
        updates cancelled); the next sync drops it.  ``moves``: [(row id,
        new hash)]."""
        if not moves:
            return
        self.env.cr.execute(
            """SELECT o.id FROM mailchimp_member o
                 JOIN mailchimp_member m ON m.audience_id = o.audience_id AND m.id <> o.id
                 JOIN jsonb_to_recordset(%s::jsonb) AS x(id int, hash varchar)
                   ON x.id = m.id AND o.subscriber_hash = x.hash""",
            (json.dumps([{"id": member_id, "hash": new_hash} for member_id, new_hash in moves]),),
        )
        others = [r[0] for r in self.env.cr.fetchall()]
        if not others:
            return
        self.env["mailchimp.update"]._cancel_unsent_of(
            others, self.env._("Cancelled: another row of this member took its new address."))
        self.env.cr.execute(
            """UPDATE mailchimp_member
                  SET subscriber_hash = NULL, mc_status = NULL, contact_id = NULL, partner_id = NULL,
                      sync_status = 'ok', sync_error = NULL
                WHERE id = ANY(%s)""",
            (others,),
        )
        self.invalidate_model()

    @api.model
    def _apply_names(self, names):
        """Write names decided from Mailchimp: [(contact id, first, last)]."""
        if not names:
            return
        execute_values(
            self.env.cr._obj,
            """UPDATE mailing_contact c
                  SET first_name = NULLIF(v.first, ''), last_name = NULLIF(v.last, ''),
                      name = COALESCE(NULLIF(concat_ws(' ', NULLIF(v.first, ''), NULLIF(v.last, '')), ''), c.name),
                      write_date = now() AT TIME ZONE 'UTC'
                 FROM (VALUES %s) AS v(id, first, last)
                WHERE c.id = v.id""",
            names,
        )
        self.env["mailing.contact"].invalidate_model(["name", "first_name", "last_name"])

    @api.model
    def _mark_cleaned(self, audience, member_ids):
        """Mailchimp cleaned these members' addresses (hard bounce or abuse),
        learnt by a fetch or a webhook: mark each address as bouncing or
        blacklist it, as the audience says, and give the opt-out the
        'cleaned' reason, so Odoo stops mailing a dead address.  Set-based
        and idempotent: an address already marked is left alone."""
        if not member_ids:
            return
        cr = self.env.cr
        Subscription = self.env["mailing.subscription"]
        with Subscription._mailchimp_own_writes():
            if audience.cleaned_action == "blacklist":
                cr.execute(
                    """INSERT INTO mail_blacklist (email, active, create_uid, write_uid, create_date, write_date)
                       SELECT DISTINCT lower(m.email), TRUE, %(uid)s, %(uid)s,
                              now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                         FROM mailchimp_member m
                        WHERE m.id = ANY(%(ids)s) AND m.mc_status = 'cleaned' AND m.email IS NOT NULL
                       ON CONFLICT (email) DO UPDATE SET active = TRUE WHERE NOT mail_blacklist.active
                    RETURNING email""",
                    {"uid": self.env.uid, "ids": list(member_ids)},
                )
                line = self.env._("Mailchimp cleaned this address (a hard bounce or a complaint): "
                                  "it is blacklisted.")
                cr.execute("SELECT id FROM mailing_contact WHERE email_normalized = ANY(%s)",
                           ([r[0] for r in cr.fetchall()],))
            else:
                cr.execute(
                    """UPDATE mailing_contact c SET message_bounce = %(bounces)s
                         FROM mailchimp_member m
                        WHERE m.id = ANY(%(ids)s) AND m.mc_status = 'cleaned'
                          AND c.email_normalized = lower(m.email) AND COALESCE(c.message_bounce, 0) < %(bounces)s
                    RETURNING c.id""",
                    {"ids": list(member_ids), "bounces": CLEANED_BOUNCE_COUNT},
                )
                line = self.env._("Mailchimp cleaned this address (a hard bounce or a complaint): "
                                  "it is marked as bouncing.")
            marked = [r[0] for r in cr.fetchall()]
            cleaned = self.env.ref("mailchimp_sync.optout_reason_mailchimp_cleaned", raise_if_not_found=False)
            generic = self.env.ref("mailchimp_sync.optout_reason_mailchimp", raise_if_not_found=False)
            if cleaned:
                cr.execute(
                    """UPDATE mailing_subscription s SET opt_out_reason_id = %(cleaned)s
                         FROM mailchimp_member m
                        WHERE m.id = ANY(%(ids)s) AND m.mc_status = 'cleaned' AND s.contact_id = m.contact_id
                          AND s.list_id = %(list)s AND s.opt_out
                          AND (s.opt_out_reason_id IS NULL OR s.opt_out_reason_id = %(generic)s)""",
                    {"cleaned": cleaned.id, "generic": generic.id if generic else None,
                     "ids": list(member_ids), "list": audience.mailing_list_id.id},
                )
        if marked:
            self.env["mailing.contact"]._mailchimp_log_notes(audience, {cid: [line] for cid in marked})
        self.env["mailing.contact"].invalidate_model()
        self.env["mail.blacklist"].invalidate_model()
        self.env["mailing.subscription"].invalidate_model()

    # ------------------------------------------------------------------
    # Screen actions (Members list and form)
    # ------------------------------------------------------------------

    def action_include_in_next_sync(self):
        """Put the rows back in line: the next sync reconciles them again.
        Rows still in flight wait for their batch's result first."""
        self.audience_id._as_sync_operator()
        rows = self.sudo()
        self._lock_rows(rows.ids)
        waiting = rows.filtered(lambda m: m.sync_status == "live")
        (rows - waiting).write({"sync_status": "todo"})
        message = self.env._("%s row(s) will be reconciled by the next sync.", len(rows - waiting))
        if waiting:
            message += " " + self.env._(
                "%s row(s) wait for Mailchimp's answer to their last update and were left as they are.",
                len(waiting))
        return self.audience_id[:1]._notify(message, self.env._("Included in next sync"))

    def action_retry(self):
        """Reconcile the rows now, as a webhook would (under their locks);
        the updates this decides for Mailchimp go out with the next sync.
        Says which rows it could not help, and why."""
        self.audience_id._as_sync_operator()
        rows = self.sudo()
        self._lock_rows(rows.ids)
        waiting = rows.filtered(lambda m: m.sync_status == "live")
        Sync = self.env["mailchimp.reconcile"].sudo()
        for audience in (rows - waiting).audience_id:
            Sync._sync_members(audience, (rows - waiting).filtered(lambda m, a=audience: m.audience_id == a).ids)
        rows.invalidate_recordset()
        retried = rows - waiting
        still_failed = retried.filtered(lambda m: m.sync_status == "fail")
        queued = retried.filtered(lambda m: m.sync_status == "live")
        parts = [self.env._("%(done)s of %(total)s row(s) retried: %(queued)s update(s) queued for the next "
                            "sync, %(ok)s already in sync.", done=len(retried), total=len(rows),
                            queued=len(queued), ok=len(retried) - len(queued) - len(still_failed))]
        if waiting:
            parts.append(self.env._("%s row(s) wait for Mailchimp's answer to their last update: retry "
                                    "them once it is settled.", len(waiting)))
        if still_failed:
            # Which rows, and why (the reasons already say what to do next).
            emails = still_failed.mapped("email")
            reasons = sorted(set(still_failed.mapped("sync_error")) - {False})
            parts.append(self.env._("%(count)s row(s) cannot be helped by a retry (%(rows)s):",
                                    count=len(still_failed),
                                    rows=", ".join(emails[:5]) + (", …" if len(emails) > 5 else "")))
            parts.extend(reasons[:3])
        kind = "warning" if (still_failed or waiting) else "success"
        return self.audience_id[:1]._notify(" ".join(parts), self.env._("Retried"), kind)
