"""Where credentials hide, and how to keep them out of reprs, logs and stored rows.

A value is a credential because of *where it came from*: an LM's key, a request header
that carries a token, or a URL with a password or a key in its query. The name of a field in
user data (a demo or an input called ``password``) says nothing about it, so user data is
never inspected by name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["USER_DATA_KEYS", "find_secrets", "is_credential_name", "redact_text", "redact_url", "server_secrets"]

REDACTED = "***"

#: Keys whose values are user data (examples, inputs, outputs): names inside them are not settings.
USER_DATA_KEYS = frozenset({"demos", "inputs", "outputs", "example", "examples", "prediction"})

_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "credential",
        "credentials",
        "passwd",
        "password",
        "secret",
        "token",
    }
)
_JOINED = ("apikey", "accesskey", "privatekey", "secretkey", "sessionkey", "clientsecret", "xapikey")


def is_credential_name(name: str) -> bool:
    """Whether a setting, header or query parameter called ``name`` carries a credential.

    ``X-Api-Token``, ``api_key``, ``Authorization``, ``x-api-key`` and ``sessionKey`` do;
    ``max_tokens`` and ``key`` do not.
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    parts = [p for p in re.split(r"[^a-z0-9]+", spaced.lower()) if p]
    if any(part in _WORDS for part in parts):
        return True
    joined = "".join(parts)
    return any(marker in joined for marker in _JOINED)


def redact_url(url: str) -> str:
    """``url`` with any password in it and any credential query parameter replaced by ``***``.

    ``https://user:key@host/v1?api_key=k&x=1`` becomes ``https://user:***@host/v1?api_key=***&x=1``.
    Text that is not a URL is returned unchanged.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "://" not in url:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if sep else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_credential_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_credential_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# Key-shaped tokens in free text: OpenAI/Anthropic-style "sk-..." keys (and their "pk-", "rk-" kin), Google's
# "AIza...", GitHub's "ghp_...", Slack's "xox?-...", AWS access key ids; and the token after "Bearer".
_KEY_TOKEN = re.compile(
    r"\b(?:(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}|AIza[A-Za-z0-9_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[A-Z0-9]{16})"
)
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/\-]{6,}=*")
# "api_key=...", "token: ...", "password='...'": a name that names a credential, then its value.
_NAMED_VALUE = re.compile(r"(?i)\b([a-z0-9_\-]+)(\s*[:=]\s*[\"']?)([^\s\"',;&]{3,})")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (an upstream error message, a log line) with every credential in it replaced by ``***``.

    Replaced: each of ``secrets`` (the key a request sent, which a provider may quote back)
    wherever it appears; key-shaped tokens (``sk-...``, ``AIza...``, ``ghp_...``, AWS key ids) and
    the token after ``Bearer``; the value after a name that names a credential (``api_key=...``,
    ``token: ...``; not ``max_tokens: 512``); and passwords and credential parameters in URLs
    (see :func:`redact_url`). Other text is unchanged.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _KEY_TOKEN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _NAMED_VALUE.sub(_redact_named, text)


def server_secrets() -> list[str]:
    """The credentials this process holds in its environment (``OPENAI_API_KEY`` and the like), longest first.

    What a server passes to :func:`redact_text` so that none of its own keys reaches a client,
    a log or a span, even where a provider quotes one back in another shape than ``sk-...``.
    """
    found = {value for name, value in os.environ.items() if is_credential_name(name) and len(value) >= 8}
    return sorted(found, key=len, reverse=True)


def _redact_named(match: re.Match[str]) -> str:
    name, sep, value = match.groups()
    if value == REDACTED or value.lower() == "bearer" or not is_credential_name(name):
        return match.group(0)
    return name + sep + REDACTED


def _url_has_secret(text: str) -> bool:
    """Whether a URL in ``text`` (a URL, or free text such as an error message) carries a password or a key.

    Each URL in it is judged by what :func:`redact_url` hides, not by whether the text changes:
    free text is no URL (``"Error: ... https://host/v1"`` would read as scheme ``error``).
    """
    if "://" not in text:
        return False
    return any(redact_url(url).count(REDACTED) > url.count(REDACTED) for url in _URL.findall(text))


def find_secrets(value: Any, path: str = "") -> list[str]:
    """Paths of credentials in a JSON-like value about to be stored.

    A credential is a non-empty value under a key that names one (``api_key``, ``X-Api-Token``,
    ``Authorization``, ...) or a URL carrying a password or a key. Subtrees of user data
    (:data:`USER_DATA_KEYS`: demos, inputs, outputs) are not inspected: a demo field called
    ``password`` is the user's data, not ours.
    """
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            name = str(key)
            if name in USER_DATA_KEYS or name.endswith(".demos"):
                continue
            if is_credential_name(name) and item not in (None, "", {}, []):
                found.append(where)
                continue
            found.extend(find_secrets(item, where))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.extend(find_secrets(item, f"{path}[{i}]"))
    elif isinstance(value, str) and _url_has_secret(value):
        found.append(path or "<value>")
    return found
