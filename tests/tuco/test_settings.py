"""Settings that depend on TUCO_ENV: each case loads the settings in a fresh process."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each process reads back: the HTTPS settings, as JSON.
SHOW = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({name: getattr(settings, name) for name in ("
    "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', "
    "'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER', 'SESSION_COOKIE_SECURE', "
    "'CSRF_COOKIE_SECURE')}))"
)


def production_env(**overrides: str) -> dict[str, str]:
    """The README's production environment (DEBUG unset), with a throwaway SECRET_KEY."""
    # The browser tests allow Django's ORM in Playwright's event loop for their own
    # process; a production environment never does.
    own = (
        "DEBUG", "SECURE_", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(
        DJANGO_SETTINGS_MODULE="tuco.settings",
        TUCO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS="tuco.example.com",
        SITE_URL="https://tuco.example.com",
    )
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def show(env: dict[str, str]) -> dict:
    done = run(["-c", SHOW], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_deploy_checks_pass_with_the_production_environment():
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "security.W" not in done.stdout + done.stderr


def test_deploy_checks_warn_about_plain_http_outside_production():
    env = production_env()
    del env["TUCO_ENV"]
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


def test_production_defaults_to_https_only():
    assert show(production_env()) == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


def test_outside_production_plain_http_works():
    env = production_env()
    del env["TUCO_ENV"]
    assert show(env) == {
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


def test_https_settings_are_read_from_the_environment():
    env = production_env(
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        SECURE_HSTS_PRELOAD="true",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
    )
    values = show(env)
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_proxy_header_not_in_request_meta_form_is_refused():
    done = run(["-c", SHOW], production_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    assert done.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER must name a request header" in done.stderr


@pytest.mark.parametrize("name", ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE"])
def test_the_https_switches_still_parse_strictly(name):
    done = run(["-c", SHOW], production_env(**{name: "maybe"}))
    assert done.returncode != 0
    assert f"{name} must be a boolean" in done.stderr


@pytest.mark.parametrize("debug", ["false", "true", None])
@pytest.mark.parametrize("key", [None, "", "  ", "insecure-development-key-change-me"])
def test_production_refuses_a_missing_or_development_secret_key(key, debug):
    env = production_env()
    del env["SECRET_KEY"]
    if key is not None:
        env["SECRET_KEY"] = key
    if debug is not None:
        env["DEBUG"] = debug
    done = run(["-c", "import django; django.setup()"], env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert "SECRET_KEY must be set to a long random value when TUCO_ENV=production" in done.stderr


def test_outside_production_the_development_key_is_used():
    env = production_env(DEBUG="true")
    del env["TUCO_ENV"]
    del env["SECRET_KEY"]
    script = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.SECRET_KEY)"
    )
    done = run(["-c", script], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "insecure-development-key-change-me"
