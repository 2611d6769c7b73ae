"""Shared personas: alice owns workspace "Acme", bob is a member there,
charlie owns "Globex" and must never see Acme's data.

The suite runs in parallel (pytest-xdist, see the Makefile). pytest-django gives each
worker its own test database; what else the workers share is made per-worker below:
the Redis cache and rate-limit keys carry the worker's name, and clearing the cache
drops that worker's keys only (Django's RedisCache.clear() flushes the whole Redis
database, other workers' keys included). Relay simulators, file servers and the live
server listen on ephemeral ports; files go to tmp_path.
"""

import os

import pytest
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from rest_framework.test import APIClient

from tuco import ratelimit
from tuco.celery import app as celery_app
from tuco.models import Membership
from tuco.services import workspace_create

pytest_plugins = ["tests.lines.relay_fixtures"]

celery_app.conf.task_always_eager = True
celery_app.conf.task_eager_propagates = True

# Passwords are hashed for every persona of every test; the production hasher
# (PBKDF2, a million rounds) is what makes that slow, and no test is about it.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Lines as most tests want them: exact gaps, no warm-up, campaign sends due at once.
# The tests of warm-up, jitter and spreading turn them on (the `settings` fixture,
# or a workspace's LinePolicy).
settings.LINE_WARMUP_DAYS = 0
settings.SEND_GAP_JITTER_PERCENT = 0
settings.SEND_SPREAD_OVER_WINDOW = False
# No frequency cap unless a test sets one (tests/messaging/test_frequency_cap.py).
settings.FREQUENCY_CAP_PER_DAY = 0
settings.FREQUENCY_CAP_PER_WEEK = 0


class WorkerRedisCache(RedisCache):
    """The Redis cache of one xdist worker: clear() deletes this worker's keys only."""

    def clear(self):
        client = self._cache.get_client(None, write=True)
        keys = list(client.scan_iter(match=f"{self.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        return True


WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER and settings.REDIS_URL:
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            **settings.CACHES["default"],
            "BACKEND": f"{__name__}.WorkerRedisCache",
            "KEY_PREFIX": f"test-{WORKER}",
        },
    }
    ratelimit.KEY_PREFIX = f"tuco:rl:test-{WORKER}:"


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


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client
