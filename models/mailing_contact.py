import socket

from markupsafe import Markup

from odoo import api, fields, models

from ..tools.sql import int_array, row_trigger_sql

# Contacts created from Mailchimp per statement (one step's worth).
CREATE_CHUNK = 5000
# The cache rows the create stage gives contacts to (%(aud)s: the
# audience): subscribed or pending members that match nobody; a contact
# deleted in Odoo is not created again unless Mailchimp changed the member
# since.
TO_CREATE_SQL = """audience_id = %(aud)s AND contact_id IS NULL
                   AND mc_status IN ('subscribed', 'pending') AND email IS NOT NULL
                   AND (odoo_deleted_at IS NULL OR mc_status_changed > odoo_deleted_at)"""
# mass_mailing counts a contact as bouncing from 1 bounce and blacklists
# from 5 (BLACKLIST_MAX_BOUNCED_LIMIT): a cleaned address gets the latter.
CLEANED_BOUNCE_COUNT = 5


class MailingContact(models.Model):
    _inherit = "mailing.contact"

    partner_id = fields.Many2one(
        "res.partner",
        string="Contact",
        ondelete="set null",
        index="btree_not_null",
        help="The person behind this mailing contact, matched by email.",
    )
    mailchimp_member_ids = fields.One2many(
        "mailchimp.member", "contact_id", string="Mailchimp Memberships"
    )
    mailchimp_member_count = fields.Integer(compute="_compute_mailchimp_member_count")

    def _compute_mailchimp_member_count(self):
        counts = dict(
            self.env["mailchimp.member"]._read_group(
                [("contact_id", "in", self.ids)], ["contact_id"], ["__count"]
            )
        )
        for contact in self:
            contact.mailchimp_member_count = counts.get(contact, 0)

    def action_view_mailchimp_members(self):
        """Open this contact's rows in the Mailchimp sync cache."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("mailchimp_sync.mailchimp_member_action")
        action["domain"] = [("contact_id", "=", self.id)]
        action["context"] = {}
        return action

    def _mailchimp_log_notes(self, audience, notes):
        """Write one internal note per contact about ``audience``, signed by
        the system (OdooBot, ``base.partner_root``), in one set-based INSERT.

        Used by the sync and the webhooks, for up to thousands of contacts
        at a time; it neither checks access rights nor notifies anyone (as
        ``mail.thread._message_log_batch``), so call it where the change
        itself was allowed.

        :param audience: the ``mailchimp.audience`` the notes are about; each
            note starts by naming it.
        :param dict notes: ``{contact id: [line, ...]}``: plain-text lines,
            already translated (``env._``), one paragraph each; they are
            HTML-escaped here.  Contacts without lines get no note.
        :return: the number of notes written.
        """
        rows = {contact_id: [line for line in lines if line] for contact_id, lines in notes.items()}
        rows = {contact_id: lines for contact_id, lines in rows.items() if lines}
        if not rows:
            return 0
        author = self.env.ref("base.partner_root")
        subtype_id = self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_note")
        header = Markup("<p>%s</p>") % self.env._("Mailchimp audience %s:", audience.name)
        paragraph = Markup("<p>%s</p>")
        # Thousands of contacts share a few notes ("Subscribed at Mailchimp:
        # Newsletter"): each distinct note is rendered and sent once, and
        # each contact names its note by position.  Adapting every value of
        # every row (execute_values) cost a second per 40,000 notes.
        bodies, position = [], {}  # the distinct notes; lines -> position in bodies (from 1)
        contact_ids, body_of = [], []
        for contact_id, lines in rows.items():
            key = tuple(lines)
            if key not in position:
                bodies.append(str(header + Markup().join(paragraph % line for line in lines)))
                position[key] = len(bodies)
            contact_ids.append(contact_id)
            body_of.append(position[key])
        self.env.cr.execute(
            """INSERT INTO mail_message (model, res_id, body, message_id, subtype_id, author_id, email_from,
                                         message_type, is_internal, date,
                                         create_uid, write_uid, create_date, write_date)
               -- A Message-ID shaped as Odoo's (tools.mail.generate_tracking_message_id),
               -- made here: sent from Python, one string per note cost more than the note.
               SELECT 'mailing.contact', v.res_id, (%(bodies)s::text[])[v.body],
                      '<' || md5(random()::text || clock_timestamp()::text || v.res_id)
                          || '-openerp-mailchimp-note@' || %(host)s || '>', %(subtype)s,
                      %(author)s, %(email_from)s, 'notification', TRUE, now() AT TIME ZONE 'UTC',
                      %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
                 FROM unnest(%(contacts)s::int[], %(body_of)s::int[]) AS v(res_id, body)""",
            {"bodies": bodies, "subtype": subtype_id,
             "author": author.id, "email_from": author.email_formatted or None, "uid": self.env.uid,
             "contacts": int_array(contact_ids), "body_of": int_array(body_of), "host": socket.gethostname()},
        )
        self.env["mail.message"].invalidate_model()
        self.env["mailing.contact"].invalidate_model(["message_ids"])
        return len(contact_ids)

    # ------------------------------------------------------------------
    # The sync's writes on contacts (set-based, for a chunk of cache rows)
    # ------------------------------------------------------------------

    @api.model
    def _mailchimp_create_for_members(self, audience, member_ids=None):
        """Create mailing contacts for members subscribed or pending at
        Mailchimp that match nobody (a chunk), and, if the audience says so,
        partners for exactly those rows.  Returns how many were created."""
        return len(self._mailchimp_create_chunk(audience, member_ids))

    @api.model
    def _mailchimp_create_chunk(self, audience, member_ids=None, after_id=0):
        """The chunk of rows after ``after_id`` that
        :meth:`_mailchimp_create_for_members` gives contacts to; returns
        their ids.  The create stage walks the cache from where its last
        chunk ended: from the start, each chunk read again every row given
        a contact before it (a million-member cache spent 80 s so)."""
        Changes = self.env["mailchimp.odoo.changes"]
        # The new contact's Odoo side is written with it.
        columns, joins, state_params = Changes._odoo_state_parts(
            audience, contact="ins.id", deleted_at="NULL::timestamp", created=True)
        self.env.cr.execute(
            f"""
            WITH src AS (
                SELECT id, email, lower(email) AS email_normalized,
                       NULLIF(mc_first_name, '') AS first_name, NULLIF(mc_last_name, '') AS last_name
                  FROM mailchimp_member
                 WHERE {TO_CREATE_SQL}
                   AND (%(ids)s::int[] IS NULL OR id = ANY(%(ids)s::int[])) AND id > %(after)s
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
            UPDATE mailchimp_member m SET contact_id = st.contact_id, odoo_deleted_at = NULL,
                   {Changes._odoo_state_assignments()}
              FROM (SELECT ins.id AS contact_id, ins.email_normalized, {columns} FROM ins {joins}) st
             WHERE m.audience_id = %(aud)s AND lower(m.email) = st.email_normalized
               AND m.contact_id IS NULL
               -- the chunk's rows by id: joined by address alone, each
               -- chunk hashed every row of the cache without a contact
               AND m.id IN (SELECT id FROM src)
            RETURNING m.id
            """,
            dict(state_params, aud=audience.id, uid=self.env.uid, limit=CREATE_CHUNK, ids=member_ids,
                 after=after_id),
        )
        created_rows = [r[0] for r in self.env.cr.fetchall()]
        if audience.create_partners and created_rows:
            self._mailchimp_create_partners(audience, created_rows)
        self.invalidate_model()
        self.env["mailchimp.member"].invalidate_model()
        return created_rows

    @api.model
    def _mailchimp_rows_to_create(self, audience, after_id, limit):
        """The next ``limit`` rows after ``after_id``, in id order, that
        :meth:`_mailchimp_create_chunk` would give contacts to."""
        self.env.cr.execute(
            f"SELECT id FROM mailchimp_member WHERE {TO_CREATE_SQL} AND id > %(after)s ORDER BY id LIMIT %(limit)s",
            {"aud": audience.id, "after": after_id, "limit": limit},
        )
        return [row_id for (row_id,) in self.env.cr.fetchall()]

    @api.model
    def _mailchimp_create_partners(self, audience, member_ids):
        """Partners for the rows just given new contacts, and no others."""
        self.env["mailchimp.member"]._match_partners(audience, member_ids)
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
            self.env["mailchimp.member"]._match_partners(audience, member_ids)

    @api.model
    def _mailchimp_partners_follow(self, audience, member_ids):
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
                WHERE m.id = ANY(%s::int[]) AND m.sent_data ? 'contact'""",
            (int_array(member_ids),),
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
    def _mailchimp_apply_names(self, names):
        """Write names decided from Mailchimp: [(contact id, first, last)]."""
        if not names:
            return
        ids, firsts, lasts = zip(*names, strict=True)
        self.env.cr.execute(
            """UPDATE mailing_contact c
                  SET first_name = NULLIF(v.first, ''), last_name = NULLIF(v.last, ''),
                      name = COALESCE(NULLIF(concat_ws(' ', NULLIF(v.first, ''), NULLIF(v.last, '')), ''), c.name),
                      write_date = now() AT TIME ZONE 'UTC'
                 FROM unnest(%s::int[], %s::varchar[], %s::varchar[]) AS v(id, first, last)
                WHERE c.id = v.id""",
            (int_array(ids), list(firsts), list(lasts)),
        )
        self.env["mailing.contact"].invalidate_model(["name", "first_name", "last_name"])

    @api.model
    def _mailchimp_apply_tags(self, add, remove):
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
        # One statement each, so that rowcount counts every link (a paged
        # execute_values counted its last page only).
        if add:
            cr.execute(
                """INSERT INTO mailing_contact_res_partner_category_rel (mailing_contact_id, res_partner_category_id)
                   SELECT DISTINCT c, t FROM unnest(%s::int[], %s::int[]) AS v(c, t)
                   ON CONFLICT DO NOTHING""",
                (int_array(c for c, _name in add), int_array(tag_ids[name] for _c, name in add)),
            )
            changed += cr.rowcount
        if remove:
            cr.execute(
                """DELETE FROM mailing_contact_res_partner_category_rel rel
                    USING res_partner_category t, unnest(%s::int[], %s::varchar[]) AS v(contact_id, name)
                    WHERE rel.mailing_contact_id = v.contact_id AND rel.res_partner_category_id = t.id
                      AND t.name->>'en_US' = v.name""",
                (int_array(c for c, _name in remove), [name for _c, name in remove]),
            )
            changed += cr.rowcount
        self.env["mailing.contact"].invalidate_model(["tag_ids"])
        return changed

    @api.model
    def _mailchimp_mark_cleaned(self, audience, member_ids):
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
                        WHERE m.id = ANY(%(ids)s::int[]) AND m.mc_status = 'cleaned' AND m.email IS NOT NULL
                       ON CONFLICT (email) DO UPDATE SET active = TRUE WHERE NOT mail_blacklist.active
                    RETURNING email""",
                    {"uid": self.env.uid, "ids": int_array(member_ids)},
                )
                line = self.env._("Mailchimp cleaned this address (a hard bounce or a complaint): "
                                  "it is blacklisted.")
                cr.execute("SELECT id FROM mailing_contact WHERE email_normalized = ANY(%s)",
                           ([r[0] for r in cr.fetchall()],))
            else:
                cr.execute(
                    """UPDATE mailing_contact c SET message_bounce = %(bounces)s
                         FROM mailchimp_member m
                        WHERE m.id = ANY(%(ids)s::int[]) AND m.mc_status = 'cleaned'
                          AND c.email_normalized = lower(m.email) AND COALESCE(c.message_bounce, 0) < %(bounces)s
                    RETURNING c.id""",
                    {"ids": int_array(member_ids), "bounces": CLEANED_BOUNCE_COUNT},
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
                        WHERE m.id = ANY(%(ids)s::int[]) AND m.mc_status = 'cleaned' AND s.contact_id = m.contact_id
                          AND s.list_id = %(list)s AND s.opt_out
                          AND (s.opt_out_reason_id IS NULL OR s.opt_out_reason_id = %(generic)s)""",
                    {"cleaned": cleaned.id, "generic": generic.id if generic else None,
                     "ids": int_array(member_ids), "list": audience.mailing_list_id.id},
                )
        if marked:
            self.env["mailing.contact"]._mailchimp_log_notes(audience, {cid: [line] for cid in marked})
        self.env["mailing.contact"].invalidate_model()
        self.env["mail.blacklist"].invalidate_model()
        self.env["mailing.subscription"].invalidate_model()

    def init(self):
        res = super().init()
        # A deleted contact must not be re-created from Mailchimp nor left
        # subscribed there: remember on its cache rows when it went.
        self.env.cr.execute(row_trigger_sql(
            "mailchimp_sync_contact_deleted", "mailing_contact", "BEFORE DELETE", """
                UPDATE mailchimp_member
                   SET odoo_deleted_at = clock_timestamp() AT TIME ZONE 'UTC', sync_status = 'todo'
                 WHERE contact_id = OLD.id;
                RETURN OLD;"""))
        self.env.cr.execute(
            """
            -- Mailing contacts are found by address (match, cleaned
            -- addresses, blacklist changes), and Odoo does not index it:
            -- each reconcile chunk with a cleaned member, and each
            -- webhook's match, read every contact (a million-member first
            -- sync took 659 s without this index, 609 s with it).  Dropped
            -- on uninstall (hooks.py).
            CREATE INDEX IF NOT EXISTS mailchimp_sync_contact_email_idx
                ON mailing_contact (email_normalized) WHERE email_normalized IS NOT NULL;
            """
        )
        return res
