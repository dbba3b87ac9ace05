"""A real PostgreSQL server for the tests: started once per session on 127.0.0.1, stopped at the end.

The server runs from Debian's ``postgresql`` package (``initdb``/``pg_ctl``) as an unprivileged
user (PostgreSQL refuses to run as root), with its data directory and socket in a temp dir and
trust authentication on loopback only. Each test that asks for ``postgres_url`` gets a database
of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _binaries() -> str | None:
    """The folder holding initdb and pg_ctl, or None where PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(user: str | None) -> list[str]:
    """The command prefix that runs a program as ``user`` (nothing when we are not root)."""
    if user is None:
        return []
    return ["runuser", "-u", user, "--"]


@dataclass
class PostgresServer:
    """A running server: ``url(database)`` gives a SQLAlchemy URL for one of its databases."""

    host: str
    port: int
    user: str
    bindir: str
    run_as: list[str]

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create a fresh database and return its name."""
        name = "t_" + uuid.uuid4().hex[:12]
        subprocess.run(
            [os.path.join(self.bindir, "createdb"), "-h", self.host, "-p", str(self.port), "-U", self.user, name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return name


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    if _binaries() is None:
        return "PostgreSQL is not installed (Debian's 'postgresql' package; `make test` installs it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no unprivileged 'postgres' user to run the server as"
    return None


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server on 127.0.0.1 and stop it (and remove its files) afterwards."""
    bindir = _binaries()
    assert bindir is not None, unavailable_reason()
    user = "postgres" if os.geteuid() == 0 else None
    prefix = _run_as(user)
    root = tempfile.mkdtemp(prefix="elixirml-pg-")
    data = os.path.join(root, "data")
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    db_user = user or pwd.getpwuid(os.geteuid()).pw_name
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [*prefix, os.path.join(bindir, "initdb"), "-D", data, "-U", db_user, "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    log = os.path.join(root, "server.log")
    subprocess.run(
        [*prefix, os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )
    try:
        yield PostgresServer("127.0.0.1", port, db_user, bindir, prefix)
    finally:
        subprocess.run(
            [*prefix, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=120,
            env=env,
        )
        shutil.rmtree(root, ignore_errors=True)
