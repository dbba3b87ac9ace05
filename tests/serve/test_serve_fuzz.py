"""Every endpoint of the server's own OpenAPI document, fed generated input: never a 5xx (issue 34 item 6).

Bodies come from each operation's JSON schema (each program's real input schema included), from
arbitrary JSON, and from raw bytes; path parameters from the served names and arbitrary text.
The number of examples is bounded so the test runs in seconds.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import httpx
import pytest

import elixirml as em

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytest.importorskip("fastapi")

EXAMPLES = 1500
SERVED = ["qa", "typed"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly fit ``schema`` (a JSON schema from the OpenAPI document)."""
    if depth > 4:
        return json_values
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = [k for k in schema.get("required", []) if k in properties]

        def field(name: str, sub: dict[str, Any]) -> st.SearchStrategy[Any]:  # now and then a wrong type
            fitting = (
                st.sampled_from(SERVED) if name in ("model", "program") else from_schema(sub, components, depth + 1)
            )
            return st.one_of(*[fitting] * 7, json_values)

        return st.fixed_dictionaries(
            {k: field(k, properties[k]) for k in required},
            optional={k: field(k, v) for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "string":
        return st.text(max_size=20) | st.sampled_from(SERVED)
    if kind == "integer":
        return st.integers() | st.integers(min_value=-3, max_value=5)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=0, max_value=2)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, operation))
    return found


def test_no_endpoint_answers_5xx_to_any_input(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'fuzz.db'}")
    store.save(em.Predict("question -> answer"), "qa")
    store.save(em.Predict("context, question -> answer: int, score: float"), "typed")

    def answer(messages, settings):  # a well-behaved LM: any 5xx is the server's own
        if "score" in str(messages[0]["content"]):
            return {"answer": "1", "score": "0.5"}
        return {"answer": "A"}

    app = em.serve.create_app(store, lm=em.FunctionLM(answer), tokens=[], console=False)
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    ops = operations(document)
    assert len(ops) >= 20  # every program's run/stream/batch, deploy, chat, jobs, health
    names = st.sampled_from(SERVED) | st.text(min_size=1, max_size=10).filter(lambda s: "/" not in s)
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)  # starts the job manager, as the server does
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
    seen: dict[str, int] = {}

    @st.composite
    def requests(draw: Any) -> tuple[str, str, bytes | None]:
        method, path, operation = draw(st.sampled_from(ops))
        for part in [p[1:-1] for p in path.split("/") if p.startswith("{")]:
            path = path.replace("{" + part + "}", urllib.parse.quote(draw(names), safe=""))
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if method not in ("POST", "PUT", "PATCH"):
            return method, path, None
        fitting = from_schema(schema, components).map(lambda v: json.dumps(v).encode()) if schema else st.nothing()
        arbitrary = json_values.map(lambda v: json.dumps(v).encode())
        body = draw(st.one_of(fitting, fitting, fitting, arbitrary, st.binary(max_size=40)))
        return method, path, body

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(requests())
    def check(request: tuple[str, str, bytes | None]) -> None:
        method, path, body = request
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = loop.run_until_complete(client.request(method, path, content=body, headers=headers))
        key = f"{method} {path} {response.status_code}"
        seen[key] = seen.get(key, 0) + 1
        assert response.status_code < 500, (method, path, body, response.status_code, response.text[:500])

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
        store.close()
    assert len({k.rsplit(" ", 1)[0] for k in seen}) >= 15, seen  # most operations were exercised
