"""The test PostgreSQL server itself: real, on loopback, one database per test."""

from __future__ import annotations

import subprocess


def _psql(server, database: str, sql: str) -> str:
    command = [f"{server.bindir}/psql", "-h", server.host, "-p", str(server.port), "-U", server.user, "-d", database]
    done = subprocess.run([*command, "-tAc", sql], check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_server_listens_on_loopback_only(postgres_server):
    assert postgres_server.host == "127.0.0.1"
    assert _psql(postgres_server, "postgres", "SHOW listen_addresses") == "127.0.0.1"
    assert _psql(postgres_server, "postgres", "SELECT 1") == "1"


def test_each_test_gets_its_own_database(postgres_server, postgres_url):
    database = postgres_url.rsplit("/", 1)[1]
    assert database.startswith("t_")
    _psql(postgres_server, database, "CREATE TABLE t (x int)")
    other = postgres_server.create_database()
    assert _psql(postgres_server, other, "SELECT count(*) FROM pg_tables WHERE tablename = 't'") == "0"
