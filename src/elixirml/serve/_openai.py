"""The OpenAI-compatible endpoint: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``model`` names a served program. The last user message becomes its inputs: a JSON object of
them, or plain text for a program with one input. The outputs come back as the assistant
message: the value itself for a program with one output, else a JSON object of them. With
``"stream": true`` the answer streams as ``chat.completion.chunk`` events (a one-output
program's text as the LM writes it), then ``data: [DONE]``.

Request options a program cannot honour per call (``temperature``, ``tools``, ...) are refused
with 400 rather than ignored: set them in the program's stored configuration instead.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .._http import json_line, parse_json_body
from ..program import FieldChunk, StatusEvent, streamify
from ._auth import require_token
from ._run import RequestError, observed, request_json, validate_inputs
from ._state import LoadedVersion, ServeState

log = logging.getLogger("elixirml.serve")
VERSION_HEADER = "X-Program-Version"
#: Request keys accepted besides ``model``, ``messages`` and ``stream``; anything else is refused.
ACCEPTED = frozenset({"model", "messages", "stream", "stream_options", "user", "n"})


#: The request body of ``/v1/chat/completions``, as the OpenAPI document shows it.
CHAT_REQUEST: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["model", "messages"],
                "properties": {
                    "model": {"type": "string", "description": "A served program's name"},
                    "messages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                                "content": {"type": "string"},
                            },
                        },
                    },
                    "stream": {"type": "boolean"},
                    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                    "user": {"type": "string"},
                    "n": {"type": "integer", "enum": [1]},
                },
            }
        }
    },
}


def _error(exc: RequestError) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, default=str)
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(exc.status)}, **exc.body()}
    headers = dict(exc.headers)
    if exc.version is not None:
        headers[VERSION_HEADER] = str(exc.version)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content):
            return "".join(parts)
    raise RequestError(400, "Message content must be text (a string, or a list of text parts)")


def chat_inputs(version: LoadedVersion, body: Any) -> dict[str, Any]:
    """The program's inputs from a chat-completions request body.

    Raises:
        RequestError: 400 for a malformed request or an unsupported option, 422 for bad inputs.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object")
    unsupported = sorted(set(body) - ACCEPTED)
    if unsupported:
        raise RequestError(
            400,
            f"Options {unsupported} are not supported by a served program; set them in the program's stored "
            "configuration (this endpoint takes model, messages, stream, stream_options, user).",
            version=version.number,
        )
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or n != 1):
        raise RequestError(400, "n must be 1: a served program gives one answer per request", version=version.number)
    for key, kinds, what in (("stream", (bool,), "true or false"), ("user", (str,), "a string")):
        if body.get(key) is not None and not isinstance(body[key], kinds):
            raise RequestError(400, f"{key} must be {what}, got {type(body[key]).__name__}", version=version.number)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise RequestError(
                400, 'stream_options must be an object {"include_usage": true|false}', version=version.number
            )
        if not isinstance(options.get("include_usage", False), bool):
            raise RequestError(400, "stream_options.include_usage must be true or false", version=version.number)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", version=version.number)
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise RequestError(400, 'each message must be an object with a "role"', version=version.number)
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last is None:
        raise RequestError(400, "messages holds no user message", version=version.number)
    text = _text(last.get("content"))
    names, required = version.interface.input_names, version.interface.required
    try:
        parsed = parse_json_body(text.encode("utf-8"))  # depth-limited, no NaN: as a request body
    except (ValueError, UnicodeEncodeError):
        parsed = None
    if isinstance(parsed, dict) and set(parsed) <= set(names) and set(required) <= set(parsed) and parsed:
        return validate_inputs(version, parsed)
    if len(names) == 1:
        return validate_inputs(version, {names[0]: text})
    raise RequestError(
        422,
        [
            {
                "loc": ["body", "messages", len(messages) - 1, "content"],
                "msg": f"Program {version.name!r} takes inputs {list(names)} (required {list(required)}): send the "
                "last user message as a JSON object of them",
                "type": "value_error",
            }
        ],
        version=version.number,
    )


def _content(version: LoadedVersion, outputs: dict[str, Any]) -> str:
    names = version.interface.output_names or tuple(outputs)
    if len(names) == 1 and names[0] in outputs:
        value = outputs[names[0]]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(outputs, ensure_ascii=False)


def _usage(usage: Any) -> dict[str, int]:
    return {
        "prompt_tokens": int(usage.prompt_tokens),
        "completion_tokens": int(usage.completion_tokens),
        "total_tokens": int(usage.total_tokens),
    }


def _frame(data: Any) -> bytes:
    return f"data: {json_line(data)}\n\n".encode()


def openai_router(state: ServeState) -> APIRouter:
    """The router of ``/v1/chat/completions`` and ``/v1/models`` (bearer token required when set)."""
    router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_token)])

    @router.get("/models")
    async def models() -> dict[str, Any]:
        """The served programs, as OpenAI models."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": int(d.live.loaded_at), "owned_by": "elixirml"}
                for name, d in sorted(state.deployments.items())
            ],
        }

    @router.post("/chat/completions", openapi_extra={"requestBody": CHAT_REQUEST})
    async def chat_completions(request: Request) -> Any:
        """OpenAI's chat completions, answered by the program named in ``model``."""
        try:
            body = await request_json(request)
            name = body.get("model") if isinstance(body, dict) else None
            deployment = state.deployments.get(name) if isinstance(name, str) else None
            if deployment is None:
                raise RequestError(404, f"model must name a served program; served: {sorted(state.deployments)}")
            version = deployment.pick()
            inputs = chat_inputs(version, body)
        except RequestError as exc:
            if exc.status == 422:
                state.reject("invalid")
            return _error(exc)
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        fingerprint = f"{version.name}@v{version.number}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream(state, version, inputs, dict(request.headers), completion_id, created, include_usage),
                media_type="text/event-stream",
                headers={VERSION_HEADER: str(version.number), "Cache-Control": "no-cache"},
            )
        try:
            async with observed(state, version, request.headers, "chat") as run:
                result = await version.program.acall(**inputs)
                outputs = run.take(result)
        except RequestError as exc:
            return _error(exc)
        answer = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": version.name,
            "system_fingerprint": fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _content(version, outputs)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(run.usage),
            "elixirml": {"version": version.number, "trace_id": run.trace_id, "outputs": outputs},
        }
        return JSONResponse(answer, headers={VERSION_HEADER: str(version.number)})

    return router


async def _stream(
    state: ServeState,
    version: LoadedVersion,
    inputs: dict[str, Any],
    headers: dict[str, str],
    completion_id: str,
    created: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` frames: role, content as it is written, the end, usage, ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _frame(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": version.name,
                "system_fingerprint": f"{version.name}@v{version.number}",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
        )

    names, model = version.interface.output_names, version.interface.output_model
    text_output = len(names) == 1 and model is not None and model.model_fields[names[0]].annotation is str
    single = names[0] if text_output else None  # only plain text streams as it is written
    predictors = version.program.predictors()
    last = predictors[-1].signature.__name__ if predictors else None
    yield chunk({"role": "assistant", "content": ""})
    sent, held = "", ""  # text sent so far; trailing whitespace held back (the final value is trimmed)
    try:
        async with observed(state, version, headers, "chat") as run:
            final = None
            async for item in streamify(version.program)(**inputs):
                if isinstance(item, FieldChunk):
                    if single is None or item.field != single or item.predictor != last:
                        continue
                    text = held + item.text
                    if not sent:
                        text = text.lstrip()
                    stripped = text.rstrip()
                    held = text[len(stripped) :]
                    if stripped:
                        sent += stripped
                        yield chunk({"content": stripped})
                elif not isinstance(item, StatusEvent):
                    final = item
            outputs = run.take(final)
            usage = run.usage
    except RequestError as exc:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, default=str)
        yield _frame({"error": {"message": message, "type": "server_error", "code": str(exc.status)}})
        yield b"data: [DONE]\n\n"
        return
    content = _content(version, outputs)
    if content.startswith(sent):
        rest = content[len(sent) :]
        if rest:
            yield chunk({"content": rest})
    else:  # the parsed text is not what streamed (the adapter repaired it): the client is told, not misled
        log.warning("Streamed text of %s differs from its parsed output", version.name)
        yield _frame(
            {
                "error": {
                    "message": f"The answer's parsed text differs from the streamed text; the parsed text: {content}",
                    "type": "server_error",
                    "code": "502",
                }
            }
        )
        yield b"data: [DONE]\n\n"
        return
    yield chunk({}, "stop")
    if include_usage:
        yield _frame(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": version.name,
                "choices": [],
                "usage": _usage(usage),
            }
        )
    yield b"data: [DONE]\n\n"
