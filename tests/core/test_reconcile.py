"""The reconcile rule set (DESIGN.md §4) as a table.

The expected outcome of every cell is given by the small declarative table
below, written from DESIGN.md and the reference's tables, not derived from
the implementation.
"""

import itertools
from datetime import datetime, timedelta

import pytest

from mailchimp_sync import reasons
from mailchimp_sync.reasons import Reason
from mailchimp_sync.reconcile import (
    AudienceRules,
    FieldState,
    InterestState,
    RowState,
    join_name,
    merge_superseded,
    reconcile_row,
    split_name,
    who_changed_last,
)

T0 = datetime(2026, 1, 1, 12, 0, 0)
EARLY, LATE = T0 - timedelta(hours=1), T0 + timedelta(hours=1)

MC_STATUSES = [None, "subscribed", "pending", "unsubscribed", "cleaned", "archived", "transactional"]
ODOO_STATES = ["subscribed", "unsubscribed", "no_history"]
TIMING = ["odoo_later", "mc_later", "tie"]
OVERRIDES = [None, "mailchimp", "odoo"]

# What the person's state means on each side
MC_SUB = {"subscribed", "pending"}


def expected(odoo, mc, timing, override, double_optin=False):
    """(odoo action, mailchimp status sent, row status) for one cell.

    odoo action: 'in' / 'out' / None.  mailchimp status sent: a status or None.
    """
    odoo_sub = odoo == "subscribed"
    # Who decides (only between two known states does timing/override matter)
    if odoo == "no_history":
        side = "mc" if mc is not None else "odoo"
    elif mc is None:
        side = "odoo"
    elif override:
        side = "mc" if override == "mailchimp" else "odoo"
    else:
        side = "mc" if timing == "mc_later" else "odoo"  # ties go to Odoo
    mc_sub = mc in MC_SUB
    if side == "mc":
        if odoo_sub and not mc_sub:
            return ("out", None, "ok")
        if not odoo_sub and mc_sub:
            return ("in", None, "ok")
        return (None, None, "ok")
    # Odoo decides
    if odoo_sub:
        if mc is None:
            return (None, "pending" if double_optin else "subscribed", "live")
        if mc in MC_SUB:
            return (None, None, "ok")
        if mc == "cleaned":
            return (None, None, "fail")
        return (None, "pending" if double_optin else "subscribed", "live")
    if mc_sub:
        return (None, "unsubscribed", "live")
    return (None, None, "ok")


def make_row(odoo, mc, timing, **kw):
    mc_changed = {"odoo_later": EARLY, "mc_later": LATE, "tie": T0}[timing]
    return RowState(
        email="anna@example.org",
        mc_status=mc,
        mc_status_changed=mc_changed if mc else None,
        odoo_subscribed=odoo == "subscribed",
        odoo_changed=None if odoo == "no_history" else T0,
        **kw,
    )


CELLS = list(itertools.product(ODOO_STATES, MC_STATUSES, TIMING, OVERRIDES, [False, True]))


@pytest.mark.parametrize("odoo,mc,timing,override,double_optin", CELLS)
def test_subscription_matrix(odoo, mc, timing, override, double_optin):
    row = make_row(odoo, mc, timing)
    decision = reconcile_row(row, AudienceRules(trust_override=override, double_optin=double_optin))
    odoo_action, mc_status, status = expected(odoo, mc, timing, override, double_optin)
    got_odoo = {True: "in", False: "out", None: None}[decision.odoo_subscribe]
    got_status = (decision.mc_body or {}).get("status")
    assert (got_odoo, got_status, decision.status) == (odoo_action, mc_status, status)
    if status == "fail":
        assert decision.reason == Reason(reasons.CLEANED_AT_MAILCHIMP)
    else:
        assert decision.reason is None
    if mc is None and mc_status:
        assert decision.mc_body["email_address"] == "anna@example.org"


def test_matrix_is_whole():
    assert len(CELLS) == 3 * 7 * 3 * 3 * 2


@pytest.mark.parametrize("flag", ["blacklisted", "bouncing"])
@pytest.mark.parametrize("mc", ["unsubscribed", "archived", "transactional"])
def test_no_resubscribe_of_blacklisted_or_bouncing(flag, mc):
    row = make_row("subscribed", mc, "odoo_later", **{flag: True})
    decision = reconcile_row(row, AudienceRules())
    assert decision.status == "fail"
    assert decision.reason.code == f"{flag}_in_odoo"
    assert decision.reason.params == {"mc_status": mc}
    assert decision.mc_body is None


def test_pending_kept_when_earlier_pending_was_cancelled():
    row = make_row("subscribed", "unsubscribed", "odoo_later", pending_cancelled=True)
    assert reconcile_row(row, AudienceRules()).mc_body["status"] == "pending"


def test_same_contact_other_email_fails_instead_of_flip_flopping():
    row = make_row("subscribed", "unsubscribed", "mc_later", other_row_subscribed=True)
    decision = reconcile_row(row, AudienceRules())
    assert decision.status == "fail"
    assert decision.odoo_subscribe is None
    assert decision.reason == Reason(
        reasons.OTHER_EMAIL_SUBSCRIBED, {"email": "anna@example.org", "mc_status": "unsubscribed"}
    )


def test_no_email_fails():
    row = make_row("subscribed", None, "odoo_later")
    row.email = None
    decision = reconcile_row(row, AudienceRules())
    assert (decision.status, decision.reason) == ("fail", Reason(reasons.NO_EMAIL))


def test_mailchimp_subscribed_without_contact_fails_clearly():
    row = make_row("no_history", "subscribed", "mc_later", has_contact=False)
    decision = reconcile_row(row, AudienceRules())
    assert (decision.status, decision.reason) == ("fail", Reason(reasons.NO_CONTACT))


def test_deleted_contact_unsubscribes_at_mailchimp():
    # The contact was deleted after Mailchimp's last status change: Odoo wins,
    # Odoo says 'not subscribed'.
    row = RowState(
        email="anna@example.org", mc_status="subscribed", mc_status_changed=EARLY,
        odoo_subscribed=False, odoo_changed=T0, has_contact=False,
    )
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body == {"status": "unsubscribed"}
    assert decision.odoo_subscribe is None


def test_override_never_unsubscribes_one_sided_members():
    # Mailchimp-only member, override Odoo: copied to Odoo anyway
    row = make_row("no_history", "subscribed", "odoo_later")
    assert reconcile_row(row, AudienceRules(trust_override="odoo")).odoo_subscribe is True
    # Odoo-only contact, override Mailchimp: created at Mailchimp anyway
    row = make_row("subscribed", None, "odoo_later")
    assert reconcile_row(row, AudienceRules(trust_override="mailchimp")).mc_body["status"] == "subscribed"


# -- interests ----------------------------------------------------------------

def interest_row(mc_val, odoo_val, mc_changed, odoo_changed, override=None, **kw):
    row = make_row("subscribed", "subscribed", "tie", **kw)
    row.interests = {"i1": InterestState(mc=mc_val, mc_changed=mc_changed, odoo=odoo_val,
                                         odoo_changed=odoo_changed, override=override)}
    return row


@pytest.mark.parametrize(
    "mc_val,odoo_val,mc_changed,odoo_changed,override,odoo_change,mc_sent",
    [
        (True, True, LATE, T0, None, {}, None),  # equal: nothing
        (True, False, LATE, T0, None, {"i1": True}, None),  # Mailchimp later
        (True, False, EARLY, T0, None, {}, {"i1": False}),  # Odoo later
        (True, False, T0, T0, None, {}, {"i1": False}),  # tie → Odoo
        (True, False, EARLY, None, None, {"i1": True}, None),  # no Odoo history → Mailchimp
        (True, False, EARLY, T0, "mailchimp", {"i1": True}, None),  # override Mailchimp
        (False, True, LATE, T0, "odoo", {}, {"i1": True}),  # override Odoo
        (None, True, None, T0, None, {}, {"i1": True}),  # Mailchimp value unknown: send Odoo's
    ],
)
def test_interest_rules(mc_val, odoo_val, mc_changed, odoo_changed, override, odoo_change, mc_sent):
    decision = reconcile_row(interest_row(mc_val, odoo_val, mc_changed, odoo_changed, override),
                             AudienceRules())
    assert decision.odoo_interests == odoo_change
    assert (decision.mc_body or {}).get("interests") == mc_sent


def test_interest_uses_its_own_timestamp_not_last_changed():
    # A name edit at Mailchimp moved last_changed, not the interest's time.
    row = interest_row(True, False, EARLY, T0)
    row.mc_status_changed = LATE
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body["interests"] == {"i1": False}


def test_created_member_carries_all_interests():
    row = make_row("subscribed", None, "odoo_later")
    row.interests = {"a": InterestState(odoo=True, odoo_changed=T0), "b": InterestState(odoo=False)}
    body = reconcile_row(row, AudienceRules()).mc_body
    assert body["interests"] == {"a": True, "b": False}


def test_interests_ignored_when_final_state_unsubscribed():
    row = interest_row(True, False, LATE, T0)
    row.odoo_subscribed, row.mc_status = False, "unsubscribed"
    decision = reconcile_row(row, AudienceRules())
    assert decision.odoo_interests == {} and decision.mc_body is None


# -- names, tags, merge fields ---------------------------------------------------

def name_fields(odoo, mc, odoo_changed=T0, mc_changed=T0):
    """FNAME and LNAME as the two default mappings (both ways)."""
    return {
        tag: FieldState(odoo=odoo[i], odoo_changed=odoo_changed, mc=mc[i], mc_changed=mc_changed)
        for i, tag in enumerate(("FNAME", "LNAME"))
    }


def agreed(names):
    return {} if names is None else {"FNAME": names[0], "LNAME": names[1]}


def test_names_follow_the_side_that_changed():
    row = make_row("subscribed", "subscribed", "tie", fields=name_fields(("Anna", "Smith"), ("Anna", "Jones")),
                   synced_merge_fields=agreed(("Anna", "Jones")))
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body == {"merge_fields": {"LNAME": "Smith"}}
    row = make_row("subscribed", "subscribed", "tie", fields=name_fields(("Anna", "Smith"), ("Anna", "Jones")),
                   synced_merge_fields=agreed(("Anna", "Smith")))
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body is None and decision.odoo_values == {"LNAME": "Jones"}
    assert decision.status == "ok"
    assert decision.synced_merge_fields == {"FNAME": "Anna", "LNAME": "Jones"}


def test_names_both_changed_latest_wins_and_empty_wins_only_as_a_clear():
    row = make_row("subscribed", "subscribed", "tie",
                   fields=name_fields(("Anna", "Smith"), ("Ann", "Smith"), odoo_changed=EARLY, mc_changed=LATE))
    assert reconcile_row(row, AudienceRules()).odoo_values == {"FNAME": "Ann"}
    row.fields["FNAME"].odoo_changed, row.fields["FNAME"].mc_changed = LATE, EARLY
    assert reconcile_row(row, AudienceRules()).mc_body["merge_fields"] == {"FNAME": "Anna"}
    # Never agreed on: an empty name never overwrites one
    row = make_row("subscribed", "subscribed", "tie", fields=name_fields(("", ""), ("Ann", "Smith"), LATE, EARLY))
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body is None and decision.odoo_values == {"FNAME": "Ann", "LNAME": "Smith"}
    # Agreed on, then cleared in Odoo: the clear is a change like any other
    row = make_row("subscribed", "subscribed", "tie", fields=name_fields(("Ann", ""), ("Ann", "Smith")),
                   synced_merge_fields=agreed(("Ann", "Smith")))
    assert reconcile_row(row, AudienceRules()).mc_body == {"merge_fields": {"LNAME": ""}}


def test_unchanged_data_is_not_resent():
    row = make_row("subscribed", "subscribed", "tie", fields=name_fields(("Anna", "Smith"), ("Anna", "Smith")),
                   synced_merge_fields={**agreed(("Anna", "Smith")), "CITY": "Gent"},
                   odoo_tags=frozenset({"VIP"}), mc_tags=frozenset({"VIP"}), synced_tags=frozenset({"VIP"}),
                   merge_fields={"CITY": "Gent"})
    decision = reconcile_row(row, AudienceRules())
    assert decision.mc_body is None and decision.tags == [] and decision.status == "ok"
    assert not decision.odoo_values and not decision.odoo_tags_add and not decision.odoo_tags_remove


def test_tags_mailchimp_never_read_holds_what_was_agreed():
    row = make_row("subscribed", "subscribed", "tie", odoo_tags=frozenset({"VIP", "Donor"}),
                   synced_tags=frozenset({"VIP", "Old"}))
    decision = reconcile_row(row, AudienceRules())
    assert decision.tags == [{"name": "Donor", "status": "active"}, {"name": "Old", "status": "inactive"}]
    assert decision.status == "live"
    assert decision.synced_tags == {"VIP", "Donor"}


def test_extra_merge_fields_only_changes():
    row = make_row("subscribed", "subscribed", "tie", merge_fields={"CITY": "Gent", "ZIP": "9000"},
                   synced_merge_fields={"CITY": "Gent"})
    assert reconcile_row(row, AudienceRules()).mc_body == {"merge_fields": {"ZIP": "9000"}}


# -- helpers ---------------------------------------------------------------------

def test_who_changed_last():
    assert who_changed_last(None, None, False) == "odoo"
    assert who_changed_last(None, T0, True) == "mailchimp"
    assert who_changed_last(T0, None, False, "mailchimp") == "odoo"
    assert who_changed_last(T0, T0, True) == "odoo"
    assert who_changed_last(T0, LATE, True) == "mailchimp"
    assert who_changed_last(LATE, T0, True, "mailchimp") == "mailchimp"


def test_name_split_and_join():
    assert split_name("Anna Maria Smith") == ("Anna", "Maria Smith")
    assert split_name("  Cher ") == ("Cher", "")
    assert split_name(None) == ("", "")
    assert join_name(" Anna ", "") == "Anna"
    assert join_name(*split_name("Anna Maria Smith")) == "Anna Maria Smith"


def test_merge_superseded_keeps_pending_and_data():
    merged = merge_superseded(
        {"status": "subscribed", "merge_fields": {"FNAME": "B"}},
        [{"status": "pending", "merge_fields": {"FNAME": "A", "LNAME": "X"}, "interests": {"i": True}}],
    )
    assert merged == {"status": "pending", "merge_fields": {"FNAME": "B", "LNAME": "X"},
                      "interests": {"i": True}}
    assert merge_superseded({"status": "unsubscribed"}, [{"status": "pending"}])["status"] == "unsubscribed"
