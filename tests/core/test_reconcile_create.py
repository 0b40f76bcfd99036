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


def test_an_empty_name_at_mailchimp_never_erases_odoo_name():
    """Issue 11, item 6: an empty FNAME (or LNAME) at Mailchimp, even after
    both sides agreed on a name, leaves the Odoo name alone."""
    from mailchimp_sync.reconcile import FieldState

    def name_row(odoo_first, mc_first, agreed_first):
        row = RowState(email="x@example.org", mc_status="subscribed", odoo_subscribed=True, has_contact=True)
        row.fields = {"FNAME": FieldState(odoo=odoo_first, mc=mc_first)}
        row.synced_merge_fields = {"FNAME": agreed_first}
        return row

    decision = reconcile_row(name_row("Anna", "", "Anna"), AudienceRules())
    assert "FNAME" not in decision.odoo_values
    # ...and Odoo's name is what Mailchimp gets back.
    assert (decision.mc_body or {}).get("merge_fields", {}).get("FNAME") == "Anna"
