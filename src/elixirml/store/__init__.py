"""Store layer: the resource database (SQLAlchemy 2, Alembic migrations) and where it lives."""

from .._secrets import find_secrets
from ._core import EVENTS
from ._jobs import job_owner
from ._store import ResourceStore
from ._url import default_store_path, store_url
from ._versions import content_hash, state_hash, validate_configuration

__all__ = [
    "EVENTS",
    "ResourceStore",
    "content_hash",
    "default_store_path",
    "find_secrets",
    "job_owner",
    "state_hash",
    "store_url",
    "validate_configuration",
]
