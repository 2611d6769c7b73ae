"""Every paged list takes its page and limit through the one pagination input."""

import pytest

from messaging.models import WebhookEndpoint

HUGE = "9223372036854775807"

PAGED = [
    "/api/messages",
    "/api/campaigns",
    "/api/unibox/conversations",
    "/api/dnc",
    "/api/replies",
    "/api/leads",
    "/api/webhooks/{endpoint}/deliveries",
]


@pytest.fixture
def endpoint(acme):
    return WebhookEndpoint.objects.create(
        workspace=acme, url="https://hook.example.com/tuco", events=["message.failed"], name="Hook"
    )


@pytest.mark.parametrize("path", PAGED)
def test_a_page_beyond_the_bound_is_a_400_on_every_list(api, endpoint, path):
    response = api.get(f"{path.format(endpoint=endpoint.pk)}?page={HUGE}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "page: must be at most 1000000"
    assert body["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("path", PAGED)
def test_the_last_page_within_the_bound_is_an_empty_page(api, endpoint, path):
    response = api.get(f"{path.format(endpoint=endpoint.pk)}?page=1000000&limit={HUGE}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:  # lists that refuse a limit above their size
        assert response.json()["error"].startswith("limit: Ensure this value is less than")
        response = api.get(f"{path.format(endpoint=endpoint.pk)}?page=1000000")
    assert response.status_code == 200
