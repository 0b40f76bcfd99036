import re

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..mailchimp_sync import merge_fields as mf
from ..mailchimp_sync.members import fetch_fields
from ..mailchimp_sync.reconcile import split_name
from ..tools.sql import int_array

MERGE_TYPES = [
    ("text", "Text"),
    ("number", "Number"),
    ("address", "Address"),
    ("phone", "Phone"),
    ("date", "Date"),
    ("birthday", "Birthday"),
    ("url", "Website"),
    ("imageurl", "Image URL"),
    ("dropdown", "Drop-down"),
    ("radio", "Radio Buttons"),
    ("zip", "ZIP Code"),
]
DIRECTIONS = [
    (mf.BOTH, "Both ways"),
    (mf.TO_MAILCHIMP, "Odoo → Mailchimp"),
    (mf.TO_ODOO, "Mailchimp → Odoo"),
]
ODOO_MODELS = ("mailing.contact", "res.partner")
# The two default mappings every audience starts with.
DEFAULT_MAPPINGS = (
    ("FNAME", "First Name", "first_name"),
    ("LNAME", "Last Name", "last_name"),
)
_COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# An address merge field mapped to a partner's street is the partner's whole
# postal address: these fields, in the order of the address's parts.
PARTNER_ADDRESS_FIELDS = ("street", "street2", "city", "state_id", "zip", "country_id")


# A field without a default: no value is "only the default".
_NO_DEFAULT = object()


class MailchimpMergeField(models.Model):
    """A merge field of an audience at Mailchimp, and the Odoo field it is
    kept in sync with (of the mailing contact or of its partner), in one
    direction or both.

    Values are converted and checked by the merge field's type in the core
    (``mailchimp_sync.merge_fields``).  Each side has its own change time
    per field: Mailchimp's moves only when the field's value changes (the
    cache keeps one per merge tag); Odoo keeps no time per field, so the
    contact's (or partner's) last write stands for it: a field both sides
    changed goes to the later change, where an unrelated later edit of the
    same contact counts as a change of every mapped field.
    """

    _name = "mailchimp.merge.field"
    _description = "Mailchimp Merge Field Mapping"
    _order = "audience_id, sequence, id"
    _rec_name = "tag"

    audience_id = fields.Many2one("mailchimp.audience", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer(default=10)
    tag = fields.Char(string="Merge Tag", required=True, help="The field's tag at Mailchimp, as in *|FNAME|*.")
    name = fields.Char(string="Mailchimp Field", help="The field's label at Mailchimp.")
    field_type = fields.Selection(MERGE_TYPES, string="Type", required=True, default="text")
    options = fields.Json(help="The field's options at Mailchimp (choices, date or phone format).")
    required = fields.Boolean(string="Required at Mailchimp", readonly=True)
    choices = fields.Char(compute="_compute_choices", help="The values Mailchimp offers for this field.")
    odoo_field_id = fields.Many2one(
        "ir.model.fields",
        ondelete="cascade",
        domain=[("model", "in", ODOO_MODELS), ("store", "=", True),
                ("ttype", "in", ("char", "text", "selection", "date", "many2one", "integer", "float"))],
        help="The field of the mailing contact (or of its partner) this merge field is kept in sync "
        "with. Leave empty to leave the merge field alone. An address merge field mapped to the "
        "partner's Street is the partner's whole postal address (street, street 2, city, state, ZIP "
        "and country); mapped to a text field, it is written on one line.",
    )
    odoo_model = fields.Char(related="odoo_field_id.model", string="Of")
    direction = fields.Selection(DIRECTIONS, required=True, default=mf.BOTH)

    _sql_constraints = [
        ("tag_uniq", "unique(audience_id, tag)", "A merge tag is mapped once per audience."),
    ]

    @api.depends("options", "field_type")
    def _compute_choices(self):
        for mapping in self:
            choices = (mapping.options or {}).get("choices") if mapping.field_type in mf.CHOICE_TYPES else None
            mapping.choices = ", ".join(choices) if choices else False

    @api.constrains("odoo_field_id", "field_type", "direction", "audience_id")
    def _check_odoo_field(self):
        for mapping in self.filtered("odoo_field_id"):
            odoo_field = mapping.odoo_field_id
            if odoo_field.model not in ODOO_MODELS or not odoo_field.store or not _COLUMN_RE.match(odoo_field.name):
                raise ValidationError(self.env._(
                    "%(field)s cannot be synced: choose a stored field of the mailing contact or of its partner.",
                    field=odoo_field.field_description))
            allowed = mf.ODOO_TYPES.get(mapping.field_type, frozenset())
            if odoo_field.ttype not in allowed:
                raise ValidationError(self.env._(
                    "The Mailchimp field %(tag)s holds a %(type)s; the Odoo field %(field)s cannot hold it. "
                    "Choose a field of one of these kinds: %(kinds)s.",
                    tag=mapping.tag, type=dict(MERGE_TYPES)[mapping.field_type],
                    field=odoo_field.field_description, kinds=", ".join(sorted(allowed))))
            written = mapping._written_fields()
            writers = mapping.audience_id.merge_field_ids.filtered(
                lambda m, f=written: m.odoo_field_id and m.direction != mf.TO_MAILCHIMP and m._written_fields() & f)
            if len(writers) > 1:
                raise ValidationError(self.env._(
                    "%(field)s would be written from two Mailchimp fields (%(tags)s): map it once, or send "
                    "the others Odoo → Mailchimp only.",
                    field=odoo_field.field_description, tags=", ".join(writers.mapped("tag"))))

    # ------------------------------------------------------------------
    # Configuration
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        mappings = super().create(vals_list)
        mappings.filtered("odoo_field_id")._request_full_sync()
        return mappings

    def write(self, vals):
        res = super().write(vals)
        if {"odoo_field_id", "direction", "field_type", "options"} & set(vals):
            self.filtered("odoo_field_id")._request_full_sync()
        return res

    def _request_full_sync(self):
        """A new mapping needs every member's value of the field, which
        only a full fetch reads (an incremental one reads members changed
        lately): the next cycle is a full one."""
        audiences = self.audience_id.filtered(lambda a: a.last_fetch_at and not a.full_sync_requested)
        audiences.sudo().full_sync_requested = True

    @api.model
    def _default_mapping_commands(self):
        """FNAME and LNAME, kept in sync with the contact's first and last
        names both ways: every audience starts with them."""
        Field = self.env["ir.model.fields"]
        return [
            (0, 0, {"tag": tag, "name": name, "field_type": "text", "sequence": i,
                    "odoo_field_id": Field._get("mailing.contact", fname).id})
            for i, (tag, name, fname) in enumerate(DEFAULT_MAPPINGS)
        ]

    @api.model
    def _of(self, audience):
        """The audience's mappings that sync (those with an Odoo field)."""
        return audience.merge_field_ids.filtered("odoo_field_id")

    @api.model
    def _specs(self, audience):
        """The mappings as the core reads them: [(tag, type, options, direction)]."""
        return [(m.tag, m.field_type, m.options or {}, m.direction) for m in self._of(audience)]

    @api.model
    def _data_config(self, audience):
        """The audience's data settings as one text: a change of any of them
        makes every row's data worth reconciling again."""
        mappings = ";".join(
            f"{m.tag}={m.odoo_model}.{m.odoo_field_id.name}:{m.direction}:{m.field_type}" for m in self._of(audience))
        return f"{mappings}|{audience.tag_prefix or ''}|{audience.update_partners}"

    @api.model
    def _fetch_fields(self, audience):
        """The member fields the fetch asks for: the core's, and the merge
        fields this audience maps."""
        return fetch_fields(self._of(audience).mapped("tag"))

    @api.model
    def _update_from_mailchimp(self, audience, remote_fields):
        """Refresh an audience's merge fields from Mailchimp's list (tag,
        name, type, options, required): new ones are added unmapped, known
        ones keep their mapping, ones Mailchimp no longer has are removed
        (they could not be synced any more)."""
        known = {m.tag: m for m in audience.merge_field_ids}
        for i, remote in enumerate(remote_fields):
            tag = remote.get("tag")
            if not tag:
                continue
            vals = {
                "name": remote.get("name") or tag,
                "field_type": remote.get("type") if remote.get("type") in dict(MERGE_TYPES) else "text",
                "options": remote.get("options") or {},
                "required": bool(remote.get("required")),
            }
            mapping = known.pop(tag, None)
            if mapping:
                changed = {k: v for k, v in vals.items() if mapping[k] != v}
                if changed:
                    mapping.write(changed)
            else:
                self.create(dict(vals, audience_id=audience.id, tag=tag, sequence=10 + i))
        if known:
            self.browse([m.id for m in known.values()]).unlink()

    def _column(self):
        """The mapped field's column (checked to be a plain stored field)."""
        self.ensure_one()
        name = self.odoo_field_id.name
        if not _COLUMN_RE.match(name or "") or not self.env[self.odoo_model]._fields[name].store:
            raise ValidationError(self.env._("%s is not a stored field.", name))
        return name

    def _is_partner_address(self):
        """An address merge field mapped to a partner's street: the
        partner's whole postal address (PARTNER_ADDRESS_FIELDS)."""
        self.ensure_one()
        return (self.field_type == "address" and self.odoo_model == "res.partner"
                and self.odoo_field_id.name == "street")

    def _written_fields(self):
        """{(model, field)} this mapping writes in Odoo."""
        return {(self.odoo_model, name) for name in self._columns()}

    def _columns(self):
        """The columns of the mapped record that hold the value."""
        return PARTNER_ADDRESS_FIELDS if self._is_partner_address() else (self._column(),)

    def _is_name_part(self):
        """The contact's first or last name: read with the full name as a
        fallback, and written together so the full name stays whole."""
        return self.odoo_model == "mailing.contact" and self.odoo_field_id.name in ("first_name", "last_name")

    # ------------------------------------------------------------------
    # Values of a reconcile chunk
    # ------------------------------------------------------------------

    def _lang(self):
        # Names of related records and option labels go to Mailchimp in one
        # language, whoever runs the sync: the company's.  Read in SQL: each
        # reconcile chunk asks in a transaction of its own, and through the
        # ORM reading the company and its partner took five statements.
        company_id = self.env["ir.model.data"]._xmlid_to_res_id("base.main_company")
        self.env["res.company"].flush_model(["partner_id"])
        self.env["res.partner"].flush_model(["lang"])
        self.env.cr.execute(
            "SELECT p.lang FROM res_company c JOIN res_partner p ON p.id = c.partner_id WHERE c.id = %s",
            (company_id,),
        )
        row = self.env.cr.fetchone()
        return (row and row[0]) or "en_US"

    def _spec(self):
        """This mapping as plain values, read once per chunk rather than
        through the ORM per row: (tag, model, field name, field type, is a
        name part, merge type, options, direction)."""
        self.ensure_one()
        ttype = mf.PARTNER_ADDRESS if self._is_partner_address() else self.odoo_field_id.ttype
        return (self.tag, self.odoo_model, self._column(), ttype, self._is_name_part(),
                self.field_type, self.options or {}, self.direction)

    @api.model
    def _load_odoo_values(self, audience, rows):
        """Give each loaded row ``odoo_values``: merge tag -> (the mapped
        Odoo field's value in plain Python, its record's last write), read
        for the whole chunk in one query per model.  A many2one gives its
        record's name, a selection its label.  Fields of a row without a
        partner are left out."""
        for row in rows:
            row["odoo_values"] = {}
        specs = [m._spec() for m in self._of(audience)]
        if not specs:
            return
        lang = self._lang()
        cr = self.env.cr
        for model, key in (("mailing.contact", "contact_id"), ("res.partner", "contact_partner_id")):
            of_model = [s for s in specs if s[1] == model]
            ids = sorted({row[key] for row in rows if row.get(key)})
            if not of_model or not ids:
                continue
            Model = self.env[model].sudo().with_context(lang=lang, active_test=False)
            fnames = sorted({s[2] for s in of_model})
            names = model == "mailing.contact" and any(s[4] for s in of_model)
            columns = [
                f'COALESCE("{f}"->>%(lang)s, "{f}"->>\'en_US\')' if Model._fields[f].translate else f'"{f}"'
                for f in fnames
            ]
            if names:
                columns += ["first_name", "last_name", "name", "email_normalized"]
            # A partner's postal address: the rest of its parts after the
            # mapped fields (the street is one of them), state and country
            # by their codes, as Mailchimp spells them.
            address = any(s[3] == mf.PARTNER_ADDRESS for s in of_model)
            if address:
                columns += ["street2", "city", "zip",
                            "(SELECT code FROM res_country_state WHERE id = state_id)",
                            "(SELECT code FROM res_country WHERE id = country_id)"]
            cr.execute(
                f"SELECT id, write_date, {', '.join(columns)} FROM {Model._table} WHERE id = ANY(%(ids)s::int[])",
                {"ids": int_array(ids), "lang": lang},
            )
            data = {}  # record id -> (write date, [values by fnames, then names], effective names)
            for row_id, write_date, *values in cr.fetchall():
                data[row_id] = (write_date, values, self._effective_names(*values[len(fnames):]) if names else None)
            position = {fname: i for i, fname in enumerate(fnames)}
            # A value that is only the field's default (a partner's type,
            # say, on a partner the sync just created) holds no change to
            # oppose to Mailchimp's.
            defaults = Model.default_get(fnames)
            shown = {}  # field -> {stored value: what Mailchimp is sent}
            for fname in fnames:
                field = Model._fields[fname]
                if field.type == "selection":
                    shown[fname] = dict(field._description_selection(Model.env))
                elif field.type == "many2one":
                    related = {r[1][position[fname]] for r in data.values() if r[1][position[fname]]}
                    shown[fname] = {r.id: r.display_name for r in self.env[field.comodel_name].sudo().with_context(
                        lang=lang, active_test=False).browse(related)}
            # Each mapping's reading worked out once, not for every row:
            # (tag, where its value is, which name part it is, what it
            # shows, its default).
            readings = []
            for tag, _model, fname, ttype, name_part, *_rest in of_model:
                default = None if ttype == mf.PARTNER_ADDRESS else defaults.get(fname)
                readings.append((tag, position[fname], (0 if fname == "first_name" else 1) if name_part else None,
                                 shown.get(fname), _NO_DEFAULT if default in (None, False) else default,
                                 ttype == mf.PARTNER_ADDRESS))
            for row in rows:
                found = data.get(row.get(key))
                if not found:
                    continue
                write_date, values, effective_names = found
                if names:
                    row["odoo_names"] = effective_names
                odoo_values = row["odoo_values"]
                for tag, at, name_part, shown_as, default, is_address in readings:
                    raw = values[at]
                    if is_address:
                        street2, city, zip_code, state, country = values[len(fnames):]
                        parts = dict(zip(mf.ADDRESS_KEYS, (raw, street2, city, state, zip_code, country),
                                         strict=True))
                        # No street, no postal address: a partner known by
                        # its country (or city) only has none to send.
                        value = {k: v or "" for k, v in parts.items()} if (raw or "").strip() else None
                    elif name_part is not None:
                        value = effective_names[name_part]
                    elif shown_as is not None:
                        value = shown_as.get(raw, raw) if raw is not None else None
                    else:
                        value = raw
                    odoo_values[tag] = (value, None if raw == default else write_date)

    @staticmethod
    def _effective_names(first, last, name, email):
        """A contact's (first, last): its own, else its full name split (a
        name that is only the address counts as none)."""
        if first or last:
            return (first or "", last or "")
        return split_name(name if name != email else "")

    def _data_writer(self, audience, rows):
        """A :class:`DataWriter` for one reconcile chunk of ``audience``."""
        return DataWriter(self.env, audience, rows)

    # ------------------------------------------------------------------
    # Sentences
    # ------------------------------------------------------------------

    @api.model
    def _describe_problems(self, audience, problems):
        """One sentence per value that could not go to the other side, and
        what to do; ``problems`` are ``merge_fields.DataProblem``."""
        labels = {m.tag: m.name or m.tag for m in audience.merge_field_ids}
        sentences = []
        for problem in problems:
            if problem.code == mf.EMAIL_TAKEN:
                sentences.append(self.env._(
                    "The address changed in Odoo to %(email)s, but another member of this audience at "
                    "Mailchimp already has it, so the member keeps %(old)s. Merge the two contacts or give "
                    "this one another address; the next sync then tries again.",
                    email=problem.params.get("email"), old=problem.params.get("old")))
                continue
            why = self._why(problem)
            sentences.append(self.env._(
                "%(field)s (%(tag)s): %(why)s", field=labels.get(problem.tag, problem.tag), tag=problem.tag, why=why))
        if any(p.code != mf.EMAIL_TAKEN for p in problems):
            sentences.append(self.env._(
                "These values were not synced (the member's other data was). Correct them in Odoo or at "
                "Mailchimp; the next sync then tries again."))
        return " ".join(sentences)

    def _why(self, problem):
        value = problem.value
        return {
            mf.NOT_A_NUMBER: lambda: self.env._("“%s” is not a number.", value),
            mf.NOT_A_WHOLE_NUMBER: lambda: self.env._(
                "“%s” is not a whole number, and the Odoo field holds whole numbers only.", value),
            mf.NOT_A_DATE: lambda: self.env._("“%s” is not a date.", value),
            mf.NOT_A_BIRTHDAY: lambda: self.env._("“%s” is not a birthday (a month and a day).", value),
            mf.INCOMPLETE_ADDRESS: lambda: self.env._(
                "“%s” is not a complete address: Mailchimp needs the street, city, state and ZIP code, "
                "written as “street, city, state, ZIP, country”.", value),
            mf.NOT_A_PHONE: lambda: self.env._(
                "“%s” is not a US phone number, and this Mailchimp field takes US numbers only.", value),
            mf.NOT_A_URL: lambda: self.env._("“%s” is not a web address.", value),
            mf.NOT_A_ZIP: lambda: self.env._("“%s” is not a US ZIP code.", value),
            mf.NOT_A_CHOICE: lambda: self.env._(
                "“%(value)s” is not one of the values Mailchimp offers for this field (%(choices)s).",
                value=value, choices=problem.params.get("choices", "")),
            mf.NO_MATCH_IN_ODOO: lambda: self.env._(
                "Mailchimp's value “%(value)s” matches no %(what)s in Odoo.",
                value=value, what=problem.params.get("what", "")),
        }.get(problem.code, lambda: value)()


class DataWriter:
    """The Odoo side of one reconcile chunk's data decisions: collects what
    each row's decision writes in Odoo (mapped fields, names, tags), checks
    it can be written, then writes it all at once.  Related records and
    options are looked up once per distinct value in the chunk, never per
    row."""

    def __init__(self, env, audience, rows):
        self.env = env
        self.audience = audience
        self.mappings = {m.tag: m for m in env["mailchimp.merge.field"]._of(audience)}
        self.specs = {tag: mapping._spec() for tag, mapping in self.mappings.items()}
        self.rows = {row["id"]: row for row in rows}
        self.names = []  # (contact id, first, last)
        self.writes = {}  # (model, record id) -> vals
        self.tags_add, self.tags_remove = [], []
        self.failed = {}  # row id -> [DataProblem]
        self.references = self._resolve_references(rows)

    def _resolve_references(self, rows):
        """{tag: {Mailchimp's text: record id or option key (None: no match)}}
        for the many2one and selection mappings, over the chunk's values."""
        refs = {}
        lang = self.mappings and self.env["mailchimp.merge.field"]._lang()
        for tag, (_tag, model, fname, ttype, _name, mtype, options, direction) in self.specs.items():
            if ttype == mf.PARTNER_ADDRESS and direction != mf.TO_MAILCHIMP:
                refs[tag] = self._resolve_places(tag, rows, lang)
                continue
            if ttype not in ("many2one", "selection") or direction == mf.TO_MAILCHIMP:
                continue
            texts = set()
            for row in rows:
                value = (row.get("mc_merge_fields") or {}).get(tag)
                if not mf.is_empty(value):
                    texts.add(mf.to_odoo(mtype, "char", mf.canonical(mtype, options, value, strict=False)))
            Model = self.env[model].with_context(lang=lang)
            field = Model._fields[fname]
            if ttype == "selection":
                choices = field._description_selection(Model.env)
                refs[tag] = {text: mf.match_option(text, choices) for text in texts}
                continue
            comodel = self.env[field.comodel_name].sudo().with_context(lang=lang, active_test=True)
            names = comodel._rec_names_search or [comodel._rec_name]
            refs[tag] = {}
            for text in texts:
                # The same name (or code), without regard to case: never a
                # record whose name only contains it.
                domain = ["|"] * (len(names) - 1) + [(name, "=ilike", text) for name in names]
                refs[tag][text] = comodel.search(domain, limit=1, order="id").id or None
        return refs

    def _resolve_places(self, tag, rows, lang):
        """{"countries": {code or name, folded: id}, "states": {(country id,
        code or name, folded): id}} for the chunk's addresses of ``tag``:
        every country (a few hundred), and the states of the countries the
        addresses name, read once per chunk."""
        Country = self.env["res.country"].sudo().with_context(lang=lang)
        countries = {}
        for country in Country.search([]):
            countries[country.name.casefold()] = country.id
            countries[country.code.casefold()] = country.id
        named = set()
        for row in rows:
            value = (row.get("mc_merge_fields") or {}).get(tag)
            if isinstance(value, dict):
                named.add(countries.get(str(value.get("country") or mf.DEFAULT_COUNTRY).strip().casefold()))
        states = {}
        for state in self.env["res.country.state"].sudo().with_context(lang=lang).search(
                [("country_id", "in", [c for c in named if c])]):
            states[(state.country_id.id, state.name.casefold())] = state.id
            states[(state.country_id.id, state.code.casefold())] = state.id
        return {"countries": countries, "states": states}

    def _partner_address(self, tag, value):
        """The partner's address fields for Mailchimp's address ``value``
        (empty: cleared, except the country, which Odoo uses beyond
        mailings: taxes, say).  A country or state that Odoo does not have
        raises :class:`MergeValueError`."""
        address = mf.to_odoo("address", mf.PARTNER_ADDRESS, value)
        if not address:
            return dict.fromkeys([f for f in PARTNER_ADDRESS_FIELDS if f != "country_id"], False)
        places = self.references.get(tag) or {"countries": {}, "states": {}}
        country_id = places["countries"].get(address["country"].casefold())
        if not country_id:
            raise mf.MergeValueError(mf.NO_MATCH_IN_ODOO, address["country"],
                                     what=self._field_label("country_id"))
        state_id = places["states"].get((country_id, address["state"].casefold())) if address["state"] else False
        if state_id is None:
            raise mf.MergeValueError(mf.NO_MATCH_IN_ODOO, address["state"],
                                     what=self._field_label("state_id"))
        return {"street": address["addr1"] or False, "street2": address["addr2"] or False,
                "city": address["city"] or False, "state_id": state_id, "zip": address["zip"] or False,
                "country_id": country_id}

    def _field_label(self, fname):
        return self.env["ir.model.fields"]._get("res.partner", fname).field_description

    def collect(self, row, decision):
        """Take one row's decision (its data part); a value that cannot be
        written in Odoo is left out and listed with the row's problems,
        and the row fails (the rest of its changes still go)."""
        contact_id = row.get("contact_id")
        if not contact_id:
            return
        names = {}
        for tag, value in decision.odoo_values.items():
            spec = self.specs.get(tag)
            if not spec:
                continue
            try:
                if spec[4]:  # the contact's first or last name
                    names[spec[2]] = mf.to_odoo(spec[5], "char", value) or ""
                    continue
                self._collect_value(row, spec, value)
            except mf.MergeValueError as exc:
                decision.data_problems.append(exc.problem(tag))
                self._forget_agreed(decision, tag, row)
        if names:
            first, last = row.get("odoo_names") or ("", "")
            self.names.append((contact_id, names.get("first_name", first), names.get("last_name", last)))
        self.tags_add += [(contact_id, tag) for tag in sorted(decision.odoo_tags_add)]
        self.tags_remove += [(contact_id, tag) for tag in sorted(decision.odoo_tags_remove)]
        if decision.data_problems:
            decision.status = "fail"
            self.failed[row["id"]] = list(decision.data_problems)

    def _collect_value(self, row, spec, value):
        tag, model, fname, ttype, _name, mtype, _options, _direction = spec
        record_id = row["contact_id"] if model == "mailing.contact" else row.get("contact_partner_id")
        if not record_id:
            return
        if ttype == mf.PARTNER_ADDRESS:
            self.writes.setdefault((model, record_id), {}).update(self._partner_address(tag, value))
            return
        if ttype in ("many2one", "selection"):
            text = mf.to_odoo(mtype, "char", value)
            if text is False:
                odoo_value = False
            else:
                odoo_value = self.references.get(tag, {}).get(text)
                if odoo_value is None:
                    raise mf.MergeValueError(mf.NO_MATCH_IN_ODOO, text,
                                             what=self.mappings[tag].odoo_field_id.field_description)
        else:
            current = (row["odoo_values"].get(tag) or (None, None))[0]
            odoo_value = mf.to_odoo(mtype, "char" if ttype == "text" else ttype, value, current)
        self.writes.setdefault((model, record_id), {})[fname] = odoo_value

    @staticmethod
    def _forget_agreed(decision, tag, row):
        """A value that could not be written is not agreed on: both sides
        keep what they had, and what was agreed before stays."""
        agreed = ((row.get("sent_data") or {}).get("merge_fields") or {})
        if decision.synced_merge_fields is not None:
            if tag in agreed:
                decision.synced_merge_fields[tag] = agreed[tag]
            else:
                decision.synced_merge_fields.pop(tag, None)

    def apply(self):
        """Write everything collected: names and tags in bulk SQL, other
        fields through the ORM (computed fields and the chatter follow),
        records with the same values in one write, the SQL batched by the
        ORM's flush.  Then say in words why rows failed."""
        Contact = self.env["mailing.contact"]
        Contact._mailchimp_apply_names(self.names)
        Contact._mailchimp_apply_tags(self.tags_add, self.tags_remove)
        groups = {}
        for (model, record_id), vals in self.writes.items():
            groups.setdefault((model, tuple(sorted(vals.items()))), []).append(record_id)
        for (model, vals), ids in groups.items():
            self.env[model].sudo().browse(ids).write(dict(vals))
        if self.writes:
            self.env.flush_all()

    def describe_failures(self):
        """[(row id, sentence)] of the rows that failed on their data."""
        Mapping = self.env["mailchimp.merge.field"]
        return [(row_id, Mapping._describe_problems(self.audience, problems))
                for row_id, problems in self.failed.items()]
