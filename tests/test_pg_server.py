"""The tests' own PostgreSQL server (tests/pg_server.py, fixtures pg_server and
pg_url in conftest.py): a real server, password checks, a crash and restart."""

from __future__ import annotations

import psycopg
import pytest


def test_a_test_database_takes_writes_with_the_password_from_the_environment(pg_url):
    assert "vaal-secret" not in pg_url
    with psycopg.connect(pg_url) as conn:  # PGPASSWORD comes from the pg_url fixture
        conn.execute("CREATE TABLE labels (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO labels (name) VALUES (%s), (%s)", ["cat", "dog"])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT name FROM labels ORDER BY id").fetchall() == [("cat",), ("dog",)]
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("vaal", pg_url.rsplit("/", 1)[1])


def test_a_wrong_or_missing_password_is_refused(pg_server, pg_url, monkeypatch):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_url, password="not-the-secret", connect_timeout=10)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg_url, connect_timeout=10)


def test_committed_rows_survive_a_killed_server(pg_server, pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE rounds (n int)")
        conn.execute("INSERT INTO rounds SELECT generate_series(1, 1000)")
    idle = psycopg.connect(pg_url)  # a client that sees the crash
    pg_server.kill()
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    pg_server.restart()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM rounds").fetchone() == (1000, 500500)
    assert "database system was interrupted" in pg_server.log_file.read_text()
