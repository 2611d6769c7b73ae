"""Benchmarks. `python -m bench` runs every module here that defines
`run() -> list[dict]` and prints the rows as one table; `python -m bench NAME`
runs only that module."""

import os

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tuco_bench"


def ensure_database() -> str:
    """Point Django at Postgres (DATABASE_URL, else a local tuco_bench database,
    created if missing) before django.setup(). Returns the URL."""
    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    if url == DEFAULT_DATABASE_URL:
        import psycopg

        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = 'tuco_bench'"
            ).fetchone()
            if not exists:
                conn.execute("CREATE DATABASE tuco_bench")
    return url
