"""Batch results become reason codes: the operations the sync builds are run
by the emulator, its results archive is read as the sync reads it, and each
refusal maps to the code whose sentence says what to do next."""

import io
import json

import pytest
import requests

from mailchimp_sync import reasons
from mailchimp_sync.batches import OperationResult, build_operation, iter_results_archive
from mailchimp_sync.client import subscriber_hash
from mailchimp_sync.members import FETCH_FIELDS
from mailchimp_sync.reasons import Reason


@pytest.fixture
def results(sdk_client, emulator):
    """Run the sync's own operations in one batch; {update id: result}."""
    emulator.control.settings(batch_auto_run=False)
    lid = emulator.control.seed([{"name": "Newsletter", "add_merge_fields": [
        {"tag": "SHOE", "name": "Shoe size", "type": "number"}], "members": [
        {"email_address": "gone@example.org", "status": "cleaned"},
        {"email_address": "locked@example.org", "status": "unsubscribed", "unsubscribe_origin": "user"},
        {"email_address": "here@example.org", "status": "subscribed"},
        {"email_address": "forget@example.org", "status": "subscribed"},
    ]}])["list_ids"][0]
    sdk_client.lists.delete_list_member_permanent(lid, "forget@example.org")
    ops = [
        # update id, kind, payload, email, known at Mailchimp
        (1, "member", {"status": "subscribed"}, "gone@example.org", True),
        (2, "member", {"status": "subscribed"}, "locked@example.org", True),
        (3, "member", {"status": "subscribed"}, "here@example.org", False),
        (4, "member", {"status": "subscribed"}, "forget@example.org", False),
        (5, "member", {"status": "subscribed"}, "test@example.com", False),
        (6, "member", {"merge_fields": {"SHOE": "large"}}, "here@example.org", True),
        (7, "tags", {"tags": [{"name": "odoo", "status": "active"}]}, "nobody@example.org", True),
        (8, "member", {"merge_fields": {"FNAME": "Here"}}, "here@example.org", True),
    ]
    # As the sync sends them: answers trimmed to the fields it reads.
    batch = sdk_client.batches.start({"operations": [
        build_operation(uid, lid, kind, payload, email, known, fields=FETCH_FIELDS)
        for uid, kind, payload, email, known in ops
    ]})
    emulator.control.run_batches()
    url = sdk_client.batches.status(batch["id"])["response_body_url"]
    archive = io.BytesIO(requests.get(url, timeout=10).content)
    return {r.update_id: r for r in iter_results_archive(archive)}


def test_each_refusal_has_its_code(results):
    assert results[8].ok
    # A success answers with the fields asked for; a refusal keeps its
    # title, detail and errors whole.
    assert set(results[8].body) <= {f.split(".")[0] for f in FETCH_FIELDS}, results[8].body
    assert results[8].body["merge_fields"]["FNAME"] == "Here"
    codes = {uid: r.error_reason() for uid, r in results.items() if not r.ok}
    assert codes[1] == Reason(reasons.COMPLIANCE_STATE), results[1]
    assert codes[2] == Reason(reasons.COMPLIANCE_STATE), results[2]
    assert codes[3] == Reason(reasons.MEMBER_EXISTS), results[3]
    assert codes[4] == Reason(reasons.FORGOTTEN), results[4]
    assert codes[5] == Reason(reasons.INVALID_EMAIL), results[5]
    assert codes[6].code == reasons.INVALID_MERGE_FIELDS, results[6]
    assert codes[6].params["fields"].startswith("SHOE: "), codes[6]
    assert codes[7] == Reason(reasons.MEMBER_NOT_FOUND), results[7]
    assert all(reason.code in reasons.CODES for reason in codes.values())


@pytest.mark.parametrize("status,body,expected", [
    (400, {"title": "Invalid Resource",
           "detail": 'This member\'s status is "cleaned." You can only update email addresses for members '
                     'with a status of "subscribed."'}, Reason(reasons.CLEANED_AT_MAILCHIMP)),
    (400, {"title": "Invalid Resource", "detail": "Please provide a valid email address."},
     Reason(reasons.INVALID_EMAIL)),
    (429, {"title": "Too Many Requests", "detail": "Slow down."}, Reason(reasons.TEMPORARY, {"status": 429})),
    (503, None, Reason(reasons.TEMPORARY, {"status": 503})),
    (405, {"title": "Method Not Allowed", "detail": "Not here."},
     Reason(reasons.REFUSED, {"status": 405, "title": "Method Not Allowed", "detail": "Not here."})),
    (400, {"title": "Invalid Resource", "detail": "Something else."},
     Reason(reasons.REFUSED, {"status": 400, "title": "Invalid Resource", "detail": "Something else."})),
])
def test_other_answers(status, body, expected):
    result = OperationResult(1, status, body, (body or {}).get("title"), (body or {}).get("detail"))
    assert result.error_reason() == expected


def test_reason_as_text_is_one_line():
    assert Reason(reasons.TEMPORARY, {"status": 503}).as_text() == "temporary (status=503)"
    assert Reason(reasons.NO_RESULT).as_text() == "no_result"
    json.dumps(Reason(reasons.REFUSED, {"status": 400}).params)  # plain data only


def test_member_body_given_as_json_text_is_sent_as_is():
    """The sender reads a member body from the database as JSON text with
    the address in it: the operation is the one the dict would make."""
    payload = {"status": "subscribed", "merge_fields": {"FNAME": "Zoë"}}
    as_dict = build_operation(9, "L1", "member", payload, "zoe@example.org", False, fields=["id"])
    text = json.dumps({"email_address": "zoe@example.org", **payload}, ensure_ascii=False)
    as_text = build_operation(9, "L1", "member", text, "zoe@example.org", False, fields=["id"])
    assert as_text["body"] == text
    assert json.loads(as_text["body"]) == json.loads(as_dict["body"])
    assert {k: v for k, v in as_text.items() if k != "body"} == {k: v for k, v in as_dict.items() if k != "body"}
    assert (as_dict["method"], as_dict["path"]) == ("POST", "/lists/L1/members")


def test_payload_address_wins_over_the_members():
    """A rename sends the new address to the old member's hash."""
    op = build_operation(3, "L1", "member", {"email_address": "new@example.org"}, "old@example.org", True)
    assert json.loads(op["body"])["email_address"] == "new@example.org"
    assert op["method"] == "PUT" and op["path"].endswith("/" + subscriber_hash("old@example.org"))
