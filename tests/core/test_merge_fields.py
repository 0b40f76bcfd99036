"""Merge-field values converted and checked by type (issue 15), and the
data part of the reconcile: mapped fields in each direction, tags both
ways, and an email address changed in Odoo.

Expected values come from API-BEHAVIOUR.md §4.2, §4.3 and §5.8 (what
Mailchimp stores and refuses), not from the implementation."""

from datetime import date, datetime, timedelta

import pytest

from mailchimp_sync import merge_fields as mf
from mailchimp_sync.reconcile import AudienceRules, FieldState, RowState, reconcile_row, row_state_from_cache

T0 = datetime(2026, 1, 1, 12, 0, 0)
EARLY, LATE = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
ADDRESS = {"addr1": "1 Main St", "addr2": "", "city": "Springfield", "state": "IL", "zip": "62701",
           "country": "US"}


# -- conversions -------------------------------------------------------------------

@pytest.mark.parametrize("mtype,options,value,expected", [
    ("text", {}, "  Anna  ", "Anna"),
    ("text", {}, 42, "42"),
    ("text", {}, 4.0, "4"),
    ("number", {}, "12", 12),
    ("number", {}, " 12.5 ", 12.5),
    ("number", {}, 3.0, 3),
    ("date", {}, date(2024, 2, 29), "2024-02-29"),
    ("date", {}, datetime(2024, 2, 29, 23, 0), "2024-02-29"),
    ("date", {}, "2024-2-9", "2024-02-09"),
    ("date", {"date_format": "MM/DD/YYYY"}, "02/09/2024", "2024-02-09"),
    ("date", {"date_format": "DD/MM/YYYY"}, "02/09/2024", "2024-09-02"),
    ("birthday", {}, date(1980, 3, 9), "03/09"),
    ("birthday", {}, "3/9", "03/09"),
    ("birthday", {}, "02/29", "02/29"),
    ("birthday", {}, "1980-03-09", "03/09"),
    ("address", {}, dict(ADDRESS, country=""), ADDRESS),
    ("address", {}, "1 Main St, Springfield, IL, 62701", ADDRESS),
    ("address", {}, "1 Main St, Springfield, IL, 62701, US", ADDRESS),
    ("address", {}, "1 Main St, Apt 2, Springfield, IL, 62701, US", dict(ADDRESS, addr2="Apt 2")),
    ("address", {}, "1 Main St  Apt 2  Springfield  IL  62701  US", dict(ADDRESS, addr2="Apt 2")),
    ("phone", {"phone_format": "US"}, "(555) 123-4567", "(555) 123-4567"),
    ("phone", {"phone_format": "none"}, "+32 9 123 45 67", "+32 9 123 45 67"),
    ("dropdown", {"choices": ["Red", "Green"]}, "green", "Green"),
    ("radio", {"choices": ["S", "M"]}, "M", "M"),
    ("url", {}, "example.org/page", "example.org/page"),
    ("zip", {}, "62701-1234", "62701-1234"),
    ("number", {}, None, ""),
    ("address", {}, False, ""),
    ("text", {}, "", ""),
])
def test_canonical_values(mtype, options, value, expected):
    assert mf.canonical(mtype, options, value) == expected


@pytest.mark.parametrize("mtype,options,value,code", [
    ("number", {}, "twelve", mf.NOT_A_NUMBER),
    ("number", {}, True, mf.NOT_A_NUMBER),
    ("number", {}, float("nan"), mf.NOT_A_NUMBER),
    ("date", {}, "tomorrow", mf.NOT_A_DATE),
    ("date", {}, "2024-02-30", mf.NOT_A_DATE),
    ("birthday", {}, "13/01", mf.NOT_A_BIRTHDAY),
    ("birthday", {}, "March 9", mf.NOT_A_BIRTHDAY),
    ("address", {}, "Springfield", mf.INCOMPLETE_ADDRESS),
    ("address", {}, {"addr1": "1 Main St", "city": "Springfield"}, mf.INCOMPLETE_ADDRESS),
    ("phone", {"phone_format": "US"}, "+32 9 123 45 67", mf.NOT_A_PHONE),
    ("dropdown", {"choices": ["Red", "Green"]}, "Blue", mf.NOT_A_CHOICE),
    ("url", {}, "not a url", mf.NOT_A_URL),
    ("zip", {}, "9000 Gent", mf.NOT_A_ZIP),
])
def test_values_mailchimp_refuses_are_refused_before_sending(mtype, options, value, code):
    with pytest.raises(mf.MergeValueError) as info:
        mf.canonical(mtype, options, value)
    assert info.value.code == code
    problem = info.value.problem("TAG")
    assert (problem.code, problem.tag) == (code, "TAG")
    if code == mf.NOT_A_CHOICE:
        assert problem.params == {"choices": "Red, Green"}


def test_mailchimp_values_are_taken_as_they_are():
    # A choice Mailchimp holds that is no longer offered, an incomplete
    # address: read, never refused.
    assert mf.canonical("dropdown", {"choices": ["Red"]}, "Blue", strict=False) == "Blue"
    assert mf.canonical("address", {}, {"addr1": "x"}, strict=False)["addr1"] == "x"
    assert mf.canonical("number", {}, "n/a", strict=False) == "n/a"


def test_values_into_odoo_fields():
    assert mf.to_odoo("number", "integer", 12) == 12
    assert mf.to_odoo("number", "float", 12) == 12.0
    with pytest.raises(mf.MergeValueError) as info:
        mf.to_odoo("number", "integer", 12.5)
    assert info.value.code == mf.NOT_A_WHOLE_NUMBER
    assert mf.to_odoo("date", "date", "2024-02-09") == date(2024, 2, 9)
    # A birthday keeps the year the Odoo date had, or gets a placeholder one
    assert mf.to_odoo("birthday", "date", "03/09", current=date(1980, 1, 1)) == date(1980, 3, 9)
    assert mf.to_odoo("birthday", "date", "02/29", current=date(1981, 1, 1)) == date(mf.PLACEHOLDER_YEAR, 2, 29)
    assert mf.to_odoo("birthday", "date", "03/09") == date(mf.PLACEHOLDER_YEAR, 3, 9)
    assert mf.to_odoo("address", "char", ADDRESS) == "1 Main St, Springfield, IL, 62701, US"
    assert mf.to_odoo("number", "char", 12) == "12"
    assert mf.to_odoo("text", "char", "") is False
    # The one-line address reads back as the same address
    assert mf.canonical("address", {}, mf.to_odoo("address", "char", dict(ADDRESS, addr2="Apt 2"))) == dict(
        ADDRESS, addr2="Apt 2")


def test_an_address_into_a_partners_postal_address():
    # The address itself, its parts trimmed and the country US when missing
    assert mf.to_odoo("address", mf.PARTNER_ADDRESS, dict(ADDRESS, city=" Springfield ", country="")) == ADDRESS
    assert mf.to_odoo("address", mf.PARTNER_ADDRESS, "") is False
    with pytest.raises(mf.MergeValueError) as info:
        mf.to_odoo("address", mf.PARTNER_ADDRESS, dict(ADDRESS, state=""))
    assert info.value.code == mf.INCOMPLETE_ADDRESS


def test_selection_options_matched_by_key_or_label():
    options = [("mr", "Mister"), ("ms", "Madam")]
    assert mf.match_option("MISTER", options) == "mr"
    assert mf.match_option("ms", options) == "ms"
    assert mf.match_option("Doctor", options) is None


# -- mapped fields in the reconcile ---------------------------------------------------

def row(fields=None, synced=None, **kw):
    return RowState(email="anna@example.org", mc_status="subscribed", mc_status_changed=T0,
                    odoo_subscribed=True, odoo_changed=T0, fields=fields or {},
                    synced_merge_fields=synced or {}, **kw)


def phone(odoo, mc, direction=mf.BOTH, odoo_changed=T0, mc_changed=T0, **kw):
    return {"PHONE": FieldState(type="phone", direction=direction, odoo=odoo, odoo_changed=odoo_changed,
                                mc=mc, mc_changed=mc_changed, **kw)}


def decide(state):
    return reconcile_row(state, AudienceRules())


@pytest.mark.parametrize("direction,synced,expect_mc,expect_odoo", [
    # Odoo changed since both agreed
    (mf.BOTH, "111", {"PHONE": "222"}, {}),
    (mf.TO_MAILCHIMP, "111", {"PHONE": "222"}, {}),
    (mf.TO_ODOO, "111", None, {"PHONE": "111"}),
])
def test_odoo_change_goes_the_mapped_way(direction, synced, expect_mc, expect_odoo):
    decision = decide(row(phone("222", "111", direction), {"PHONE": synced}))
    assert (decision.mc_body or {}).get("merge_fields") == expect_mc
    assert decision.odoo_values == expect_odoo


@pytest.mark.parametrize("direction,expect_mc,expect_odoo", [
    (mf.BOTH, None, {"PHONE": "333"}),
    (mf.TO_ODOO, None, {"PHONE": "333"}),
    # One way to Mailchimp: Mailchimp follows Odoo
    (mf.TO_MAILCHIMP, {"PHONE": "111"}, {}),
])
def test_mailchimp_change_goes_the_mapped_way(direction, expect_mc, expect_odoo):
    decision = decide(row(phone("111", "333", direction), {"PHONE": "111"}))
    assert (decision.mc_body or {}).get("merge_fields") == expect_mc
    assert decision.odoo_values == expect_odoo


def test_both_changed_the_later_change_wins_per_field():
    fields = {**phone("222", "333", odoo_changed=EARLY, mc_changed=LATE),
              "CITY": FieldState(odoo="Gent", odoo_changed=LATE, mc="Brugge", mc_changed=EARLY)}
    decision = decide(row(fields, {"PHONE": "111", "CITY": "Antwerpen"}))
    assert decision.odoo_values == {"PHONE": "333"}
    assert decision.mc_body == {"merge_fields": {"CITY": "Gent"}}
    assert decision.synced_merge_fields == {"PHONE": "333", "CITY": "Gent"}
    # a tie goes to Odoo, as for memberships
    decision = decide(row(phone("222", "333"), {"PHONE": "111"}))
    assert decision.mc_body == {"merge_fields": {"PHONE": "222"}}


def test_values_compared_in_mailchimps_form():
    fields = {
        "JOINED": FieldState(type="date", odoo=date(2024, 2, 9), mc="2024-02-09"),
        "LTV": FieldState(type="number", odoo=12.0, mc=12),
        "BDAY": FieldState(type="birthday", odoo=date(1980, 3, 9), mc="03/09"),
        "SHIPTO": FieldState(type="address", odoo="1 Main St, Springfield, IL, 62701", mc=ADDRESS),
        "COLOUR": FieldState(type="dropdown", options={"choices": ["Red"]}, odoo="red", mc="Red"),
    }
    decision = decide(row(fields))
    assert decision.mc_body is None and decision.odoo_values == {} and decision.status == "ok"
    assert decision.synced_merge_fields["SHIPTO"] == ADDRESS


def test_a_value_mailchimp_would_refuse_is_reported_and_the_rest_goes():
    fields = {
        "COLOUR": FieldState(type="dropdown", options={"choices": ["Red", "Green"]}, odoo="Blue", mc="Red"),
        **phone("222", "111"),
    }
    decision = decide(row(fields, {"COLOUR": "Red", "PHONE": "111"}))
    assert decision.mc_body == {"merge_fields": {"PHONE": "222"}}
    assert [(p.code, p.tag, p.value) for p in decision.data_problems] == [(mf.NOT_A_CHOICE, "COLOUR", "Blue")]
    assert decision.synced_merge_fields["COLOUR"] == "Red"  # still what both sides agree on
    # One way to Odoo, the invalid Odoo value is simply replaced
    fields["COLOUR"].direction = mf.TO_ODOO
    decision = decide(row(fields, {"COLOUR": "Red"}))
    assert decision.odoo_values == {"COLOUR": "Red"} and not decision.data_problems


def test_empty_values_never_overwrite_on_a_first_sync():
    decision = decide(row(phone("", "111")))
    assert decision.odoo_values == {"PHONE": "111"} and decision.mc_body is None
    decision = decide(row(phone("222", "")))
    assert decision.mc_body == {"merge_fields": {"PHONE": "222"}}
    # Cleared at Mailchimp after both agreed: cleared in Odoo too
    decision = decide(row(phone("111", ""), {"PHONE": "111"}))
    assert decision.odoo_values == {"PHONE": ""}


def test_unknown_sides_are_left_alone():
    # The row has no partner to hold a partner field: nothing either way
    decision = decide(row(phone(None, "111", odoo_known=False)))
    assert decision.mc_body is None and decision.odoo_values == {}
    # Mailchimp's value not read yet: Odoo's value goes, an empty one does not
    decision = decide(row({**phone("222", None, mc_known=False),
                           "CITY": FieldState(odoo="", mc=None, mc_known=False)}))
    assert decision.mc_body == {"merge_fields": {"PHONE": "222"}}


def test_a_created_member_gets_odoos_values():
    state = row(phone("222", None, mc_known=False))
    state.mc_status = None
    decision = decide(state)
    assert decision.mc_body["merge_fields"] == {"PHONE": "222"}
    assert decision.mc_body["email_address"] == "anna@example.org"


def test_data_left_alone_when_the_member_ends_unsubscribed():
    state = row(phone("222", "111"), {"PHONE": "111"})
    state.odoo_subscribed = False
    decision = decide(state)
    assert decision.mc_body == {"status": "unsubscribed"} and decision.synced_merge_fields is None


# -- tags both ways -------------------------------------------------------------------

def tags(odoo, mc, agreed, prefix="", partial=False):
    return row(odoo_tags=frozenset(odoo), mc_tags=None if mc is None else frozenset(mc),
               synced_tags=None if agreed is None else frozenset(agreed), tag_prefix=prefix,
               mc_tags_partial=partial)


def test_tags_added_and_removed_on_either_side_follow():
    decision = decide(tags({"A", "B", "Odoo new"}, {"A", "C", "MC new"}, {"A", "B", "C"}))
    # B removed at Mailchimp, C removed in Odoo
    assert decision.tags == [{"name": "Odoo new", "status": "active"}, {"name": "C", "status": "inactive"}]
    assert decision.odoo_tags_add == {"MC new"} and decision.odoo_tags_remove == {"B"}
    assert decision.synced_tags == {"A", "Odoo new", "MC new"}
    assert decision.status == "live"


def test_tags_first_sync_removes_nothing():
    decision = decide(tags({"A", "B"}, {"B", "C"}, None))
    assert decision.tags == [{"name": "A", "status": "active"}]
    assert decision.odoo_tags_add == {"C"} and not decision.odoo_tags_remove
    assert decision.synced_tags == {"A", "B", "C"}


def test_tags_agreed_is_a_fixed_point():
    decision = decide(tags({"A", "B"}, {"A", "B"}, {"A", "B"}))
    assert decision.tags == [] and not decision.odoo_tags_add and not decision.odoo_tags_remove
    assert decision.synced_tags == {"A", "B"} and decision.status == "ok"
    # ... and so is what the decision leads to, once applied on both sides
    first = decide(tags({"A", "B"}, {"C"}, {"A", "C", "D"}))
    odoo = ({"A", "B"} | first.odoo_tags_add) - first.odoo_tags_remove
    mc = ({"C"} | {t["name"] for t in first.tags if t["status"] == "active"}) - {
        t["name"] for t in first.tags if t["status"] == "inactive"}
    assert odoo == mc == first.synced_tags
    second = decide(tags(odoo, mc, first.synced_tags))
    assert second.tags == [] and not second.odoo_tags_add and not second.odoo_tags_remove


def test_tag_prefix_scopes_both_sides():
    decision = decide(tags({"MC: VIP", "Internal"}, {"MC: Donor", "Imported"}, set(), prefix="MC: "))
    assert decision.tags == [{"name": "MC: VIP", "status": "active"}]
    assert decision.odoo_tags_add == {"MC: Donor"}
    assert decision.synced_tags == {"MC: VIP", "MC: Donor"}


def test_partial_mailchimp_tags_never_remove_in_odoo():
    decision = decide(tags({"A", "B"}, {"A"}, {"A", "B"}, partial=True))
    assert not decision.odoo_tags_remove and decision.tags == []


def test_row_without_contact_has_no_tags_to_sync():
    state = tags(set(), {"A"}, None)
    state.odoo_tags = None
    decision = decide(state)
    assert decision.tags == [] and not decision.odoo_tags_add and decision.synced_tags is None


# -- email changed in Odoo -----------------------------------------------------------

def test_email_changed_in_odoo_renames_the_member():
    decision = decide(row(odoo_email="anna.new@example.org", odoo_tags=frozenset({"A"}), synced_tags=frozenset()))
    assert decision.mc_body == {"email_address": "anna.new@example.org"}
    # tags wait until the rename is settled: they follow the member's hash
    assert decision.tags == [] and decision.synced_tags is None
    assert decide(row(odoo_email="ANNA@example.org")).mc_body is None


def test_email_taken_by_another_member_fails_with_the_reason():
    decision = decide(row(odoo_email="bob@example.org", odoo_email_taken=True))
    assert decision.mc_body is None
    [problem] = decision.data_problems
    assert (problem.code, problem.params) == (mf.EMAIL_TAKEN, {"email": "bob@example.org",
                                                                "old": "anna@example.org"})


def test_member_to_create_takes_the_contacts_current_address():
    state = row_state_from_cache(
        {"id": 1, "email": "old@example.org", "mc_status": None, "contact_id": 7,
         "contact_email": "new@example.org", "odoo_subscribed": True, "odoo_changed": T0, "tags": []},
        [], {})
    decision = decide(state)
    assert decision.mc_body["email_address"] == "new@example.org"


def test_row_state_reads_mapped_fields_and_mailchimp_times():
    state = row_state_from_cache(
        {"id": 1, "email": "anna@example.org", "mc_status": "subscribed", "contact_id": 7,
         "contact_email": "anna@example.org", "odoo_subscribed": True, "odoo_changed": T0,
         "mc_first_name": "Anna", "mc_name_changed": EARLY,
         "mc_merge_fields": {"PHONE": "111"}, "mc_merge_fields_changed": {"PHONE": LATE.isoformat()},
         "odoo_values": {"PHONE": ("222", T0), "FNAME": ("Anna", T0)},
         "mc_tags": ["A"], "tags": ["B"], "sent_data": {"tags": ["A"], "merge_fields": {"PHONE": "000"}}},
        [], {}, mappings=[("FNAME", "text", {}, mf.BOTH), ("PHONE", "phone", {}, mf.BOTH),
                          ("CITY", "text", {}, mf.BOTH)], tag_prefix="")
    assert state.fields["PHONE"].odoo == "222" and state.fields["PHONE"].mc == "111"
    assert state.fields["FNAME"].mc == "Anna" and state.fields["FNAME"].mc_changed == EARLY
    # Both sides changed PHONE: Mailchimp's stored time (LATE) is after Odoo's
    assert decide(state).odoo_values == {"PHONE": "111"}
    state.fields["PHONE"].odoo_changed = LATE + timedelta(seconds=1)
    assert decide(state).mc_body["merge_fields"] == {"PHONE": "222"}
    assert not state.fields["CITY"].odoo_known and not state.fields["CITY"].mc_known
    assert state.mc_tags == {"A"} and state.odoo_tags == {"B"} and state.synced_tags == {"A"}
