"""Shared personas: alice owns workspace "Acme", bob is a member there,
charlie owns "Globex" and must never see Acme's data."""

import pytest
from rest_framework.test import APIClient

from tuco.celery import app as celery_app
from tuco.models import Membership
from tuco.services import workspace_create

pytest_plugins = ["tests.lines.relay_fixtures"]

celery_app.conf.task_always_eager = True
celery_app.conf.task_eager_propagates = True


def api_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def acme(db):
    workspace, raw_key = workspace_create(
        name="Acme", owner_email="alice@acme.test", password="alice-password"
    )
    workspace.raw_key = raw_key
    return workspace


@pytest.fixture
def alice(acme):
    return acme.memberships.get(role=Membership.Role.OWNER).user


@pytest.fixture
def bob(acme, django_user_model):
    user = django_user_model.objects.create_user("bob@acme.test", "bob@acme.test", "bob-password")
    Membership.objects.create(workspace=acme, user=user, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def globex(db):
    workspace, raw_key = workspace_create(
        name="Globex", owner_email="charlie@globex.test", password="charlie-password"
    )
    workspace.raw_key = raw_key
    return workspace


@pytest.fixture
def api(acme) -> APIClient:
    return api_client(acme.raw_key)


@pytest.fixture
def globex_api(globex) -> APIClient:
    return api_client(globex.raw_key)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()
