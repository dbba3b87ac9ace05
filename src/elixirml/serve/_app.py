"""``create_app``: the FastAPI app that serves stored programs.

Routes: ``POST /programs/{name}/run|stream|batch|deploy|rollback``, ``GET /programs``,
``GET /programs/{name}``, ``GET /programs/{name}/versions``, ``POST /v1/chat/completions``,
``/healthz``, ``/readyz``, ``/metrics``, and ``/openapi.json`` with each program's own schemas.
The app's ``app.state.serve`` is the :class:`~elixirml.serve.ServeState`; other routers can be
included and protected with :func:`~elixirml.serve.require_token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

try:
    import fastapi
    from fastapi import Depends, FastAPI, Request
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
except ImportError as exc:  # pragma: no cover - the serve extra is missing
    from ..errors import MissingDependencyError

    raise MissingDependencyError("fastapi", "serve", "The HTTP server") from exc

import pydantic

from .. import settings as _settings
from .._http import Guard, GuardPolicy, TokenSet, json_line
from .._secrets import redact_text, server_secrets
from .._version import __version__
from ..errors import ConfigurationError, LoadError
from ..program import FieldChunk, StatusEvent, Store, streamify
from ..runtime import gather_bounded
from ._auth import Caller, require_token
from ._jobs import JobManager, jobs_router
from ._loader import ProgramLoader
from ._metrics import render_metrics
from ._openai import openai_router
from ._run import RequestError, observed, request_json, validate_inputs
from ._state import Deployment, LoadedVersion, ServeSettings, ServeState

log = logging.getLogger("elixirml.serve")
VERSION_HEADER = "X-Program-Version"
#: The largest version number a request may name.
MAX_VERSION = 2**63 - 1
#: Paths without a token, a limit or a ``Host`` check: the probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def sse(event: str, data: Any, ident: int) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` and a one-line JSON ``data``."""
    return f"id: {ident}\nevent: {event}\ndata: {json_line(data)}\n\n".encode()


class DeployRequest(pydantic.BaseModel):
    """Body of ``POST /programs/{name}/deploy``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    version: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="The stored version (default: the latest; with reload, the live one).",
    )
    traffic: float | None = pydantic.Field(
        default=None, gt=0.0, lt=1.0, description="Send this share of requests to the version, as a canary."
    )
    reload: bool = pydantic.Field(default=False, description="Re-import the program's module before building it.")


def _parse_reference(reference: str) -> tuple[str, int | str]:
    name, sep, version = reference.partition("@")
    if not name:
        raise ConfigurationError(f"A program reference is 'name' or 'name@version', got {reference!r}")
    if not sep or version == "latest":
        return name, "latest"
    if not version.isdigit():
        raise ConfigurationError(f"The version in {reference!r} must be a number or 'latest'")
    return name, int(version)


def _load_programs(state: ServeState, programs: Sequence[str] | None) -> None:
    if programs:
        for reference in programs:
            name, version = _parse_reference(reference)
            state.deployments[name] = Deployment(state.loader.load(name, version))
        return
    for row in state.store.programs():
        name = row["name"]
        if row.get("latest") is None:
            continue
        try:
            state.deployments[name] = Deployment(state.loader.load(name, "latest"))
        except Exception as exc:  # one program that cannot be built must not keep the others from serving
            why = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            state.unavailable[name] = redact_text(why, server_secrets())
            log.warning("Not serving program %r: %s", name, state.unavailable[name])


def _deployment(state: ServeState, name: str) -> Deployment:
    deployment = state.deployments.get(name)
    if deployment is None:
        known = sorted(state.deployments)
        why = f" ({state.unavailable[name]})" if name in state.unavailable else ""
        raise RequestError(404, f"No program {name!r} is served{why}; served programs: {known}")
    return deployment


def _versioned(body: Any, version: int, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={VERSION_HEADER: str(version)})


def create_app(
    store: Store | str | None = None,
    *,
    programs: Sequence[str] | None = None,
    lm: Any = None,
    tokens: Sequence[str] | None = None,
    allow_modules: Sequence[str] = (),
    allow_paths: Sequence[str] = (),
    settings: ServeSettings | None = None,
    title: str = "ElixirML",
    tracer_provider: Any = None,
    jobs: bool = True,
    jobs_lm: str | None = None,
    job_lms: Mapping[str, str] | None = None,
    console: bool | None = None,
) -> FastAPI:
    """Build the ASGI app that serves stored programs.

    Args:
        store: an ``em.Store``, a store URL, or None for the configured store.
        programs: serve only these (``"name"`` or ``"name@version"``); default: the latest
            version of every stored program (one that cannot be built is listed as unavailable).
        lm: the LM requests run with (default: the LM configured when a request runs).
        tokens: accepted bearer tokens; None reads ``$ELIXIRML_SERVE_TOKENS``; empty: no auth.
        allow_modules: module prefixes whose code may be imported for a stored program (at
            start, and for ``deploy`` with ``"reload": true``).
        allow_paths: source files or folders whose code may be imported for a stored program
            (a class saved from a script, or from ``elixirml optimize file.py:Class``).
        settings: limits (:class:`~elixirml.serve._state.ServeSettings`).
        title: the OpenAPI title.
        tracer_provider: the OpenTelemetry tracer provider of each request's server span
            (default: the global one); the span continues the request's ``traceparent``.
        jobs: serve ``/jobs`` (supervised evaluations and optimizations, behind the tokens);
            the job manager starts and stops with the app, resuming interrupted jobs.
        jobs_lm: the LM of optimization jobs, which run in worker processes: a model name or
            ``"pkg.module:factory"`` (default: the LM the worker's configuration names).
        job_lms: the LMs a job may name, ``{name: model}`` (``"proposer_lm": "name"``); a job names
            no other LM, store, file or module than the server's.
        console: mount the web console at ``/``. Default: when the server has no tokens. The
            console has no login, so asking for it on a server with tokens is refused.

    Returns:
        A FastAPI app; ``app.state.serve`` holds its :class:`~elixirml.serve.ServeState`.

    Raises:
        LoadError: a program named in ``programs`` cannot be built.
        ConfigurationError: a bad option (a short token, a bad reference, the console with tokens).
    """
    if store is None or isinstance(store, str):
        store = Store(store)
    token_set = TokenSet.from_sources(tokens)
    if console and token_set:
        raise ConfigurationError(
            "The web console has no login, so it is not served next to bearer tokens: pass console=False "
            "(elixirml serve --no-console), or run `elixirml console` on a loopback address"
        )
    mount_console = not token_set if console is None else console
    lm_settings = _settings.current()._with({"lm": lm}, "serve") if lm is not None else None
    state = ServeState(
        store,
        ProgramLoader(store, allow_modules, allow_paths),
        token_set,
        settings or ServeSettings(),
        lm_settings,
    )
    state.tracer_provider = tracer_provider
    _load_programs(state, programs)
    # The local model loads at start-up (in the lifespan), so the first request does not wait for it.
    served_lm = lm if lm is not None else _settings.current().lm
    local = served_lm if callable(getattr(served_lm, "load_model", None)) else None
    if local is not None:
        state.model = "loading"

    manager = (
        JobManager(store, lm=jobs_lm, evaluation_lm=lm, allow_modules=allow_modules, lms=job_lms) if jobs else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load_model(local)) if local is not None else None
        try:
            if manager is None:
                yield
                return
            await manager.start()
            try:
                yield
            finally:
                await manager.stop()
        finally:
            if loading is not None and not loading.done():
                loading.cancel()

    app = FastAPI(title=title, version=__version__, description="Programs served by ElixirML.", lifespan=lifespan)
    app.state.serve = state
    limits = state.settings
    state.policy = GuardPolicy(
        tokens=token_set,
        allowed_hosts=frozenset(limits.allowed_hosts),
        open_paths=OPEN_PATHS,
        max_body_bytes=limits.max_body_bytes,
        max_concurrency=limits.max_concurrency,
        retry_after=limits.retry_after,
        read_timeout=limits.read_timeout,
    )
    app.add_middleware(Guard, policy=state.policy, counters=state)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = dict(exc.headers)
        if exc.version is not None:
            headers[VERSION_HEADER] = str(exc.version)
        if exc.status == 422:
            state.reject("invalid")
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(ConfigurationError)
    async def _configuration_error(request: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "type": type(exc).__name__}, status_code=409)

    protected = fastapi.APIRouter(dependencies=[Depends(require_token)])

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready for traffic (503 while the local model loads, or while shutting down)."""
        body = {
            "ready": state.ready,
            "programs": len(state.deployments),
            "unavailable": len(state.unavailable),
            "in_flight": state.in_flight,
            "model": state.model,
        }
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics: requests, errors, latency, tokens and cost per program and version."""
        return PlainTextResponse(render_metrics(state), media_type="text/plain; version=0.0.4; charset=utf-8")

    @protected.get("/programs", tags=["programs"])
    async def list_programs() -> dict[str, Any]:
        """The served programs and those that could not be loaded."""
        return {
            "programs": [state.describe(d) for _, d in sorted(state.deployments.items())],
            "unavailable": dict(state.unavailable),
        }

    @protected.get("/programs/{name}", tags=["programs"])
    async def show_program(name: str) -> JSONResponse:
        """Live version, canary, history and per-version counts of one program."""
        deployment = _deployment(state, name)
        return _versioned(state.describe(deployment), deployment.live.number)

    @protected.get("/programs/{name}/versions", tags=["programs"])
    async def list_versions(name: str) -> dict[str, Any]:
        """The stored versions of a program, with which one is live or canary."""
        try:
            rows = await asyncio.to_thread(state.store.versions, name)
        except LoadError as exc:
            raise RequestError(404, str(exc)) from None
        deployment = state.deployments.get(name)
        live = deployment.live.number if deployment else None
        canary = deployment.canary.number if deployment and deployment.canary else None
        for row in rows:
            row["live"] = row["number"] == live
            row["canary"] = row["number"] == canary
            stats = state.stats.get((name, row["number"]))
            row["stats"] = stats.summary() if stats is not None else None
        return {"name": name, "versions": rows}

    body_of = request_json

    @protected.post("/programs/{name}/run", tags=["programs"], include_in_schema=False)
    async def run_program(name: str, request: Request) -> JSONResponse:
        version = _deployment(state, name).pick()
        inputs = validate_inputs(version, await body_of(request))
        async with observed(state, version, request.headers, "run") as run:
            result = await version.program.acall(**inputs)
            run.take(result)
        return _versioned(run.answer(result), version.number)

    @protected.post("/programs/{name}/batch", tags=["programs"], include_in_schema=False)
    async def batch_program(name: str, request: Request) -> JSONResponse:
        version = _deployment(state, name).pick()
        body = await body_of(request)
        items = body.get("inputs") if isinstance(body, dict) and set(body) == {"inputs"} else body
        if not isinstance(items, list):
            detail = [{"loc": ["body"], "msg": "Expected a JSON list of input objects", "type": "list_type"}]
            raise RequestError(422, detail, version=version.number)
        if len(items) > state.settings.max_batch:
            raise RequestError(
                413,
                f"A batch holds at most {state.settings.max_batch} inputs, got {len(items)}",
                version=version.number,
            )

        async def one(index: int, item: Any) -> dict[str, Any]:
            try:
                inputs = validate_inputs(version, item, where=str(index))
                async with observed(state, version, request.headers, "batch") as run:
                    result = await version.program.acall(**inputs)
                    run.take(result)
                return run.answer(result)
            except RequestError as exc:
                return {"error": {"status": exc.status, **exc.body()}}

        jobs = [lambda i=i, item=item: one(i, item) for i, item in enumerate(items)]
        results = await gather_bounded(jobs, min(max(len(jobs), 1), state.settings.max_concurrency))
        failed = sum(1 for r in results if isinstance(r, dict) and "error" in r)
        return _versioned({"version": version.number, "results": results, "errors": failed}, version.number)

    @protected.post("/programs/{name}/stream", tags=["programs"], include_in_schema=False)
    async def stream_program(name: str, request: Request) -> StreamingResponse:
        version = _deployment(state, name).pick()
        inputs = validate_inputs(version, await body_of(request))
        headers = dict(request.headers)

        async def events() -> AsyncIterator[bytes]:
            ident = 0
            try:
                async with observed(state, version, headers, "stream") as run:
                    yield sse("status", {"kind": "accepted", "data": {"version": version.number}}, ident)
                    final = None
                    async for item in streamify(version.program)(**inputs):
                        ident += 1
                        if isinstance(item, FieldChunk):
                            chunk = {"predictor": item.predictor, "field": item.field, "text": item.text}
                            yield sse("chunk", chunk, ident)
                        elif isinstance(item, StatusEvent):
                            yield sse("status", {"kind": item.kind, "data": item.data}, ident)
                        else:
                            final = item
                    run.take(final)
                    answer = (run, final)
            except RequestError as exc:
                yield sse("error", {"status": exc.status, **exc.body()}, ident + 1)
                return
            run, final = answer
            yield sse("prediction", run.answer(final), ident + 1)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={VERSION_HEADER: str(version.number), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @protected.post("/programs/{name}/deploy", tags=["deploy"])
    async def deploy(name: str, request: DeployRequest) -> JSONResponse:
        """Make a stored version live (or a canary), optionally re-importing its code first.

        In-flight requests finish on the version they started on. When the version cannot be
        built (its code fails to import, or does not accept the stored state), nothing changes
        and the answer (422) says why.
        """
        async with state.deploy_lock(name):
            existing = state.deployments.get(name)
            number: int | str = request.version or (existing.live.number if existing and request.reload else "latest")
            try:
                await asyncio.to_thread(state.store.get_version, name, number)
            except LoadError as exc:
                raise RequestError(404, str(exc)) from None
            build = state.loader.reload if request.reload else state.loader.load
            try:
                version: LoadedVersion = await asyncio.to_thread(build, name, number)
            except LoadError as exc:
                serving = existing.live.number if existing is not None else None
                detail = redact_text(str(exc), server_secrets())
                raise RequestError(422, detail, version=serving, error_type="LoadError") from None
            if existing is None:
                if request.traffic is not None:
                    raise RequestError(409, f"Program {name!r} has no live version yet: deploy one before a canary")
                existing = state.deployments[name] = Deployment(version)
                state.unavailable.pop(name, None)
                message = f"serving v{version.number}"
            elif request.traffic is not None:
                existing.start_canary(version, request.traffic)
                message = (
                    f"canary v{version.number} gets {request.traffic:.0%} of requests; v{existing.live.number} the rest"
                )
            else:
                existing.deploy(version)
                message = f"v{version.number} is live"
            app.openapi_schema = None  # the schemas may have changed
            log.info("Deploy %s: %s (%s)", name, message, version.code)
            body = {"name": name, "message": message, "code": version.code, **_summary(existing)}
            return _versioned(body, existing.live.number)

    @protected.post("/programs/{name}/rollback", tags=["deploy"])
    async def rollback(name: str) -> JSONResponse:
        """End the canary if there is one, else return to the previously live version."""
        deployment = _deployment(state, name)
        async with state.deploy_lock(name):
            message = deployment.rollback()
        app.openapi_schema = None
        log.info("Rollback %s: %s", name, message)
        return _versioned({"name": name, "message": message, **_summary(deployment)}, deployment.live.number)

    app.include_router(protected)
    app.include_router(openai_router(state))
    if manager is not None:
        app.include_router(jobs_router(manager, dependencies=[Depends(require_token)]))
    if mount_console:  # last: the console's pages answer every path the API does not
        from ..console import create_console_app

        app.mount("/", create_console_app(store, lm=lm, guard=False))  # this app's guard checks it
    app.openapi = lambda: _openapi(app, state)  # type: ignore[method-assign]
    return app


def _summary(deployment: Deployment) -> dict[str, Any]:
    return {
        "live": deployment.live.number,
        "canary": deployment.canary.number if deployment.canary is not None else None,
        "traffic": deployment.traffic,
    }


def _openapi(app: FastAPI, state: ServeState) -> dict[str, Any]:
    """The OpenAPI document, with a run/stream/batch path per program and its real schemas."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    paths = document.setdefault("paths", {})
    ref = "#/components/schemas/{model}"

    def register(model: type[pydantic.BaseModel] | None, fallback: str) -> dict[str, Any]:
        if model is None:
            components.setdefault(fallback, {"type": "object", "title": fallback})
            return {"$ref": ref.format(model=fallback)}
        schema = model.model_json_schema(ref_template=ref)
        for key, value in schema.pop("$defs", {}).items():
            components.setdefault(key, value)
        components[model.__name__] = schema
        return {"$ref": ref.format(model=model.__name__)}

    errors = {
        "401": {"description": "Missing or wrong bearer token"},
        "404": {"description": "No such program"},
        "413": {"description": "Body too large"},
        "422": {"description": "Invalid inputs (each bad field listed)"},
        "429": {"description": "Too many requests in flight for this caller (see Retry-After)"},
        "502": {"description": "The LM failed or its answer was not usable"},
    }
    version_header = {VERSION_HEADER: {"description": "The version that answered", "schema": {"type": "integer"}}}
    for name, deployment in sorted(state.deployments.items()):
        interface = deployment.live.interface
        inputs = register(interface.input_model, f"{name}Inputs")
        outputs = register(interface.output_model, f"{name}Outputs")
        answer = {
            "type": "object",
            "properties": {
                "outputs": outputs,
                "version": {"type": "integer"},
                "usage": {"type": "object"},
                "latency": {"type": "number"},
                "trace_id": {"type": "string"},
            },
            "required": ["outputs", "version", "usage", "latency", "trace_id"],
        }
        tag = [f"program {name}"]
        base = f"/programs/{name}"
        paths[f"{base}/run"] = {
            "post": {
                "tags": tag,
                "summary": f"Run {name} (v{deployment.live.number} live)",
                "operationId": f"run_{name}",
                "requestBody": {"required": True, "content": {"application/json": {"schema": inputs}}},
                "responses": {
                    "200": {
                        "description": "The outputs",
                        "headers": version_header,
                        "content": {"application/json": {"schema": answer}},
                    },
                    **errors,
                },
            }
        }
        paths[f"{base}/stream"] = {
            "post": {
                "tags": tag,
                "summary": f"Run {name}, streaming Server-Sent Events",
                "operationId": f"stream_{name}",
                "requestBody": {"required": True, "content": {"application/json": {"schema": inputs}}},
                "responses": {
                    "200": {
                        "description": "events: status, chunk (field pieces), then prediction (or error)",
                        "headers": version_header,
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **errors,
                },
            }
        }
        paths[f"{base}/batch"] = {
            "post": {
                "tags": tag,
                "summary": f"Run {name} on a list of inputs (errors per item)",
                "operationId": f"batch_{name}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "array", "items": inputs}}},
                },
                "responses": {
                    "200": {
                        "description": "One result or error per input, in order",
                        "headers": version_header,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "version": {"type": "integer"},
                                        "errors": {"type": "integer"},
                                        "results": {"type": "array", "items": {"type": "object"}},
                                    },
                                }
                            }
                        },
                    },
                    **errors,
                },
            }
        }
    app.openapi_schema = document
    return document


__all__ = ["Caller", "DeployRequest", "create_app", "sse"]
