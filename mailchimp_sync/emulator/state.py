"""In-memory account state: lists, merge fields, interests, members, webhooks.

One ``Store`` is one Mailchimp account.  All mutation happens under
``Store.lock``; the HTTP router, the batch worker and the control API all
take it, so a batch operation and a direct call can never interleave
half-way.
"""

import random
import threading
from collections import OrderedDict

from . import links, mergefields
from .settings import make_settings
from .util import Clock, hex_id, invalid, iso, subscriber_hash

MERGE_FIELD_PRESETS = {
    "FNAME": {"name": "First Name", "type": "text", "options": {"size": 25}},
    "LNAME": {"name": "Last Name", "type": "text", "options": {"size": 25}},
    "ADDRESS": {"name": "Address", "type": "address", "options": {"default_country": 164}},
    "PHONE": {"name": "Phone Number", "type": "phone", "options": {"phone_format": "none"}},
    "BIRTHDAY": {"name": "Birthday", "type": "birthday", "options": {"date_format": "MM/DD"}},
}


class MergeField:
    __slots__ = (
        "default_value",
        "display_order",
        "help_text",
        "merge_id",
        "name",
        "options",
        "public",
        "required",
        "tag",
        "type",
    )

    def __init__(self, merge_id, tag, name, type="text", required=False, default_value="",
                 public=True, display_order=None, options=None, help_text=""):
        self.merge_id = merge_id
        self.tag = tag
        self.name = name
        self.type = type
        self.required = bool(required)
        self.default_value = default_value or ""
        self.public = bool(public)
        self.display_order = display_order if display_order is not None else merge_id + 1
        self.options = options or {}
        self.help_text = help_text or ""

    def to_json(self, list_id, base):
        return {"merge_id": self.merge_id, "tag": self.tag, "name": self.name, "type": self.type,
                "required": self.required, "default_value": self.default_value,
                "public": self.public, "display_order": self.display_order,
                "options": dict(self.options), "help_text": self.help_text, "list_id": list_id,
                "_links": links.merge_field_links(base, list_id, self.merge_id)}


class Interest:
    __slots__ = ("category_id", "display_order", "id", "name")

    def __init__(self, id, name, display_order, category_id):
        self.id, self.name, self.display_order, self.category_id = id, name, display_order, category_id


class Category:
    __slots__ = ("display_order", "id", "interests", "legacy_id", "title", "type")

    def __init__(self, id, title, type, display_order, legacy_id):
        self.id, self.title, self.type, self.display_order = id, title, type, display_order
        self.interests = OrderedDict()
        self.legacy_id = legacy_id


class Member:
    """One audience member.  Timestamps are epoch seconds or None."""

    __slots__ = (
        "compliance_locked",
        "contact_id",
        "email",
        "email_type",
        "full_name",
        "id",
        "interests",
        "ip_opt",
        "ip_signup",
        "language",
        "last_changed",
        "location",
        "member_rating",
        "merge",
        "prev_status",
        "seq",
        "source",
        "status",
        "tags",
        "timestamp_opt",
        "timestamp_signup",
        "unique_email_id",
        "unsubscribe_origin",
        "unsubscribe_reason",
        "vip",
        "web_id",
    )

    def __init__(self):
        self.email_type = "html"
        self.merge = {}
        self.interests = set()
        self.ip_signup = ""
        self.timestamp_signup = None
        self.ip_opt = ""
        self.timestamp_opt = None
        self.member_rating = 2
        self.language = ""
        self.vip = False
        self.source = "API - Generic"
        self.tags = {}
        self.compliance_locked = False
        self.unsubscribe_origin = None
        self.unsubscribe_reason = None
        self.prev_status = None
        self.location = None
        self.full_name = ""


class Webhook:
    __slots__ = ("events", "id", "sources", "url")

    EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
    SOURCES = ("user", "admin", "api")

    def __init__(self, id, url, events, sources):
        self.id, self.url, self.events, self.sources = id, url, events, sources

    def to_json(self, list_id, base):
        return {"id": self.id, "url": self.url, "events": dict(self.events),
                "sources": dict(self.sources), "list_id": list_id,
                "_links": links.webhook_links(base, list_id, self.id)}


class MailList:
    def __init__(self, store, id, name, props=None):
        self.id = id
        self.web_id = store.rng.randint(100000, 999999)
        self.name = name
        self.props = props or {}
        self.date_created = store.clock.now()
        self.merge_fields = OrderedDict()   # merge_id -> MergeField
        self.next_merge_id = 1
        self.categories = OrderedDict()     # id -> Category
        self.members = {}                   # subscriber hash -> Member (creation order)
        self.by_contact = {}                # contact_id -> Member
        self.by_unique = {}                 # unique_email_id -> Member
        self.forgotten = set()              # lowercased emails deleted permanently
        self.webhooks = OrderedDict()
        self.tag_ids = {}                   # tag name -> int id
        self.last_sub = None                # epoch of the last subscribe (stats.last_sub_date)
        self.last_unsub = None              # epoch of the last unsubscribe (stats.last_unsub_date)
        self.version = 0
        self.seq = 0

    def touch(self):
        """Mark member data changed: invalidates cached listings."""
        self.version += 1

    def note_status(self, status, when):
        """Remember the time of a subscribe or unsubscribe for the list's stats."""
        if when is None:
            return
        if status == "subscribed" and (self.last_sub is None or when > self.last_sub):
            self.last_sub = when
        elif status == "unsubscribed" and (self.last_unsub is None or when > self.last_unsub):
            self.last_unsub = when

    def merge_by_tag(self, tag):
        for mf in self.merge_fields.values():
            if mf.tag == tag:
                return mf
        return None

    def interest(self, interest_id):
        for cat in self.categories.values():
            if interest_id in cat.interests:
                return cat.interests[interest_id]
        return None

    def all_interest_ids(self):
        return [i for cat in self.categories.values() for i in cat.interests]

    def find_member(self, key):
        """Resolve a ``{subscriber_hash}``: MD5, email or contact_id."""
        m = self.members.get(key.lower()) if len(key) == 32 else None
        if m is None and "@" in key:
            m = self.members.get(subscriber_hash(key))
        if m is None:
            m = self.by_contact.get(key)
        return m

    def to_json(self, store, include_total=False):
        counts = {"subscribed": 0, "unsubscribed": 0, "cleaned": 0}
        for m in self.members.values():
            if m.status in counts:
                counts[m.status] += 1
        p = self.props
        out = {
            "id": self.id, "web_id": self.web_id, "name": self.name,
            "contact": p.get("contact") or {"company": "", "address1": "", "address2": "", "city": "",
                                            "state": "", "zip": "", "country": "", "phone": ""},
            "permission_reminder": p.get("permission_reminder", ""),
            "use_archive_bar": p.get("use_archive_bar", True),
            "campaign_defaults": p.get("campaign_defaults") or {"from_name": "", "from_email": "",
                                                                 "subject": "", "language": "en"},
            "notify_on_subscribe": "", "notify_on_unsubscribe": "",
            "date_created": iso(self.date_created), "list_rating": 0,
            "email_type_option": bool(p.get("email_type_option", False)),
            "subscribe_url_short": "http://eepurl.com/emul",
            "subscribe_url_long": f"https://emulator.list-manage.com/subscribe?u=0&id={self.id}",
            "beamer_address": f"us1-{self.id}@inbound.mailchimp.com",
            "visibility": p.get("visibility", "prv"), "double_optin": bool(p.get("double_optin", False)),
            "has_welcome": False, "marketing_permissions": bool(p.get("marketing_permissions", False)),
            "modules": [],
            "stats": {"member_count": counts["subscribed"], "unsubscribe_count": counts["unsubscribed"],
                      "cleaned_count": counts["cleaned"], "member_count_since_send": counts["subscribed"],
                      "unsubscribe_count_since_send": 0, "cleaned_count_since_send": 0,
                      "campaign_count": 0, "campaign_last_sent": "",
                      "merge_field_count": len(self.merge_fields), "avg_sub_rate": 0,
                      "avg_unsub_rate": 0, "target_sub_rate": 0, "open_rate": 0, "click_rate": 0,
                      "last_sub_date": iso(self.last_sub), "last_unsub_date": iso(self.last_unsub)},
            "_links": links.list_links(store.link_base, self.id),
        }
        if include_total:
            out["stats"]["total_contacts"] = len(self.members)
        return out


class Store:
    """The whole emulated account plus emulator bookkeeping."""

    def __init__(self, settings=None):
        self.lock = threading.RLock()
        self.clock = Clock()
        self.settings = make_settings(settings)
        self.rng = random.Random()
        # absolute base of every href (_links, results archives); the server sets its own URL
        self.base_url = "http://127.0.0.1"
        self.reset_data()

    @property
    def link_base(self):
        """Base URL of ``_links`` hrefs, or None when the ``resource_links`` setting is off."""
        return self.base_url if self.settings["resource_links"] else None

    def reset_data(self):
        self.lists = OrderedDict()
        self.batches = OrderedDict()
        self.batch_webhooks = OrderedDict()
        self.listing_cache = {}
        self.next_tag_id = 4788452
        self.next_web_id = 400751728

    def new_web_id(self):
        self.next_web_id += 1
        return self.next_web_id

    def get_list(self, list_id):
        from .util import not_found
        lst = self.lists.get(list_id)
        if lst is None:
            raise not_found()
        return lst

    def create_list(self, name, list_id=None, merge_fields=None, props=None):
        """Create a list with the default merge fields (or the given specs)."""
        lid = list_id or hex_id(10)
        lst = MailList(self, lid, name, props)
        if merge_fields is None:
            merge_fields = [dict(tag=t, **MERGE_FIELD_PRESETS[t])
                            for t in self.settings["default_merge_fields"]
                            if t in MERGE_FIELD_PRESETS]
        for spec in merge_fields:
            self.add_merge_field(lst, spec)
        self.lists[lid] = lst
        return lst

    def add_merge_field(self, lst, spec):
        """Add a merge field from an API body or a seed spec; a preset tag alone
        (``"BIRTHDAY"``) gives that preset.  Type and options are validated."""
        if isinstance(spec, str):
            spec = {"tag": spec}
        tag = str(spec.get("tag") or "").upper()[:10]
        preset = MERGE_FIELD_PRESETS.get(tag, {})
        type_ = spec.get("type") or preset.get("type", "text")
        mergefields.check_type(type_)
        if tag and lst.merge_by_tag(tag):
            raise invalid(f'A Merge Field with the tag "{tag}" already exists for this list.')
        given = spec.get("options")
        options = mergefields.clean_options(type_, given if given is not None else preset.get("options"))
        mid = lst.next_merge_id
        lst.next_merge_id += 1
        tag = tag or f"MMERGE{mid}"
        mf = MergeField(mid, tag, spec.get("name") or preset.get("name") or tag, type_,
                        spec.get("required", False), spec.get("default_value", ""),
                        spec.get("public", True), spec.get("display_order"), options,
                        spec.get("help_text", ""))
        lst.merge_fields[mid] = mf
        for m in lst.members.values():
            m.merge.setdefault(tag, "")
        lst.touch()
        return mf

    def add_category(self, lst, title, type="checkboxes", display_order=None):
        cat = Category(hex_id(10), title, type,
                       display_order if display_order is not None else len(lst.categories),
                       self.rng.randint(1000, 99999))
        lst.categories[cat.id] = cat
        lst.touch()
        return cat

    def add_interest(self, lst, cat, name, display_order=None):
        it = Interest(hex_id(10), name,
                      display_order if display_order is not None else len(cat.interests) + 1, cat.id)
        cat.interests[it.id] = it
        lst.touch()
        return it

    def tag_id(self, lst, name):
        tid = lst.tag_ids.get(name)
        if tid is None:
            self.next_tag_id += 1
            tid = lst.tag_ids[name] = self.next_tag_id
        return tid
