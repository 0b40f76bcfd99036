"""An Odoo-only contact whose address bounces or is blacklisted is not
created at Mailchimp (issue 11, item 8): the row fails with the reason."""

from mailchimp_sync import reasons
from mailchimp_sync.reconcile import AudienceRules, RowState, reconcile_row


def odoo_only(**kw):
    return RowState(email="x@example.org", mc_status=None, odoo_subscribed=True, has_contact=True, **kw)


def test_bouncing_address_is_not_created():
    decision = reconcile_row(odoo_only(bouncing=True), AudienceRules())
    assert decision.status == "fail"
    assert decision.mc_body is None
    assert decision.reason.code == reasons.BOUNCING_IN_ODOO


def test_blacklisted_address_is_not_created():
    decision = reconcile_row(odoo_only(blacklisted=True), AudienceRules())
    assert decision.status == "fail"
    assert decision.reason.code == reasons.BLACKLISTED_IN_ODOO


def test_healthy_address_is_created():
    decision = reconcile_row(odoo_only(), AudienceRules())
    assert decision.mc_body["status"] == "subscribed"
    assert decision.mc_body["email_address"] == "x@example.org"
