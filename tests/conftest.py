"""Shared test setup: every test runs with a private home, cache and store, and fresh settings."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before elixirml is imported anywhere, so no code path can see the user's real dirs.
_SANDBOX = tempfile.mkdtemp(prefix="elixirml-tests-")
os.environ["HOME"] = _SANDBOX
os.environ["XDG_CACHE_HOME"] = os.path.join(_SANDBOX, "cache")
os.environ["XDG_DATA_HOME"] = os.path.join(_SANDBOX, "data")
os.environ["ELIXIRML_CACHE_DIR"] = os.path.join(_SANDBOX, "elixirml-cache")
os.environ["ELIXIRML_STORE"] = "sqlite:///" + os.path.join(_SANDBOX, "store.db")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # LiteLLM must not try the network at import

import elixirml.settings as _settings  # noqa: E402

# DSPy's vendored tests run one file per process from tests/test_dspy_conformance.py.
collect_ignore = ["dspy_conformance"]


@pytest.fixture(autouse=True)
def _fresh_settings():
    saved = _settings._DEFAULT.value
    _settings._DEFAULT.value = _settings.Settings()
    try:
        yield
    finally:
        _settings._DEFAULT.value = saved


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the whole test session, on 127.0.0.1 (see tests/_postgres.py)."""
    from _postgres import postgres_server as start
    from _postgres import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with start() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """A SQLAlchemy URL (psycopg driver) to a fresh database of its own on the session's server."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(scope="session")
def ray_cluster_process():
    """One Ray cluster for the whole test session, started with ``ray start --head`` on 127.0.0.1.

    The workers find the test programs (``tests/_dist_programs.py``) on their PYTHONPATH.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # set before Ray is imported: keeps it on 127.0.0.1
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'elixirml[ray]')")
    from _ray_cluster import ray_cluster as start

    here = os.path.dirname(os.path.abspath(__file__))
    python_path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    with start(num_cpus=2, python_path=python_path) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ray_cluster(ray_cluster_process):
    """This process joined to the session's cluster (by its address); refuses to run off loopback."""
    import ray

    ray.init(
        address=ray_cluster_process.address,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": ray_cluster_process.env["PYTHONPATH"]}},
    )
    try:
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        addresses.add(ray.util.get_node_ip_address())
        addresses.add(ray_cluster_process.address.rsplit(":", 1)[0])
        if not all(address.startswith("127.") for address in addresses):
            pytest.exit(f"Ray picked a non-loopback address {sorted(addresses)}: refusing to run the Ray tests", 3)
        yield ray
    finally:
        ray.shutdown()
