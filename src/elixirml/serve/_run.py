"""Running one request on one program version: settings, usage, trace, counters, errors.

Every endpoint (run, stream, batch, chat completions) goes through :func:`observed`, so each
counts, traces and reports errors the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pydantic
from pydantic_core import to_jsonable_python

from .. import errors
from .._http import BODY_KEY, check_output, parse_json_body
from .._secrets import redact_text, server_secrets
from ..lm import track_usage
from ..settings import scoped
from ._state import LoadedVersion, ServeState
from ._tracing import request_trace

log = logging.getLogger("elixirml.serve")


class RequestError(Exception):
    """A request that cannot be served, answered with ``status`` and a JSON body.

    Attributes:
        status: the HTTP status.
        detail: a message, or a list of field errors (FastAPI's shape) for 422.
        version: the version that was asked, when there was one.
        trace_id: the request's trace id, when it got one.
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        detail: Any,
        *,
        version: int | None = None,
        trace_id: str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail, default=str))
        self.status = status
        self.detail = detail
        self.version = version
        self.trace_id = trace_id
        self.error_type = error_type
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        body: dict[str, Any] = {"detail": self.detail}
        if self.error_type is not None:
            body["type"] = self.error_type
        if self.version is not None:
            body["version"] = self.version
        if self.trace_id is not None:
            body["trace_id"] = self.trace_id
        return body


def field_errors(exc: pydantic.ValidationError, where: str = "body") -> list[dict[str, Any]]:
    """Every bad field of a Pydantic error, as FastAPI lists them (``loc``, ``msg``, ``type``, ``input``)."""
    listed = []
    for error in exc.errors(include_url=False, include_context=False):
        listed.append(
            {
                "loc": [where, *error.get("loc", ())],
                "msg": error.get("msg", "invalid"),
                "type": error.get("type", "value_error"),
                "input": to_jsonable_python(error.get("input"), fallback=repr),
            }
        )
    return listed


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (depth-limited, no NaN or Infinity).

    Raises:
        RequestError: 400 when it is not such JSON.
    """
    try:
        return parse_json_body(raw)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None


async def request_json(request: Any) -> Any:
    """A request's JSON body: the one the server's guard parsed, else parsed here (see :func:`parse_json`)."""
    if BODY_KEY in request.scope:
        return request.scope[BODY_KEY]
    return parse_json(await request.body())


def validate_inputs(version: LoadedVersion, body: Any, where: str = "body") -> dict[str, Any]:
    """The program's inputs from a request body.

    Raises:
        RequestError: 422 listing each bad, missing or unknown field.
    """
    if not isinstance(body, dict):
        got = type(body).__name__ if body is not None else "nothing"
        detail = [{"loc": [where], "msg": f"Expected a JSON object of inputs, got {got}", "type": "dict_type"}]
        raise RequestError(422, detail, version=version.number)
    try:
        return version.interface.validate(body)
    except pydantic.ValidationError as exc:
        raise RequestError(422, field_errors(exc, where), version=version.number) from None
    except errors.ValidationError as exc:  # a whole-record rule of the program's input schema
        detail = [{"loc": [where, *([exc.field] if exc.field else [])], "msg": str(exc), "type": "value_error"}]
        raise RequestError(422, detail, version=version.number) from None


def outputs_of(result: Any) -> dict[str, Any]:
    """A program's result as a JSON object of outputs."""
    if hasattr(result, "to_dict"):
        values = result.to_dict()
    elif isinstance(result, Mapping):
        values = dict(result)
    else:
        values = {"output": result}
    jsonable: dict[str, Any] = to_jsonable_python(values, fallback=str)
    return jsonable


def status_of(exc: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status (and headers) that report a program's failure."""
    if isinstance(exc, errors.ProviderTimeoutError):
        return 504, {}
    if isinstance(exc, errors.RateLimitError):
        retry = exc.retry_after
        return 503, ({"Retry-After": str(max(1, round(retry)))} if retry else {})
    if isinstance(exc, errors.CircuitOpenError):
        return 503, {"Retry-After": str(max(1, round(exc.reopens_in)))}
    if isinstance(exc, (errors.ProviderError, errors.OutputError, errors.BatchError)):
        return 502, {}
    return 500, {}


@dataclasses.dataclass
class Observed:
    """One program run being served: its version, trace id, usage and latency."""

    version: LoadedVersion
    trace_id: str
    usage: Any
    started: float
    latency: float = 0.0
    outputs: dict[str, Any] | None = None

    def take(self, result: Any) -> dict[str, Any]:
        """Keep the outputs of ``result`` as JSON, inside the run.

        A value JSON cannot carry (a lone surrogate, NaN) raises :class:`~elixirml.errors.OutputError`,
        which the run reports as 502.
        """
        outputs = outputs_of(result)
        check_output(outputs)
        self.outputs = outputs
        return outputs

    def answer(self, result: Any) -> dict[str, Any]:
        """The JSON answer of a finished run."""
        return {
            "outputs": self.outputs if self.outputs is not None else outputs_of(result),
            "version": self.version.number,
            "usage": self.usage.as_dict(),
            "latency": self.latency,
            "trace_id": self.trace_id,
        }


@contextlib.asynccontextmanager
async def observed(
    state: ServeState, version: LoadedVersion, headers: Mapping[str, str], endpoint: str
) -> AsyncIterator[Observed]:
    """Serve one run of ``version``: under the server's settings, traced, counted.

    A failure of the program is counted and raised as :class:`RequestError` with the status
    that reports it (5xx: the program or its LM failed, not the request). Its message is
    redacted first (the server's own keys, anything shaped like a key): what a provider quotes
    back reaches no client, log or span.
    """
    stats = state.stats_of(version)
    attributes = {
        "elixirml.program.name": version.name,
        "elixirml.program.version": version.number,
        "elixirml.serve.endpoint": endpoint,
    }
    stats.in_flight += 1
    failed = True
    run: Observed | None = None
    try:
        with (
            scoped(state.lm_settings) if state.lm_settings is not None else contextlib.nullcontext(),
            track_usage() as usage,
            request_trace(headers, f"{endpoint} {version.name}", attributes, state.tracer_provider) as trace_id,
        ):
            run = Observed(version, trace_id, usage, time.perf_counter())
            try:
                yield run
            except RequestError:
                raise
            except Exception as exc:
                status, extra = status_of(exc)
                secrets = server_secrets()
                if status == 500:
                    trace = redact_text("".join(traceback.format_exception(exc)), secrets)
                    log.error("Program %r v%s failed:\n%s", version.name, version.number, trace.rstrip())
                # from None: the upstream message reaches no client, log or span but in its redacted form
                raise RequestError(
                    status,
                    redact_text(f"{type(exc).__name__}: {exc}", secrets),
                    version=version.number,
                    trace_id=trace_id,
                    error_type=type(exc).__name__,
                    headers=extra,
                ) from None
            failed = False
    finally:
        stats.in_flight -= 1
        if run is not None:
            run.latency = time.perf_counter() - run.started
            stats.record(run.latency, error=failed, usage=run.usage)
