"""Text from Mailchimp as PostgreSQL stores it: no NUL, no half of a
surrogate pair, wherever Mailchimp's answers come in (the client's answers,
member pages as one JSON document, batch results)."""

import json

from mailchimp_sync.batches import parse_result
from mailchimp_sync.client import MailchimpClient, error_from_response
from mailchimp_sync.text import needs_cleaning, postgres_json, postgres_text, postgres_value

ODD = "An\x00na Geb\ud800hard"
CLEAN = "Anna Geb\ufffdhard"


def test_text_loses_its_nuls_and_half_pairs_only():
    assert postgres_text(ODD) == CLEAN
    assert postgres_text("Zoë 😀") == "Zoë 😀", "whole characters stay"
    assert postgres_text(None) is None
    assert postgres_value({"a\x00": [ODD, 1, {"b": ODD}], "n": None}) == {"a": [CLEAN, 1, {"b": CLEAN}], "n": None}


def test_json_for_postgres_is_searched_and_walked_only_when_suspect():
    assert needs_cleaning(json.dumps(ODD))
    assert needs_cleaning('"\\u0000"') and needs_cleaning('"\\uD800"'), "Mailchimp may write either case"
    assert not needs_cleaning(json.dumps({"FNAME": "Zoë", "LNAME": "Ng"}))
    members = [{"merge_fields": {"FNAME": ODD}}, {"merge_fields": {"FNAME": "😀"}}]
    assert json.loads(postgres_json(members)) == [{"merge_fields": {"FNAME": CLEAN}}, {"merge_fields": {"FNAME": "😀"}}]
    # A backslash typed before "u0000" is text, not a NUL: kept as typed.
    assert json.loads(postgres_json(["\\u0000"])) == ["\\u0000"]


def test_a_batch_result_and_an_error_carry_clean_text():
    raw = json.dumps({"email_address": "odd@example.org", "merge_fields": {"FNAME": ODD}})
    result = parse_result({"status_code": 200, "operation_id": "mcs-1", "response": raw})
    assert result.body["merge_fields"]["FNAME"] == CLEAN
    assert json.loads(result.raw)["merge_fields"]["FNAME"] == CLEAN
    assert parse_result({"status_code": 400, "response": "not json \x00"}).detail == "not json "
    error = error_from_response(400, json.dumps({"title": "Invalid Resource", "detail": "Bad \x00value"}))
    assert error.detail == "Bad value" and "\x00" not in str(error)


def test_the_client_answers_clean_text(emulator):
    lid = emulator.control.seed([{"name": "Odd", "members": [
        {"email_address": "odd@example.org", "status": "subscribed", "merge_fields": {"FNAME": ODD}}]}])["list_ids"][0]
    client = MailchimpClient(emulator.api_key, base_url=emulator.api_base, timeout=5)
    assert client.get_member(lid, "odd@example.org")["merge_fields"]["FNAME"] == CLEAN
    # A page is left as Mailchimp wrote it: it is cleaned as one document
    # where it is written (postgres_json).
    page = next(client.iter_member_pages(lid))
    assert page.members[0]["merge_fields"]["FNAME"] == ODD
    assert json.loads(postgres_json(page.members))[0]["merge_fields"]["FNAME"] == CLEAN
