"""'Only add, never remove' (issue 11 item 12): the trust override of a
newly mapped list.  Whoever is on the list on either side ends up on both,
whoever changed last; nobody loses the subscription or the interest."""

from datetime import datetime, timedelta

import pytest

from mailchimp_sync.reconcile import ADD_ONLY, AudienceRules, InterestState, RowState, reconcile_row

T0 = datetime(2026, 1, 1, 12, 0, 0)
EARLY, LATE = T0 - timedelta(hours=1), T0 + timedelta(hours=1)


@pytest.mark.parametrize("odoo_later", [True, False])
@pytest.mark.parametrize(
    ("odoo_sub", "mc_status", "odoo_action", "mc_sent"),
    [
        (False, "subscribed", True, None),  # Mailchimp has it: Odoo opts in
        (True, "unsubscribed", None, "subscribed"),  # Odoo has it: resubscribed at Mailchimp
        (True, "subscribed", None, None),
        (False, "unsubscribed", None, None),
    ],
)
def test_subscription_union(odoo_later, odoo_sub, mc_status, odoo_action, mc_sent):
    row = RowState(
        email="a@example.org", mc_status=mc_status, mc_status_changed=EARLY if odoo_later else LATE,
        odoo_subscribed=odoo_sub, odoo_changed=LATE if odoo_later else EARLY,
    )
    decision = reconcile_row(row, AudienceRules(trust_override=ADD_ONLY))
    assert decision.odoo_subscribe is odoo_action
    assert (decision.mc_body or {}).get("status") == mc_sent


@pytest.mark.parametrize("odoo_later", [True, False])
@pytest.mark.parametrize(("odoo", "mc"), [(False, True), (True, False)])
def test_interest_union(odoo_later, odoo, mc):
    times = (LATE, EARLY) if odoo_later else (EARLY, LATE)
    row = RowState(
        email="a@example.org", mc_status="subscribed", mc_status_changed=EARLY,
        odoo_subscribed=True, odoo_changed=EARLY,
        interests={"i1": InterestState(mc=mc, mc_changed=times[1], odoo=odoo, odoo_changed=times[0],
                                       override=ADD_ONLY)},
    )
    decision = reconcile_row(row, AudienceRules())
    if mc:
        # Mailchimp has the interest: Odoo gains it, Mailchimp keeps it.
        assert decision.odoo_interests == {"i1": True}
        assert "interests" not in (decision.mc_body or {})
    else:
        assert decision.odoo_interests == {}
        assert decision.mc_body["interests"] == {"i1": True}
