"""Issue 15's emulator needs: merge fields of every type, created and listed
through the API or seeded through the control API, and member values
validated and stored by type as API-BEHAVIOUR.md §4.2, §4.3 and §5.8 say,
errors being 400 Invalid Resource with the ``errors`` array; also inside
batch operations."""

import hashlib
import json

import pytest
from mailchimp_marketing.api_client import ApiClientError

from mailchimp_sync.emulator.control import EmulatorControlError

MERGE_INVALID = "Your merge fields were invalid."
SCHEMA_INVALID = ("The resource submitted could not be validated. "
                  "For field-specific details, see the 'errors' array.")
ANY_OF = "Data did not match any of the schemas described in anyOf."

FIELDS = [
    {"tag": "COMPANY", "name": "Company", "type": "text"},
    {"tag": "LTV", "name": "Lifetime value", "type": "number"},
    {"tag": "SHIPTO", "name": "Ship to", "type": "address"},
    {"tag": "USPHONE", "name": "US phone", "type": "phone", "options": {"phone_format": "US"}},
    {"tag": "JOINED", "name": "Joined", "type": "date"},
    {"tag": "EUDATE", "name": "European date", "type": "date", "options": {"date_format": "DD/MM/YYYY"}},
    {"tag": "COLOUR", "name": "Colour", "type": "dropdown", "options": {"choices": ["Red", "Green"]}},
    {"tag": "SIZE", "name": "Size", "type": "radio", "options": {"choices": ["S", "M", "L"]}},
    {"tag": "SITE", "name": "Website", "type": "url"},
    {"tag": "AVATAR", "name": "Avatar", "type": "imageurl"},
    {"tag": "ZIPCODE", "name": "Zip", "type": "zip"},
]


def h(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def problem(exc_info):
    return json.loads(exc_info.value.text)


@pytest.fixture
def lid(emulator):
    """A list with the default fields (FNAME, LNAME, ADDRESS, PHONE, BIRTHDAY) and one of each type."""
    return emulator.control.seed([{"name": "Typed", "add_merge_fields": FIELDS}])["list_ids"][0]


def put(sdk, lid, email="t@example.org", **merge):
    return sdk.lists.set_list_member(lid, h(email), {"email_address": email, "status_if_new": "subscribed",
                                                     "merge_fields": merge})


# --- definitions through the API and the control API --------------------------------

def test_every_type_created_and_listed_through_the_api(sdk_client, emulator):
    lid = emulator.control.seed([{"name": "Api"}])["list_ids"][0]
    made = {f["tag"]: sdk_client.lists.add_list_merge_field(lid, f) for f in FIELDS}
    assert made["LTV"]["type"] == "number" and made["LTV"]["merge_id"] == 7
    assert made["COMPANY"]["options"] == {"size": 25}
    assert made["SHIPTO"]["options"] == {"default_country": 164}
    assert made["USPHONE"]["options"] == {"phone_format": "US"}
    assert made["JOINED"]["options"] == {"date_format": "MM/DD/YYYY"}
    assert made["EUDATE"]["options"] == {"date_format": "DD/MM/YYYY"}
    assert made["COLOUR"]["options"] == {"choices": ["Red", "Green"]}
    assert made["ZIPCODE"]["options"] == {}
    # a field without a tag gets MMERGE<id>; tags are upper case
    auto = sdk_client.lists.add_list_merge_field(lid, {"name": "Note", "type": "text"})
    assert auto["tag"] == f"MMERGE{auto['merge_id']}"
    assert sdk_client.lists.add_list_merge_field(lid, {"name": "x", "type": "text", "tag": "low"})["tag"] == "LOW"
    # the listing pages like every collection: 10 by default, all with count
    first = sdk_client.lists.get_list_merge_fields(lid)
    assert len(first["merge_fields"]) == 10 and first["total_items"] == 5 + len(FIELDS) + 2
    every = sdk_client.lists.get_list_merge_fields(lid, count=100)
    assert [f["tag"] for f in every["merge_fields"]][:6] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY",
                                                               "COMPANY"]
    assert [f["tag"] for f in sdk_client.lists.get_list_merge_fields(lid, type="date")["merge_fields"]] == [
        "JOINED", "EUDATE"]
    birthday = next(f for f in every["merge_fields"] if f["tag"] == "BIRTHDAY")
    assert birthday["type"] == "birthday" and birthday["options"] == {"date_format": "MM/DD"}


@pytest.mark.parametrize("body,field", [
    ({"name": "No type"}, ""),
    ({"type": "text"}, ""),
    ({"name": "Bad", "type": "checkbox"}, "type"),
    ({"name": "Bad", "type": "date", "options": {"date_format": "YYYY/MM/DD"}}, "options.date_format"),
    ({"name": "Bad", "type": "birthday", "options": {"date_format": "MM/DD/YYYY"}}, "options.date_format"),
    ({"name": "Bad", "type": "phone", "options": {"phone_format": "FR"}}, "options.phone_format"),
    ({"name": "Bad", "type": "dropdown", "options": {"choices": "Red,Green"}}, "options.choices"),
])
def test_invalid_definitions(sdk_client, emulator, body, field):
    lid = emulator.control.seed([{"name": "Api"}])["list_ids"][0]
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_merge_field(lid, body)
    err = problem(ei)
    assert ei.value.status_code == 400 and err["title"] == "Invalid Resource"
    assert err["detail"] == SCHEMA_INVALID and err["errors"][0]["field"] == field
    assert sdk_client.lists.get_list_merge_fields(lid)["total_items"] == 5  # nothing was added


def test_duplicate_tag_refused(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_merge_field(lid, {"name": "Again", "type": "text", "tag": "ltv"})
    assert problem(ei)["title"] == "Invalid Resource" and "LTV" in problem(ei)["detail"]


def test_patch_keeps_the_type_and_checks_options(sdk_client, lid, emulator):
    tags = emulator.control.seed([{"id": lid}])["lists"][0]["merge_fields"]
    mf = sdk_client.lists.update_list_merge_field(lid, tags["COLOUR"], {
        "type": "text", "name": "Colour!", "required": True, "options": {"choices": ["Red", "Green", "Blue"]}})
    assert mf["type"] == "dropdown" and mf["name"] == "Colour!" and mf["required"] is True
    assert mf["options"]["choices"] == ["Red", "Green", "Blue"]
    assert put(sdk_client, lid, COLOUR="Blue")["merge_fields"]["COLOUR"] == "Blue"
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_merge_field(lid, tags["JOINED"], {"options": {"date_format": "MM/DD"}})
    assert problem(ei)["errors"][0]["field"] == "options.date_format"


def test_seed_merge_fields_through_the_control_api(emulator, sdk_client):
    ctl = emulator.control
    out = ctl.seed([{"name": "Only", "merge_fields": ["FNAME", {"tag": "LTV", "type": "number"}],
                     "members": [{"email_address": "s@example.org", "merge_fields": {"LTV": "12"}}]}])
    lid = out["list_ids"][0]
    assert out["lists"][0]["merge_fields"] == {"FNAME": 1, "LTV": 2}
    assert sdk_client.lists.get_list_member(lid, h("s@example.org"))["merge_fields"] == {"FNAME": "", "LTV": 12}
    # an existing list gains the fields it lacks, members get them empty
    again = ctl.seed([{"id": lid, "merge_fields": ["FNAME", "BIRTHDAY"],
                       "add_merge_fields": [{"tag": "TIER", "type": "radio", "options": {"choices": ["A"]}}]}])
    assert again["lists"][0]["merge_fields"] == {"FNAME": 1, "LTV": 2, "BIRTHDAY": 3, "TIER": 4}
    assert sdk_client.lists.get_list_member(lid, h("s@example.org"))["merge_fields"] == {
        "FNAME": "", "LTV": 12, "BIRTHDAY": "", "TIER": ""}
    # seeded values obey the same rules
    with pytest.raises(EmulatorControlError) as ei:
        ctl.seed([{"id": lid, "members": [{"email_address": "bad@example.org", "merge_fields": {"TIER": "B"}}]}])
    assert ei.value.status == 400
    assert ei.value.body["errors"] == [{"field": "TIER", "message": "Value must be one of: A (not B)"}]
    with pytest.raises(EmulatorControlError) as ei:
        ctl.seed([{"id": lid, "merge_fields": [{"tag": "BAD", "type": "colour"}]}])
    assert ei.value.status == 400


# --- values by type ---------------------------------------------------------------

@pytest.mark.parametrize("tag,given,stored", [
    ("COMPANY", "Acme", "Acme"),
    ("COMPANY", 42, "42"),
    ("LTV", "12.5", 12.5),
    ("LTV", 7, 7),
    ("LTV", "-3", -3),
    ("SHIPTO", {"addr1": "1 Main St", "city": "Atlanta", "state": "GA", "zip": "30312"},
     {"addr1": "1 Main St", "addr2": "", "city": "Atlanta", "state": "GA", "zip": "30312", "country": "US"}),
    ("SHIPTO", {"addr1": "Rue 2", "addr2": "b", "city": "Paris", "state": "IDF", "zip": "75001", "country": "FR"},
     {"addr1": "Rue 2", "addr2": "b", "city": "Paris", "state": "IDF", "zip": "75001", "country": "FR"}),
    ("SHIPTO", "1 Main St    Atlanta  GA  30312  US",
     {"addr1": "1 Main St", "addr2": "", "city": "Atlanta", "state": "GA", "zip": "30312", "country": "US"}),
    ("PHONE", "+49 30 1234567", "+49 30 1234567"),
    ("USPHONE", "404-555-1212", "404-555-1212"),
    ("USPHONE", "(404) 555-1212", "(404) 555-1212"),
    ("JOINED", "2024-02-29", "2024-02-29"),
    ("JOINED", "02/29/2024", "2024-02-29"),
    ("EUDATE", "31/12/2024", "2024-12-31"),
    ("EUDATE", "2024-12-31", "2024-12-31"),
    ("BIRTHDAY", "03/12", "03/12"),
    ("BIRTHDAY", "3/9", "03/09"),
    ("BIRTHDAY", "02/29", "02/29"),
    ("COLOUR", "Green", "Green"),
    ("SIZE", "M", "M"),
    ("SITE", "https://example.org/about", "https://example.org/about"),
    ("SITE", "example.org", "example.org"),
    ("AVATAR", "https://example.org/a.png", "https://example.org/a.png"),
    ("ZIPCODE", "30312", "30312"),
    ("ZIPCODE", "30312-1234", "30312-1234"),
])
def test_valid_values_are_stored_by_type(sdk_client, lid, tag, given, stored):
    m = put(sdk_client, lid, **{tag: given})
    assert m["merge_fields"][tag] == stored
    assert sdk_client.lists.get_list_member(lid, h("t@example.org"))["merge_fields"][tag] == stored
    # "" clears whatever the type (§5.8)
    assert put(sdk_client, lid, **{tag: ""})["merge_fields"][tag] == ""


@pytest.mark.parametrize("tag,given,message", [
    ("LTV", "lots", "Please enter a number"),
    ("LTV", "1,5", "Please enter a number"),
    ("SHIPTO", {"addr1": "1 Main St", "city": "Atlanta", "state": "GA"}, "Please enter a complete address"),
    ("SHIPTO", {"addr1": "1 Main St", "city": "", "state": "GA", "zip": "30312"},
     "Please enter a complete address"),
    ("SHIPTO", "1 Main St, Atlanta", "Please enter a complete address"),
    ("USPHONE", "12345", "Please enter a valid phone number"),
    ("JOINED", "2023-02-29", "Please enter the date"),
    ("JOINED", "31/12/2024", "Please enter the date"),  # MM/DD/YYYY field: there is no month 31
    ("JOINED", "yesterday", "Please enter the date"),
    ("EUDATE", "12/31/2024", "Please enter the date"),
    ("BIRTHDAY", "1990-03-12", "Please enter a month (01-12) and a day (01-31)"),
    ("BIRTHDAY", "13/01", "Please enter a month (01-12) and a day (01-31)"),
    ("BIRTHDAY", "02/30", "Please enter a month (01-12) and a day (01-31)"),
    ("COLOUR", "Blue", "Value must be one of: Red, Green (not Blue)"),
    ("SIZE", "XL", "Value must be one of: S, M, L (not XL)"),
    ("SITE", "not a url", "Please enter a valid URL"),
    ("AVATAR", "pic", "Please enter a valid URL"),
    ("ZIPCODE", "ABC12", "Please enter a valid zip code"),
])
def test_invalid_values_are_mailchimps_400(sdk_client, lid, tag, given, message):
    put(sdk_client, lid, FNAME="Before")
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, FNAME="After", **{tag: given})
    err = problem(ei)
    assert ei.value.status_code == 400 and err["title"] == "Invalid Resource"
    assert err["detail"] == MERGE_INVALID and err["errors"] == [{"field": tag, "message": message}]
    assert err["type"] == "https://mailchimp.com/developer/marketing/docs/errors/"
    # the call changed nothing
    assert sdk_client.lists.get_list_member(lid, h("t@example.org"))["merge_fields"]["FNAME"] == "Before"


@pytest.mark.parametrize("given", [None, True, ["a"], {"a": 1}])
def test_values_of_the_wrong_json_type_fail_the_schema(sdk_client, lid, given):
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, COMPANY=given)
    err = problem(ei)
    assert err["detail"] == SCHEMA_INVALID
    assert err["errors"] == [{"field": "merge_fields.COMPANY", "message": ANY_OF}]


def test_settings_for_unverified_rules(sdk_client, lid, emulator):
    emulator.control.settings(merge_null="clear", merge_validate_unverified=False, merge_date_output="field")
    m = put(sdk_client, lid, COMPANY=None, USPHONE="12345", SITE="not a url", ZIPCODE="ABC",
            JOINED="2024-12-31", EUDATE="2024-12-31")
    assert m["merge_fields"]["COMPANY"] == "" and m["merge_fields"]["USPHONE"] == "12345"
    assert m["merge_fields"]["SITE"] == "not a url" and m["merge_fields"]["ZIPCODE"] == "ABC"
    assert m["merge_fields"]["JOINED"] == "12/31/2024" and m["merge_fields"]["EUDATE"] == "31/12/2024"
    # the documented rules stay
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, LTV="lots")
    assert problem(ei)["errors"] == [{"field": "LTV", "message": "Please enter a number"}]


def test_every_error_is_reported_at_once(sdk_client, lid):
    with pytest.raises(ApiClientError) as ei:
        put(sdk_client, lid, LTV="x", BIRTHDAY="x", COLOUR="x", NOTATAG="ignored")
    assert problem(ei)["errors"] == [
        {"field": "LTV", "message": "Please enter a number"},
        {"field": "BIRTHDAY", "message": "Please enter a month (01-12) and a day (01-31)"},
        {"field": "COLOUR", "message": "Value must be one of: Red, Green (not x)"},
    ]


def test_member_shape_by_type(sdk_client, lid):
    m = put(sdk_client, lid, LTV="3", SHIPTO={"addr1": "1 Main St", "city": "Atlanta", "state": "GA",
                                               "zip": "30312"})
    assert m["merge_fields"]["LTV"] == 3 and isinstance(m["merge_fields"]["SHIPTO"], dict)
    assert m["merge_fields"]["ADDRESS"] == "" and m["merge_fields"]["JOINED"] == ""
    assert set(m["merge_fields"]) == {"FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"} | {f["tag"] for f in FIELDS}


def test_required_fields(sdk_client, lid, emulator):
    tags = emulator.control.seed([{"id": lid}])["lists"][0]["merge_fields"]
    sdk_client.lists.update_list_merge_field(lid, tags["LNAME"], {"required": True})
    sdk_client.lists.update_list_merge_field(lid, tags["SHIPTO"], {"required": True})
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.add_list_member(lid, {"email_address": "r@example.org", "status": "subscribed",
                                               "merge_fields": {"FNAME": "R"}})
    assert problem(ei)["errors"] == [{"field": "LNAME", "message": "Please enter a value"},
                                     {"field": "SHIPTO", "message": "Please enter a value"}]
    # skip_merge_validation accepts a member without them
    m = sdk_client.lists.add_list_member(lid, {"email_address": "r@example.org", "status": "subscribed"},
                                         skip_merge_validation=True)
    assert m["merge_fields"]["LNAME"] == ""
    # an update that does not touch them is fine; clearing one is not
    sdk_client.lists.update_list_member(lid, h("r@example.org"), {"merge_fields": {"FNAME": "Rita"}})
    with pytest.raises(ApiClientError) as ei:
        sdk_client.lists.update_list_member(lid, h("r@example.org"), {"merge_fields": {"LNAME": ""}})
    assert problem(ei)["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]


def test_merge_values_inside_a_batch(sdk_client, lid, emulator):
    emulator.control.settings(batch_auto_run=False)
    ops = [
        {"method": "POST", "path": f"/lists/{lid}/members", "operation_id": "ok",
         "body": json.dumps({"email_address": "b1@example.org", "status": "subscribed",
                             "merge_fields": {"JOINED": "01/15/2024", "LTV": "9"}})},
        {"method": "PUT", "path": f"/lists/{lid}/members/{h('b2@example.org')}", "operation_id": "bad",
         "body": json.dumps({"email_address": "b2@example.org", "status_if_new": "subscribed",
                             "merge_fields": {"COLOUR": "Blue"}})},
        {"method": "POST", "path": f"/lists/{lid}/merge-fields", "operation_id": "field",
         "body": json.dumps({"name": "Batch", "type": "number", "tag": "BATCHED"})},
    ]
    batch = sdk_client.batches.start({"operations": ops})
    emulator.control.run_batches()
    assert sdk_client.batches.status(batch["id"])["errored_operations"] == 1
    assert sdk_client.lists.get_list_member(lid, h("b1@example.org"))["merge_fields"]["JOINED"] == "2024-01-15"
    with pytest.raises(ApiClientError):
        sdk_client.lists.get_list_member(lid, h("b2@example.org"))
    assert "BATCHED" in {f["tag"] for f in sdk_client.lists.get_list_merge_fields(lid, count=100)["merge_fields"]}
    rows = _results(sdk_client.batches.status(batch["id"])["response_body_url"])
    bad = json.loads(rows["bad"]["response"])
    assert rows["bad"]["status_code"] == 400 and bad["detail"] == MERGE_INVALID
    assert bad["errors"] == [{"field": "COLOUR", "message": "Value must be one of: Red, Green (not Blue)"}]


def _results(url):
    import io
    import tarfile

    import requests
    out = {}
    with tarfile.open(fileobj=io.BytesIO(requests.get(url, timeout=10).content), mode="r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            for row in json.loads(data) if data else []:
                out[row["operation_id"]] = row
    return out
