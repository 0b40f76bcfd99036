import json
import logging

from odoo import api, fields, models
from odoo.tools import SQL, email_normalize

from ..mailchimp_sync.client import subscriber_hash
from ..mailchimp_sync.members import check_statuses
from ..mailchimp_sync.text import postgres_json
from ..tools.sql import int_array

_logger = logging.getLogger(__name__)

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
    "mc_merge_fields", "mc_merge_fields_changed", "mc_tags", "mc_tags_partial", "mc_contact_id",
)
# The states of an update still to come back from Mailchimp.
BUSY_STATES = "('queued', 'sent')"
# The statistics target of the cache's columns that plans read (see init).
CACHE_STATISTICS_TARGET = 25
# A row with an update still queued or sent (``row``: its id)...
BUSY_SQL = f"EXISTS (SELECT 1 FROM mailchimp_update u WHERE u.member_id = {{row}} AND u.state IN {BUSY_STATES})"
# ... and a row in flight is in sync once it has none.
IN_SYNC_SQL = f"(m.sync_status = 'live' AND NOT {BUSY_SQL.format(row='m.id')})"


# A lane's share of a full cycle's split statement (``part_params``):
# rows by id (alias ``m``), or addresses by a hash (alias ``c``, the
# contact), so that contacts sharing an address fall in one part.
ROW_IN_PART = "(%(parts)s::int IS NULL OR mod(m.id, %(parts)s) = %(part)s)"
ADDRESS_IN_PART = "(%(parts)s::int IS NULL OR mod(hashtext(c.email_normalized) & 2147483647, %(parts)s) = %(part)s)"


def part_params(part):
    """The parameters of ROW_IN_PART and ADDRESS_IN_PART for ``part``
    ((parts, which), or None: every row)."""
    parts, which = part or (None, None)
    return {"parts": parts, "part": which}


def hash_key_sql(audience, subscriber_hash):
    """SQL of the key a cache row is found by: its audience and its
    subscriber hash as one text (``audience``, ``subscriber_hash``: SQL of
    each).  The cache keeps one row per key with a hash index on it
    (:data:`HASH_CONSTRAINT`), which a lookup uses only when it compares
    this very expression of the row's columns.  The audience is part of
    the key: a lookup by it needs no other condition on the audience."""
    return f"({audience}::text || '/' || {subscriber_hash})"


# One row per audience and Mailchimp member, checked through a hash index
# on the key.  Every write of a cache row (the match, the create stage,
# the reconcile, settling) adds an entry for the row's new version to
# each of its indexes, and a unique B-tree on the hash takes that entry
# at a random place: on a table as wide as the cache, the B-tree made
# those writes about 40 % slower than a hash index does at a million
# rows (20 % at 100,000).  (As PostgreSQL prints it.)
HASH_CONSTRAINT = "EXCLUDE USING hash (((((audience_id)::text || '/'::text) || (subscriber_hash)::text)) WITH =)"


# What Python's str.strip() takes off a name or an address (the \013 is \v).
_STRIP = "E' \\t\\n\\r\\f\\013\\u00a0'"


def _answered_sql(member):
    """SELECT list: the Mailchimp side of a row as one member tells it
    (``member``: a jsonb expression, the member as Mailchimp answered a
    page or an operation), as if the row were new; ``_merged_sql`` then
    merges it with the cached row.  Names are stripped (a name that is not
    text is empty), interests are booleans, the tags a sorted list of
    names (NULL: the answer did not carry them), and ``tags_count`` says
    how many tags the member has (Mailchimp shows at most 50)."""
    name = """CASE WHEN jsonb_typeof({x}->'merge_fields'->'{tag}') = 'string'
                   THEN btrim({x}->'merge_fields'->>'{tag}', {strip}) ELSE '' END"""
    return f"""
        COALESCE(NULLIF({member}->>'id', ''),
                 md5(lower(btrim(COALESCE({member}->>'email_address', ''), {_STRIP})))) AS subscriber_hash,
        btrim(COALESCE({member}->>'email_address', ''), {_STRIP}) AS email,
        {member}->>'status' AS mc_status,
        NULLIF({member}->>'last_changed', '')::timestamptz AT TIME ZONE 'UTC' AS mc_last_changed,
        {name.format(x=member, tag="FNAME", strip=_STRIP)} AS mc_first_name,
        {name.format(x=member, tag="LNAME", strip=_STRIP)} AS mc_last_name,
        CASE WHEN jsonb_typeof({member}->'interests') IS DISTINCT FROM 'object' THEN '{{}}'
             -- as Mailchimp answers them (every value a boolean), kept as
             -- they are: this aggregate and the tags' below, run for every
             -- member, took about 8 ms of a page's 45 to 75
             WHEN NOT jsonb_path_exists({member}->'interests', '$.* ? (@.type() != "boolean")')
             THEN {member}->'interests'
             ELSE COALESCE((SELECT jsonb_object_agg(e.key, e.value NOT IN ('false', 'null', '0', '""'))
                              FROM jsonb_each({member}->'interests') e), '{{}}') END AS mc_interests,
        NULLIF({member}->>'unique_email_id', '') AS mc_unique_email_id,
        NULLIF({member}->>'contact_id', '') AS mc_contact_id,
        CASE WHEN jsonb_typeof({member}->'merge_fields') = 'object'
             THEN {member}->'merge_fields' ELSE '{{}}' END AS mc_merge_fields,
        CASE WHEN jsonb_typeof({member}->'tags') IS DISTINCT FROM 'array' THEN NULL
             WHEN {member}->'tags' = '[]' THEN '[]'  -- (most members: no aggregate)
             ELSE COALESCE((
            SELECT jsonb_agg(t.name ORDER BY t.name) FROM (
                SELECT DISTINCT (e->>'name') COLLATE "C" AS name FROM jsonb_array_elements({member}->'tags') e
                 WHERE jsonb_typeof(e) = 'object' AND COALESCE(e->>'name', '') <> '') t), '[]') END AS mc_tags,
        COALESCE(NULLIF({member}->>'tags_count', '')::numeric, 0) AS tags_count"""


def _merged_sql(old, new, as_of=None):
    """{column: SQL} of a row's Mailchimp side once the answer ``new`` (an
    alias of ``_answered_sql``'s columns) is merged into the cached side
    ``old`` (an alias of the cache row; its columns may all be NULL: a row
    seen for the first time).

    Mailchimp's ``last_changed`` moves on any edit of a member, so it cannot
    tell which field changed: each field (status, names, each interest,
    each merge field) keeps a change time of its own, which moves to
    ``last_changed`` only when that field's value differs from the cached
    one (or was never timed).  Merge fields the answer does not carry keep
    their cached value and time; tags it does not carry stay as cached.

    ``as_of`` (SQL of a time, for the answer to one of our own updates):
    what changed is the echo of what Odoo decided when it queued the
    update, so its change time is no later than that.  Stamped with the
    time Mailchimp ran the batch instead, it beat an Odoo change made while
    the update was on its way (a contact deleted after its create was
    decided), and the row failed instead of unsubscribing the member."""
    changed = f"{new}.mc_last_changed"
    field_changed = f"LEAST({changed}, COALESCE({as_of}, {changed}))" if as_of else changed

    def moved(old_time, differs):
        return f"CASE WHEN {old_time} IS NULL OR {differs} THEN {field_changed} ELSE {old_time} END"

    def times(values, old_values, old_times):
        return f"""COALESCE((SELECT jsonb_object_agg(e.key, CASE
                                WHEN NULLIF({old_times}->>e.key, '') IS NULL
                                  OR COALESCE({old_values}->e.key, 'null') IS DISTINCT FROM e.value
                                THEN to_jsonb({field_changed}) ELSE {old_times}->e.key END)
                              FROM jsonb_each({values}) e), '{{}}')"""

    return {
        "subscriber_hash": f"{new}.subscriber_hash",
        "email": f"{new}.email",
        "mc_status": f"{new}.mc_status",
        "mc_last_changed": changed,
        "mc_status_changed": moved(f"{old}.mc_status_changed", f"{old}.mc_status IS DISTINCT FROM {new}.mc_status"),
        "mc_first_name": f"{new}.mc_first_name",
        "mc_last_name": f"{new}.mc_last_name",
        "mc_name_changed": moved(
            f"{old}.mc_name_changed",
            f"(COALESCE({old}.mc_first_name, ''), COALESCE({old}.mc_last_name, ''))"
            f" <> ({new}.mc_first_name, {new}.mc_last_name)"),
        "mc_interests": f"{new}.mc_interests",
        "mc_interests_changed": times(f"{new}.mc_interests", f"{old}.mc_interests", f"{old}.mc_interests_changed"),
        "mc_unique_email_id": f"COALESCE({new}.mc_unique_email_id, {old}.mc_unique_email_id)",
        "mc_contact_id": f"COALESCE({new}.mc_contact_id, {old}.mc_contact_id)",
        "mc_merge_fields": f"COALESCE({old}.mc_merge_fields, '{{}}') || {new}.mc_merge_fields",
        "mc_merge_fields_changed": f"COALESCE({old}.mc_merge_fields_changed, '{{}}') || "
                                   + times(f"{new}.mc_merge_fields", f"{old}.mc_merge_fields",
                                           f"{old}.mc_merge_fields_changed"),
        "mc_tags": f"COALESCE({new}.mc_tags, {old}.mc_tags)",
        "mc_tags_partial": f"""CASE WHEN {new}.mc_tags IS NULL THEN COALESCE({old}.mc_tags_partial, FALSE)
                                    ELSE {new}.tags_count > jsonb_array_length({new}.mc_tags) END""",
    }


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
    # A cache row, not a document: its times are its fields' own change
    # times and ``last_synced``.  Without who-and-when columns, each of the
    # million inserts of a first sync checks two foreign keys fewer.
    _log_access = False

    audience_id = fields.Many2one(
        "mailchimp.audience", required=True, ondelete="cascade"
    )
    email = fields.Char()

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
    mc_contact_id = fields.Char(
        string="Mailchimp Contact ID",
        help="Mailchimp's id of the person, which stays when their address changes: how a fetch "
             "recognises a member whose address was changed at Mailchimp.",
    )
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
    # Indexed with the audience (init): see mailchimp_member_contact_idx.
    contact_id = fields.Many2one("mailing.contact", string="Mailing Contact", ondelete="set null")
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
        SYNC_STATUSES, default="todo", required=True
    )
    sync_error = fields.Text(string="Why It Failed")
    last_synced = fields.Datetime()
    update_ids = fields.One2many("mailchimp.update", "member_id", string="Updates")
    pending_update_count = fields.Integer(compute="_compute_pending_update_count")

    _sql_constraints = [
        ("hash_excl", HASH_CONSTRAINT, "One cache row per audience and Mailchimp member."),
    ]

    def init(self):
        res = super().init()
        # The access paths of the bulk stages: rows to do in id order, and
        # rows without a contact in id order (to match or create one); rows
        # by contact take the contact's own index (a contact has a row or
        # two), and a member is found by its hash (HASH_CONSTRAINT's index), never
        # by its address, so the address is not indexed (with that index,
        # the stages of a 100,000-member first sync took 3 s more).  Every
        # stage writes most rows of a large cache at least once, and each
        # index is one more write per row (the indexes cost more than the
        # row itself): indexes others cover are dropped, and the rows to do
        # and the rows without a contact, a few of the cache once it is
        # synced, are indexed apart, so most writes of a row touch neither
        # of those indexes.
        self.env.cr.execute(
            """
            DROP INDEX IF EXISTS mailchimp_member__audience_id_index;
            DROP INDEX IF EXISTS mailchimp_member__email_index;
            DROP INDEX IF EXISTS mailchimp_member__sync_status_index;
            DROP INDEX IF EXISTS mailchimp_member_audience_status_idx;
            DROP INDEX IF EXISTS mailchimp_member_audience_contact_idx;
            DROP INDEX IF EXISTS mailchimp_member_audience_email_idx;
            DROP INDEX IF EXISTS mailchimp_member__contact_id_index;
            -- (the unique B-tree of earlier versions: see HASH_CONSTRAINT)
            ALTER TABLE mailchimp_member DROP CONSTRAINT IF EXISTS mailchimp_member_hash_uniq;
            CREATE INDEX IF NOT EXISTS mailchimp_member_todo_idx
                ON mailchimp_member (audience_id, id) WHERE sync_status = 'todo';
            CREATE INDEX IF NOT EXISTS mailchimp_member_no_contact_idx
                ON mailchimp_member (audience_id, id) WHERE contact_id IS NULL;
            -- Rows with neither a contact nor a hash (the sync keeps none:
            -- a row it empties is removed in the same cycle; a row created
            -- through the ORM may be one): the incremental match looks them
            -- up apart.
            CREATE INDEX IF NOT EXISTS mailchimp_member_no_hash_idx
                ON mailchimp_member (audience_id, id) WHERE contact_id IS NULL AND subscriber_hash IS NULL;
            -- A contact's rows (a contact deleted, a membership changed),
            -- and with the audience beside it, the contacts that have a row
            -- in an audience, read from the index alone: the Odoo-only
            -- stage's anti-join of an incremental cycle read the whole
            -- cache for them (0.3 s of a 100,000-member cycle).
            CREATE INDEX IF NOT EXISTS mailchimp_member_contact_idx
                ON mailchimp_member (contact_id, audience_id) WHERE contact_id IS NOT NULL;
            -- The Odoo-changes stage's other rows of an incremental cycle,
            -- a few of the cache at any time: rows whose Odoo side was never
            -- computed (created through the ORM) and rows whose contact was
            -- deleted.
            CREATE INDEX IF NOT EXISTS mailchimp_member_odoo_unknown_idx
                ON mailchimp_member (audience_id, id) WHERE odoo_subscribed IS NULL;
            CREATE INDEX IF NOT EXISTS mailchimp_member_contact_deleted_idx
                ON mailchimp_member (audience_id, odoo_deleted_at) WHERE odoo_deleted_at IS NOT NULL;
            """
        )
        # No query filters or joins on these columns: statistics on them
        # (detoasting every sampled JSON document) made each ANALYZE of a
        # large cache several times slower for nothing.
        self.env.cr.execute(
            """ALTER TABLE mailchimp_member
                 ALTER COLUMN mc_first_name SET STATISTICS 0, ALTER COLUMN mc_last_name SET STATISTICS 0,
                 ALTER COLUMN mc_interests SET STATISTICS 0, ALTER COLUMN mc_interests_changed SET STATISTICS 0,
                 ALTER COLUMN mc_unique_email_id SET STATISTICS 0, ALTER COLUMN mc_merge_fields SET STATISTICS 0,
                 ALTER COLUMN mc_merge_fields_changed SET STATISTICS 0, ALTER COLUMN mc_tags SET STATISTICS 0,
                 ALTER COLUMN odoo_interests SET STATISTICS 0, ALTER COLUMN odoo_interests_changed SET STATISTICS 0,
                 ALTER COLUMN sent_data SET STATISTICS 0, ALTER COLUMN sync_error SET STATISTICS 0"""
        )
        # ANALYZE reads 300 rows for each unit of the largest target of a
        # column: 30,000 rows at PostgreSQL's default (100), most of the
        # pages of a 100,000-member cache, whose rows are wide.  The stages'
        # plans need the cache's size and its common statuses, not fine
        # histograms: at CACHE_STATISTICS_TARGET every other column is
        # sampled from 7,500 rows, and the ANALYZE each large cycle makes
        # after its fetch and its create stage took 80 ms instead of 450
        # at 100,000 members.  Read from the catalogue: a column another
        # addon adds is set when its install runs this again.
        self.env.cr.execute(
            """SELECT attname FROM pg_attribute
                WHERE attrelid = 'mailchimp_member'::regclass AND attnum > 0 AND NOT attisdropped
                  AND attstattarget NOT IN (0, %s)""",
            (CACHE_STATISTICS_TARGET,),
        )
        columns = [name for (name,) in self.env.cr.fetchall()]
        if columns:
            self.env.cr.execute(SQL("ALTER TABLE mailchimp_member %s", SQL(", ").join(
                SQL("ALTER COLUMN %s SET STATISTICS %s", SQL.identifier(name), CACHE_STATISTICS_TARGET)
                for name in columns)))
        # The key's index has a column of its own (an expression), sampled
        # at PostgreSQL's default otherwise: 30,000 rows again.  (Odoo added
        # the constraint before this runs.)
        self.env.cr.execute(
            "ALTER INDEX IF EXISTS mailchimp_member_hash_excl ALTER COLUMN 1 SET STATISTICS %s",
            (CACHE_STATISTICS_TARGET,),
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

    @api.model
    def _lock_rows(self, member_ids):
        """Lock cache rows, in id order (no deadlock between two writers),
        before reading their state and queueing updates for them: a webhook,
        Retry and a reconcile chunk never decide the same member at once."""
        if member_ids:
            self.env.flush_all()
            # A writer that changed one of them since this transaction began
            # (a webhook, a step) is expected: the caller starts again on
            # fresh rows (a step, or Odoo's retry of a request), so it is
            # not logged as a bad query at ERROR level.
            self.env.cr.execute(
                "SELECT id FROM mailchimp_member WHERE id = ANY(%s::int[]) ORDER BY id FOR NO KEY UPDATE",
                (int_array(member_ids),), log_exceptions=False,
            )

    # ------------------------------------------------------------------
    # Fetch: merge a page of members; write settled results
    # ------------------------------------------------------------------

    @api.model
    def _merge_page(self, audience, members, echoes=True):
        """Upsert one page of members into the cache, in one statement: each
        member is merged with its cached row in SQL (``_merged_sql``), and a
        row whose Mailchimp side did not change (typically the echo of our
        own update) is not written.  ``echoes``: the members may show our
        updates in flight (a fetch; not a webhook, which reports a change a
        person made).  Returns how many rows changed."""
        if not members:
            return 0
        check_statuses(members)
        # A member whose update is in flight may be read here before its
        # batch is settled: where the status is the one the update asked
        # for (or it asked none), what changed is that update's echo, and
        # is timed as settling would time it (``_merged_sql``'s ``as_of``).
        # Stamped with the time Mailchimp ran the batch, it beat an opt-out
        # made in Odoo while the update was on its way.
        merged = _merged_sql("o", "n", as_of="""CASE WHEN n.mc_status
                                 = COALESCE(f.payload->>'status', o.mc_status) THEN f.queued_at END"""
                             if echoes else None)
        # the row's member update in flight, if any (the latest)
        in_flight = """LEFT JOIN LATERAL (
                  SELECT u.payload, u.queued_at FROM mailchimp_update u
                   WHERE u.member_id = o.id AND u.state = 'sent' AND u.kind = 'member'
                ORDER BY u.id DESC LIMIT 1) f ON TRUE""" if echoes else ""
        sets = ", ".join(f"{c} = j.{c}" for c in MC_COLUMNS if c != "subscriber_hash")
        compared = ("mc_last_changed", "mc_status", "email", "mc_first_name", "mc_last_name", "mc_interests",
                    "mc_merge_fields", "mc_tags", "mc_tags_partial")
        # Known members are updated and new ones inserted from one read of
        # the page (the cache's key is not a unique index: see
        # HASH_CONSTRAINT).  A member another transaction inserted since
        # this one began is not found by the lookup; its insert then meets
        # the key and fails with a serialization error, as an upsert did,
        # and the page is merged again on a fresh snapshot.
        self.env.cr.execute(
            f"""
            WITH n AS (
                -- pages overlap: a member given twice is merged once, as last given
                SELECT DISTINCT ON (subscriber_hash) * FROM (
                    SELECT p.i, {_answered_sql("p.x")}
                      FROM jsonb_array_elements(%(members)s::jsonb) WITH ORDINALITY AS p(x, i)) a
              ORDER BY subscriber_hash, i DESC
            ), j AS MATERIALIZED (
                SELECT n.i, o.id AS old_id, {", ".join(f"{merged[c]} AS {c}" for c in MC_COLUMNS)}
                  -- one lookup by the key's index per member: the planner,
                  -- which during a first fetch believes the cache nearly
                  -- empty, otherwise read every row of the audience for
                  -- every page
                  FROM n LEFT JOIN LATERAL (
                      SELECT * FROM mailchimp_member o
                       WHERE {hash_key_sql("o.audience_id", "o.subscriber_hash")}
                             = {hash_key_sql("%(aud)s", "n.subscriber_hash")} LIMIT 1) o ON TRUE
                {in_flight}
            ), updated AS (
                UPDATE mailchimp_member m SET {sets},
                       -- only a real change at Mailchimp makes the row work to do
                       sync_status = CASE
                           WHEN m.mc_last_changed IS DISTINCT FROM j.mc_last_changed
                             OR m.mc_status IS DISTINCT FROM j.mc_status
                           THEN 'todo' ELSE m.sync_status END
                  FROM j
                 WHERE m.id = j.old_id
                   AND ({", ".join("m." + c for c in compared)})
                       IS DISTINCT FROM ({", ".join("j." + c for c in compared)})
                RETURNING 1
            ), inserted AS (
                INSERT INTO mailchimp_member (audience_id, {", ".join(MC_COLUMNS)}, sync_status, odoo_subscribed)
                -- a new row has no contact yet: its Odoo side is that of none
                -- (as _odoo_state_parts gives it), which the Odoo-changes stage
                -- then finds already written
                SELECT %(aud)s, {", ".join("j." + c for c in MC_COLUMNS)}, 'todo', FALSE
                  FROM j WHERE j.old_id IS NULL
              ORDER BY j.i  -- new rows take ids in Mailchimp's order, as listed
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
            """,
            {"aud": audience.id, "members": postgres_json(members)},
        )
        changed = self.env.cr.fetchone()[0]
        self.invalidate_model()
        return changed

    @api.model
    def _write_fetched_values(self, answers, moved):
        """Write settled results into their rows, merged with the cached side
        as a fetch merges a page, and their status in the same write (each
        write of a large cache costs).  ``answers``: [(row id, the member
        as Mailchimp answered, as JSON text, when its update was queued)];
        rows in ``moved`` [(row id, new hash)] (renamed from Odoo) take their
        new hash."""
        self._release_hashes(moved)
        self.env.cr.execute(*self._fetched_values_query(answers))
        self.invalidate_model()

    @api.model
    def _fetched_values_query(self, answers):
        """(SQL, parameters) of _write_fetched_values's one statement."""
        merged = _merged_sql("m", "n", as_of="n.queued_at")
        ids, texts, queued = zip(*answers, strict=True) if answers else ((), (), ())
        # Each answer a jsonb value of its own (an expression such as
        # ``doc->'member'`` would be taken out of its document again for
        # each of the twenty references to it), read once: a MATERIALIZED
        # CTE.  As a subquery, the planner either pulled it up into the
        # UPDATE (each of its columns computed again for every reference to
        # it in the merge), or, where the cache's statistics said it was
        # nearly empty, ran it again for each row it joined (auto_explain
        # caught a batch of 1,000 answers taking 16.7 s).  The ids again as a
        # condition on the cache itself, as the reconcile's write has them:
        # the rows are then looked up by their index.
        #
        # Which rows are still busy is looked up for these ids only: asked
        # per answer (an EXISTS), the planner hashed every update in flight
        # of the audience for each batch (93,000 during a first sync).
        return (
            f"""WITH n AS MATERIALIZED (
                    SELECT a.id, b.member_id IS NOT NULL AS busy, a.queued_at,
                           {_answered_sql("a.member")}
                      FROM unnest(%(ids)s::int[], %(answers)s::jsonb[], %(queued)s::timestamp[])
                           AS a(id, member, queued_at)
                 LEFT JOIN (SELECT DISTINCT member_id FROM mailchimp_update
                             WHERE member_id = ANY(%(ids)s::int[]) AND state IN {BUSY_STATES}) b
                        ON b.member_id = a.id)
                UPDATE mailchimp_member m
                   SET sync_status = CASE WHEN m.sync_status = 'live' AND NOT n.busy THEN 'ok' ELSE m.sync_status END,
                       sync_error = CASE WHEN m.sync_status = 'live' AND NOT n.busy THEN NULL ELSE m.sync_error END,
                       {", ".join(f"{c} = {merged[c]}" for c in MC_COLUMNS)}
                  FROM n
                 WHERE m.id = n.id AND m.id = ANY(%(ids)s::int[])""",
            {"ids": int_array(ids), "answers": list(texts), "queued": list(queued)},
        )

    @api.model
    def _back_in_line(self, member_ids):
        """Rows whose updates were stopped: the next cycle decides them again."""
        if member_ids:
            self.env.cr.execute(
                "UPDATE mailchimp_member SET sync_status = 'todo', sync_error = NULL WHERE id = ANY(%s)",
                (sorted(set(member_ids)),),
            )
            self.invalidate_model(["sync_status", "sync_error"])

    @api.model
    def _mark_in_sync(self, member_ids):
        """Settled rows without fetched values (tags only, failures), looked up
        by id: the status index would also walk every row still in flight."""
        self.env.cr.execute(
            f"""UPDATE mailchimp_member m SET sync_status = 'ok', sync_error = NULL
                 WHERE m.id = ANY(%s::int[]) AND {IN_SYNC_SQL}""",
            (int_array(sorted(member_ids)),),
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
    def _match_contacts(self, audience, member_ids=None, since=None, part=None):
        """Give rows without a contact their best contact (and partner).
        With ``since`` (an incremental cycle), only rows to do and contacts
        written since are looked at: a row that matched nobody before can
        only match a contact created or given its address since.  With
        ``part`` (parts, which), only the rows whose id falls in that part (a
        lane's share of a full match: the rows to match are spread evenly,
        where a range of ids may hold all the shared ones)."""
        since = since or None  # an unset Datetime field reads False
        Changes = self.env["mailchimp.odoo.changes"]
        # The contact's Odoo side is written with it (a lookup per row when
        # few rows are matched).
        columns, joins, state_params = Changes._odoo_state_parts(
            audience, contact="best.contact_id", deleted_at="NULL::timestamp",
            lateral=member_ids is not None or since is not None)
        rows, contacts = "mailchimp_member", "mailing_contact c ON c.email_normalized = lower(m.email)"
        if since and member_ids is None:
            # The rows an incremental cycle looks at, found apart: those to
            # do (their index), and those of the addresses of contacts
            # written since (by the hash, Mailchimp's id of the address, or
            # for a row without one, by its address).
            # Joined as one set, the planner hashed every contact to find
            # the few written since for the rows without a contact (0.15 s
            # of a 100,000-member cycle).
            rows = f"""(SELECT id, email, audience_id, contact_id, odoo_deleted_at, mc_status_changed, sync_status
                         FROM mailchimp_member
                        WHERE audience_id = %(aud)s AND contact_id IS NULL AND sync_status = 'todo'
                       UNION
                       SELECT m.id, m.email, m.audience_id, m.contact_id, m.odoo_deleted_at, m.mc_status_changed,
                              m.sync_status
                         FROM mailing_contact w
                         JOIN mailchimp_member m
                           ON {hash_key_sql("m.audience_id", "m.subscriber_hash")}
                              = {hash_key_sql("%(aud)s", "md5(w.email_normalized)")}
                        WHERE w.write_date >= %(since)s AND w.email_normalized IS NOT NULL
                          AND m.contact_id IS NULL
                       UNION
                       -- (a row written without a hash, as through the ORM)
                       SELECT id, email, audience_id, contact_id, odoo_deleted_at, mc_status_changed, sync_status
                         FROM mailchimp_member
                        WHERE audience_id = %(aud)s AND contact_id IS NULL AND subscriber_hash IS NULL)"""
            # and their contacts looked up by address, row by row
            contacts = """LATERAL (SELECT c.id, c.write_date FROM mailing_contact c
                                    WHERE c.email_normalized = lower(m.email)) c ON TRUE"""
        # Ranked in one statement: the one owner of the email; else the
        # lowest id already on the list; else the lowest with any history
        # on it; else the lowest.  A contact deleted in Odoo is not matched
        # again unless Mailchimp changed the member after the deletion.
        self.env.cr.execute(
            f"""
            WITH cand AS (
                SELECT m.id AS member_id, c.id AS contact_id,
                       (s.id IS NOT NULL AND NOT COALESCE(s.opt_out, FALSE)) AS on_list,
                       (s.id IS NOT NULL OR r.id IS NOT NULL) AS has_history
                  FROM {rows} m
                  JOIN {contacts}
             LEFT JOIN mailing_subscription s ON s.contact_id = c.id AND s.list_id = %(list)s
             LEFT JOIN mailchimp_list_removal r ON r.contact_id = c.id AND r.list_id = %(list)s
                 WHERE m.audience_id = %(aud)s AND m.contact_id IS NULL
                   AND (m.odoo_deleted_at IS NULL OR m.mc_status_changed > m.odoo_deleted_at)
                   AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
                   AND {ROW_IN_PART}
                   AND (%(since)s::timestamp IS NULL OR m.sync_status = 'todo' OR c.write_date >= %(since)s)
            ), best AS (
                SELECT DISTINCT ON (member_id) member_id, contact_id
                  FROM cand ORDER BY member_id, on_list DESC, has_history DESC, contact_id
            )
            UPDATE mailchimp_member m SET contact_id = st.contact_id, odoo_deleted_at = NULL,
                   {Changes._odoo_state_assignments()}
              FROM (SELECT best.member_id, best.contact_id, {columns} FROM best {joins}) st
             WHERE m.id = st.member_id
            """,
            dict(state_params, aud=audience.id, list=audience.mailing_list_id.id, ids=member_ids, since=since,
                 **part_params(part)),
        )
        self._match_partners(audience, member_ids, since, part)

    @api.model
    def _match_partners(self, audience, member_ids=None, since=None, part=None):
        """Link each row (and its contact) to the partner of its email.
        With ``since``: only rows to do, and contacts or partners written
        since (a link can only appear or change through such a write);
        with ``part``: only the rows in it (see _match_contacts)."""
        since = since or None  # an unset Datetime field reads False
        self.env.cr.execute(
            f"""
            UPDATE mailchimp_member m SET partner_id = c.partner_id
              FROM mailing_contact c
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NOT NULL
               AND m.partner_id IS DISTINCT FROM c.partner_id
               AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
               AND {ROW_IN_PART};
            WITH best AS (
                SELECT DISTINCT ON (m.id) m.id AS member_id, p.id AS partner_id
                  FROM mailchimp_member m
                  JOIN mailing_contact c ON c.id = m.contact_id
                  JOIN res_partner p ON p.email_normalized = c.email_normalized AND p.active
                 WHERE m.audience_id = %(aud)s AND m.partner_id IS NULL
                   AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
                   AND {ROW_IN_PART}
                   AND (%(since)s::timestamp IS NULL OR m.sync_status = 'todo' OR c.write_date >= %(since)s
                        OR p.write_date >= %(since)s)
              ORDER BY m.id, p.id
            )
            UPDATE mailchimp_member m SET partner_id = best.partner_id
              FROM best WHERE m.id = best.member_id;
            UPDATE mailing_contact c SET partner_id = m.partner_id
              FROM mailchimp_member m
             WHERE m.audience_id = %(aud)s AND m.contact_id = c.id AND c.partner_id IS NULL
               AND m.partner_id IS NOT NULL
               AND (%(ids)s::int[] IS NULL OR m.id = ANY(%(ids)s::int[]))
               AND {ROW_IN_PART};
            """,
            dict(aud=audience.id, ids=member_ids, since=since, **part_params(part)),
        )
        self.invalidate_model(["partner_id"])
        self.env["mailing.contact"].invalidate_model(["partner_id"])

    @api.model
    def _add_odoo_only(self, audience, lateral=False, part=None):
        """Rows for contacts subscribed in Odoo that Mailchimp does not know,
        with their Odoo side; ``lateral`` (an incremental cycle, whose new
        rows are the few contacts subscribed since the last) looks that side
        up per row, as the match does for the same cycles.  ``part``
        (parts, which): only the addresses whose hash falls in that part (a
        lane's share of a full cycle's insert)."""
        Changes = self.env["mailchimp.odoo.changes"]
        blacklisted = Changes._blacklist_clause(audience)
        # Hashed, the Odoo side read every membership of each mapped list
        # to add a few hundred rows (0.2 s of a 100,000-member incremental
        # cycle; the planner's cost of a lookup is that of a disk read).
        columns, joins, state_params = Changes._odoo_state_parts(
            audience, contact="n.contact_id", deleted_at="NULL::timestamp", lateral=lateral)
        # Asked of the membership on an incremental cycle, whose new rows
        # are few: the planner then sets the list's members against the
        # contacts the cache has (mailchimp_member_contact_idx) before it
        # reads a contact, instead of hashing every contact first (0.33 s
        # against 0.2 s at 100,000 members).  Of the contact on a full
        # cycle, as the first sync's plan was measured.
        member_of = "s.contact_id" if lateral else "c.id"
        self.env.cr.execute(
            f"""
            INSERT INTO mailchimp_member AS m (audience_id, contact_id, partner_id, email, subscriber_hash,
                                               sync_status, odoo_subscribed, odoo_changed, odoo_interests,
                                               odoo_interests_changed)
            SELECT %(aud)s, n.contact_id, n.partner_id, n.email, md5(n.email), 'todo', {columns}
              FROM (
            SELECT DISTINCT ON (c.email_normalized)
                   c.id AS contact_id, c.partner_id, c.email_normalized AS email
              FROM mailing_subscription s
              JOIN mailing_contact c ON c.id = s.contact_id
         LEFT JOIN mail_blacklist b ON b.email = c.email_normalized
             WHERE s.list_id = %(list)s AND NOT COALESCE(s.opt_out, FALSE)
               AND c.email_normalized IS NOT NULL AND NOT {blacklisted}
               AND {ADDRESS_IN_PART}
               AND NOT EXISTS (SELECT 1 FROM mailchimp_member o
                                WHERE o.audience_id = %(aud)s AND o.contact_id = {member_of})
          ORDER BY c.email_normalized, c.id
                   ) n
            {joins}
            -- (the key: HASH_CONSTRAINT)
            ON CONFLICT DO NOTHING
            """,
            dict(state_params, aud=audience.id, list=audience.mailing_list_id.id, **part_params(part)),
        )
        self.invalidate_model()

    @api.model
    def _drop_duplicates(self, audience):
        """A contact added in Odoo whose email then appeared at Mailchimp
        independently: keep the row Mailchimp knows.  (Joined rather than
        correlated: the candidates are few, the audience is large.)"""
        # Only a contact with two rows can have such a pair: the contacts
        # are counted from the index of rows by contact alone, in its
        # order, and only the rows of those found (usually none) are read.
        # Checked on every row, the stage read the whole cache in every
        # cycle; asked in one statement, the planner did so still.
        self.env.cr.execute(
            """SELECT contact_id FROM mailchimp_member WHERE audience_id = %s AND contact_id IS NOT NULL
             GROUP BY contact_id HAVING count(*) > 1""",
            (audience.id,),
        )
        contact_ids = [contact_id for contact_id, in self.env.cr.fetchall()]
        if not contact_ids:
            return
        self.env.cr.execute(
            """
            DELETE FROM mailchimp_member d
             USING mailchimp_member o
             WHERE d.contact_id = ANY(%(contacts)s::int[])
               AND d.audience_id = %(aud)s AND d.mc_status IS NULL AND d.contact_id IS NOT NULL
               AND o.audience_id = %(aud)s AND o.contact_id = d.contact_id
               AND o.id <> d.id AND o.mc_status IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM mailchimp_update u WHERE u.member_id = d.id AND u.state = 'sent')
            """,
            {"aud": audience.id, "contacts": int_array(contact_ids)},
        )
        self.invalidate_model()

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
            f"""SELECT o.id FROM mailchimp_member o
                  JOIN mailchimp_member m ON m.audience_id = o.audience_id AND m.id <> o.id
                  JOIN jsonb_to_recordset(%s::jsonb) AS x(id int, hash varchar)
                    ON x.id = m.id
                   AND {hash_key_sql("o.audience_id", "o.subscriber_hash")}
                       = {hash_key_sql("m.audience_id", "x.hash")}""",
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

    # ------------------------------------------------------------------
    # Addresses changed at Mailchimp
    # ------------------------------------------------------------------

    @api.model
    def _row_of(self, audience, email):
        """The audience's cache row of ``email`` (by its subscriber hash)."""
        # In SQL: a domain on the hash would not use the key's index.
        self.flush_model(["audience_id", "subscriber_hash"])
        self.env.cr.execute(
            f"""SELECT id FROM mailchimp_member
                 WHERE {hash_key_sql("audience_id", "subscriber_hash")} = {hash_key_sql("%s", "%s")} LIMIT 1""",
            (audience.id, subscriber_hash(email)),
        )
        row_ids = [row_id for (row_id,) in self.env.cr.fetchall()]
        # (searched by id: the caller's access to the rows is checked as before)
        return self.search([("id", "in", row_ids)]) if row_ids else self.browse()

    @api.model
    def _follow_renames(self, audience, since=None, limit=None):
        """Members a fetch found under a new address: Mailchimp keeps a
        member's ``contact_id`` when its address changes, so a row the
        fetch wrote (to do, and changed since ``since``) that shares its
        contact id with an older row of another address is that member
        renamed.  The old row's contact moves with it, as the ``upemail``
        webhook moves it (``_move_email``): without webhooks, the renamed
        member would otherwise make a second contact, and the old one
        would stay subscribed in Odoo under an address Mailchimp no longer
        has.  One scan of the cache per cycle; the renames are moved one by
        one (a person's own change, a few per cycle), at most ``limit`` of
        them.  Returns how many."""
        self.env.flush_all()
        cr = self.env.cr
        # Each person's latest row among those fetched is the member as it
        # is now; any older row of theirs is an address they left.  A row
        # the fetch inserted or changed is to do (the index of rows to do
        # finds the few of an incremental cycle); the older rows take one
        # scan of the cache.
        cr.execute(
            """WITH f AS (
                   SELECT DISTINCT ON (mc_contact_id) id, email, mc_contact_id, mc_last_changed
                     FROM mailchimp_member
                    WHERE audience_id = %(aud)s AND sync_status = 'todo'
                      AND mc_contact_id IS NOT NULL AND mc_status IS NOT NULL
                      AND (%(since)s::timestamp IS NULL OR mc_last_changed >= %(since)s::timestamp)
                 ORDER BY mc_contact_id, mc_last_changed DESC, id DESC)
               SELECT o.id, o.email, f.id, f.email
                 FROM f JOIN mailchimp_member o ON o.audience_id = %(aud)s AND o.mc_contact_id = f.mc_contact_id
                WHERE o.id <> f.id AND o.mc_status IS NOT NULL AND o.mc_last_changed < f.mc_last_changed
             ORDER BY o.id LIMIT %(limit)s""",
            {"aud": audience.id, "since": since or None, "limit": limit},
        )
        pairs = cr.fetchall()
        if not pairs:
            return 0
        # One writer per member, as the webhook holds them (a webhook that
        # moved one meanwhile makes this step start again on fresh rows).
        self._lock_rows(sorted({row_id for old_id, _o, new_id, _n in pairs for row_id in (old_id, new_id)}))
        for old_id, old_email, new_id, new_email in pairs:
            _logger.info("Audience %s: a member's address changed at Mailchimp (found by the fetch)", audience.id)
            self._move_email(audience, old_email, new_email, rows=(self.browse(old_id), self.browse(new_id)))
        # The rows that took a contact have its Odoo side from now on.
        self.env["mailchimp.odoo.changes"]._refresh_odoo_state(audience, [new_id for _o, _e, new_id, _n in pairs])
        self.invalidate_model()
        return len(pairs)

    @api.model
    def _move_email(self, audience, old_email, new_email, rows=None):
        """The member's address changed at Mailchimp (an ``upemail`` event,
        or a fetch that found the member under a new address).

        The cache row moves to the new address (its unsent updates follow
        it).  If a row for the new address exists already (an event or a
        fetch saw it first), that row takes the old row's contact and the
        old row is emptied (the next sync drops it).

        The contact rule: a mailing contact holds one address, the one the
        list mails, so it takes the new address when it had the old one;
        the old address stays in its chatter.  A linked partner that had the
        old address follows as the audience says (res.partner's
        _mailchimp_email_moved: its email changes, or it gets a note).
        ``rows``: the (old, new) rows, where the caller found them already.
        """
        if rows is None and subscriber_hash(old_email) == subscriber_hash(new_email):
            return  # a change of case only: the same member
        old_row, new_row = rows or (self._row_of(audience, old_email), self._row_of(audience, new_email))
        if not old_row:
            return
        contact = old_row.contact_id
        partner = old_row.partner_id
        if new_row:
            self.env["mailchimp.update"]._cancel_unsent_of(
                old_row.ids, self.env._("Cancelled: the address changed at Mailchimp."))
            moved = {
                "contact_id": False,
                "partner_id": False,
                "mc_status": False,
                "sync_status": "ok",
                "sync_error": self.env._("The address changed at Mailchimp to %s.", new_email),
            }
            old_row.write(moved)
            if contact and not new_row.contact_id:
                new_row.write({"contact_id": contact.id, "partner_id": partner.id or False})
        else:
            self.env.cr.execute(
                """UPDATE mailchimp_update
                      SET payload = jsonb_set(payload, '{email_address}', to_jsonb(%s::text))
                    WHERE member_id = %s AND state = 'queued' AND payload ? 'email_address'""",
                (new_email, old_row.id),
            )
            old_row.write({"email": new_email, "subscriber_hash": subscriber_hash(new_email)})
            self.env["mailchimp.update"].invalidate_model()
        self.env.flush_all()
        if contact and contact.email_normalized == email_normalize(old_email):
            contact.write({"email": new_email})
            contact._mailchimp_log_notes(
                audience,
                {
                    contact.id: [
                        self.env._(
                            "The email changed at Mailchimp from %(old)s to %(new)s.", old=old_email, new=new_email
                        )
                    ]
                },
            )
        if partner and partner.email_normalized == email_normalize(old_email):
            partner._mailchimp_email_moved(audience, old_email, new_email)

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
