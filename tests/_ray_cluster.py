"""The test session's Ray cluster: ``ray start --head`` on 127.0.0.1 in a subprocess.

The tests' driver joins it by address, and a test can start another driver process that
joins it with ``address="auto"``, as a user on a cluster node does. Every address is checked
to be on loopback; stopping it kills only this cluster's processes (not other Ray instances on
the machine).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RayCluster:
    """A running cluster: its GCS address, its Ray Client address, its temp dir, the environment its processes see."""

    address: str
    client_address: str
    temp_dir: str
    env: dict[str, str]

    def log_tails(self, pattern: str, chars: int = 2000) -> str:
        """The last ``chars`` of each of the cluster's log files matching ``pattern``, for a failing test's message."""
        paths = sorted(glob.glob(os.path.join(self.temp_dir, "session_latest", "logs", pattern)))
        parts = []
        for path in paths:
            with open(path, errors="replace") as f:
                parts.append(f"--- {os.path.basename(path)}\n{f.read()[-chars:]}")
        return "\n".join(parts) or f"(no log file {pattern} under {self.temp_dir})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def _processes_of(marker: str) -> set[int]:
    """The processes whose command line names ``marker`` (the cluster's temp dir), and their children."""
    parents: dict[int, int] = {}
    own: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if marker in cmdline:
            own.add(int(entry))
    found = set(own)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def _stop(temp_dir: str) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = _processes_of(temp_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = {pid for pid in pids if os.path.exists(f"/proc/{pid}") and not _zombie(pid)}
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@contextlib.contextmanager
def ray_cluster(num_cpus: int, python_path: str) -> Iterator[RayCluster]:
    """Start a one-node cluster on 127.0.0.1 with ``ray start --head``; stop it at the end."""
    temp_dir = tempfile.mkdtemp(prefix="emray-", dir="/tmp")  # short: Ray's socket paths live under it
    port, client_port = _free_port(), _free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": python_path}
    command = [
        _ray_cli(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={client_port}",  # on the node address: 127.0.0.1
    ]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
        yield RayCluster(
            address=f"127.0.0.1:{port}", client_address=f"ray://127.0.0.1:{client_port}", temp_dir=temp_dir, env=env
        )
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
