"""Finding 10 (the API's part): a malformed date filter value and deeply nested JSON
were 500s. (Callbacks and CSV headers: the webhook work.)"""

import pytest

from smscampaigns.json_limits import MAX_DEPTH, JsonTooDeep, check_depth, loads
from smscampaigns.models import Scope

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01", "x"],
)
def test_a_date_filter_out_of_range_is_a_400(key_api, value):
    response = key_api(Scope.READ).get("/api/v1/messages/", {"since": value})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400


@pytest.mark.parametrize("depth", [100_000, MAX_DEPTH + 1])
def test_deeply_nested_json_is_a_400(key_api, depth):
    body = '{"phone": "+14155550100", "attributes": {"a": ' + "[" * depth
    body += "]" * depth + "}}"
    response = key_api(Scope.WRITE_CONTACTS).generic(
        "POST", "/api/v1/contacts/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]["message"]


def test_ordinary_nesting_still_parses():
    value = loads('{"a": [{"b": [1, 2]}]}')
    assert value == {"a": [{"b": [1, 2]}]}
    with pytest.raises(JsonTooDeep):
        check_depth([[[]]], max_depth=2)
