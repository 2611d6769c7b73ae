"""Benchmarks. `python -m bench` runs every module here that defines
`run() -> list[dict]` and prints the rows as one table; `python -m bench NAME`
runs only that module."""

import os

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tuco_bench"


def ensure_database() -> str:
    """Point Django at Postgres (DATABASE_URL, else a local tuco_bench database)
    before django.setup(), creating the Postgres database it names if missing.
    Returns the URL."""
    from urllib.parse import urlsplit

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres"):
        import psycopg

        name = parts.path.lstrip("/")
        admin = parts._replace(scheme="postgresql", path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
    return url
