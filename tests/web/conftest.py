import pytest
from django.test import Client


@pytest.fixture
def charlie(globex):
    return globex.memberships.get().user


@pytest.fixture
def charlie_client(charlie) -> Client:
    client = Client()
    client.force_login(charlie)
    return client
