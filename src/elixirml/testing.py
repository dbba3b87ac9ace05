"""Test doubles: the scripted LMs and a loopback OpenAI-compatible (and Anthropic-compatible) server.

This is the one home of ElixirML's test doubles. ``DummyLM`` (scripted answers) and ``FunctionLM``
(a Python function answers) are the in-process doubles, also at ``em.DummyLM`` and
``em.FunctionLM``. ``FakeLMServer`` is a real HTTP server for
tests and benchmarks (chat and embeddings).

It listens on 127.0.0.1 only, answers with a function you give it, and injects faults on
request: HTTP 429 with ``Retry-After``, 500 and 503, timeouts (it answers too late),
malformed JSON bodies, empty ``choices``, connection resets, and answers cut off at the token
limit; and a full outage (503 on every request) for a while. Run it in a thread
(``with FakeLMServer() as s``) or as a separate process (``python -m elixirml.testing --latency
0.1``, which prints its URL; ``POST /_control/outage?seconds=3`` starts an outage there).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .lm import DummyLM, FunctionLM

__all__ = [
    "ALL_FAULTS",
    "FAULTS",
    "DummyLM",
    "FakeLMServer",
    "FunctionLM",
    "echo_answer",
    "hashed_embedding",
]
#: The faults drawn by default.
FAULTS = ("429", "500", "503", "timeout", "malformed", "empty")
#: Every fault the server can inject: the defaults, plus ``"reset"`` (the connection is closed
#: without an answer) and ``"truncated"`` (half the answer, with ``finish_reason: "length"``).
ALL_FAULTS = (*FAULTS, "reset", "truncated")


def hashed_embedding(text: str, dim: int = 64) -> list[float]:
    """Default embedding of the fake server: a bag of hashed lower-cased words (texts sharing words are close)."""
    import hashlib

    vector = [0.0] * dim
    for word in text.lower().split():
        word = word.strip(".,;:!?\"'()")
        if word:
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    if not any(vector):
        vector[0] = 1.0
    return vector


def echo_answer(body: dict[str, Any]) -> str:
    """Default answer: the last user message, prefixed with ``echo: ``."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            return f"echo: {content if isinstance(content, str) else json.dumps(content)}"
    return "echo:"


class FakeLMServer:
    """An OpenAI-compatible chat-completions server on loopback, with fault injection.

    Args:
        answer: ``answer(request_body)`` gives the completion text, or a dict
            ``{"content": ..., "tool_calls": [{"name": ..., "arguments": {...}}]}`` for a
            native tool call; a ``"logprobs"`` entry (a list of ``{"token", "logprob",
            "top_logprobs"}``) is returned as the choice's ``logprobs.content``, a
            ``"finish_reason"`` entry replaces ``"stop"``, and a ``"raw"`` entry (a string) is
            sent as the whole response body instead, for malformed-body tests.
        latency: seconds to wait before answering each request.
        failure_rate: probability that a request gets a fault instead of an answer.
        faults: which faults to draw from (see :data:`FAULTS` and :data:`ALL_FAULTS`).
        timeout_delay: how long a ``"timeout"`` fault waits before answering.
        retry_after: the ``Retry-After`` value sent with 429.
        seed: seed of the fault draw.
        stream_chunk: characters per chunk when the client asks for ``stream=True``.
        embed: ``embed(text)`` gives the vector ``/v1/embeddings`` returns for a text
            (default :func:`hashed_embedding`).

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1`` once started.
        requests: every request body received (including those answered with a fault).
        served: how many requests got a real answer.
        fault_counts: how many of each fault were injected (``"outage"`` counts the 503s of
            :meth:`outage`).
        max_in_flight: the most chat requests handled at the same time.
    """

    def __init__(
        self,
        answer: Callable[[dict[str, Any]], Any] = echo_answer,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        timeout_delay: float = 2.0,
        retry_after: str = "0",
        seed: int = 0,
        stream_chunk: int = 4,
        embed: Callable[[str], list[float]] = hashed_embedding,
    ) -> None:
        unknown = set(faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"Unknown fault(s) {sorted(unknown)}; choose from {ALL_FAULTS}")
        self.answer = answer
        self.latency = latency
        self.failure_rate = failure_rate
        self.faults = tuple(faults)
        self.timeout_delay = timeout_delay
        self.retry_after = retry_after
        self.stream_chunk = stream_chunk
        self.embed = embed
        self._rng = random.Random(seed)
        self._outage_until = 0.0
        self.requests: list[dict[str, Any]] = []
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    def outage(self, seconds: float) -> None:
        """Answer every request with HTTP 503 for the next ``seconds`` seconds (a full outage)."""
        self._outage_until = time.monotonic() + seconds

    # ------------------------------------------------------------------ handlers
    def _draw_fault(self) -> str | None:
        if self._outage_until and time.monotonic() < self._outage_until:
            self.fault_counts["outage"] += 1
            return "outage"
        if self.failure_rate and self._rng.random() < self.failure_rate:
            fault = self._rng.choice(self.faults)
            self.fault_counts[fault] += 1
            return fault
        return None

    async def _begin(self, request: Any, kinds: tuple[str, ...]) -> tuple[dict[str, Any], str | None]:
        """Read and record the request, wait the latency, and draw a fault.

        Returns the body and the fault of ``kinds`` to inject (None: answer normally). A
        timeout fault only delays.
        """
        body = await request.json()
        self.requests.append(body)
        fault = self._draw_fault()
        if fault == "timeout":
            await asyncio.sleep(self.timeout_delay)
        await asyncio.sleep(self.latency)
        if fault is not None and fault != "timeout" and fault in kinds:
            return body, fault
        return body, None

    async def _fault_response(self, fault: str) -> Any:
        from aiohttp import web

        if fault == "429":
            return web.json_response(
                {"error": {"message": "rate limited"}}, status=429, headers={"Retry-After": self.retry_after}
            )
        if fault in ("500", "503"):
            return web.json_response({"error": {"message": f"injected {fault}"}}, status=int(fault))
        if fault == "outage":
            return web.json_response({"error": {"message": "injected outage"}}, status=503)
        if fault == "malformed":
            return web.Response(text='{"choices": [', content_type="application/json")
        if fault == "empty":
            return web.json_response({"choices": [], "usage": {}})
        return None

    async def _chat(self, request: Any) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat_inner(request)
        finally:
            self.in_flight -= 1

    async def _chat_inner(self, request: Any) -> Any:
        from aiohttp import web

        body, fault = await self._begin(request, (*ALL_FAULTS, "outage"))
        if fault == "reset":
            request.transport.close()  # the client sees the connection drop, with no answer
            return web.Response()
        if fault is not None and fault != "truncated":
            return await self._fault_response(fault)
        n = int(body.get("n") or 1)
        answers = [self.answer(body) for _ in range(n)]
        if not isinstance(answers[0], str) and "raw" in answers[0]:
            return web.Response(text=answers[0]["raw"], content_type="application/json")
        texts = [a if isinstance(a, str) else str(a.get("content") or "") for a in answers]
        finish = [None if isinstance(a, str) else a.get("finish_reason") for a in answers]
        if fault == "truncated":
            texts = [t[: len(t) // 2] for t in texts]
            finish = ["length"] * len(texts)
        self.served += 1
        if body.get("stream"):
            return await self._stream(request, texts[0])
        choices = []
        for i, answer in enumerate(answers):
            message: dict[str, Any] = {"role": "assistant", "content": texts[i]}
            if not isinstance(answer, str) and answer.get("tool_calls"):
                message["content"] = answer.get("content")
                message["tool_calls"] = [
                    {
                        "id": f"call_{i}_{j}",
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                    }
                    for j, c in enumerate(answer["tool_calls"])
                ]
            choice = {
                "index": i,
                "message": message,
                "finish_reason": finish[i] or ("tool_calls" if "tool_calls" in message else "stop"),
            }
            if not isinstance(answer, str) and answer.get("logprobs") is not None:
                choice["logprobs"] = {"content": answer["logprobs"]}
            choices.append(choice)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "model": body.get("model", "fake"),
                "choices": choices,
                "usage": {
                    "prompt_tokens": sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4,
                    "completion_tokens": sum(len(t) for t in texts) // 4 + 1,
                },
            }
        )

    async def _stream(self, request: Any, text: str) -> Any:
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(text), self.stream_chunk):
            event = {"choices": [{"index": 0, "delta": {"content": text[i : i + self.stream_chunk]}}]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await asyncio.sleep(0)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: Any) -> Any:
        """OpenAI's ``/v1/embeddings`` shape; faults as for chat (a malformed body, 429, 5xx, timeouts)."""
        from aiohttp import web

        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body, fault = await self._begin(request, ("429", "500", "503", "timeout", "outage", "malformed"))
            if fault == "malformed":
                return web.Response(text='{"data": [', content_type="application/json")
            if fault is not None:
                return await self._fault_response(fault)
            inputs = body.get("input")
            texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
            self.served += 1
            return web.json_response(
                {
                    "object": "list",
                    "model": body.get("model", "fake"),
                    "data": [
                        {"object": "embedding", "index": i, "embedding": self.embed(text)}
                        for i, text in enumerate(texts)
                    ],
                    "usage": {"prompt_tokens": sum(len(t) for t in texts) // 4, "total_tokens": 0},
                }
            )
        finally:
            self.in_flight -= 1

    async def _messages(self, request: Any) -> Any:
        """Anthropic Messages API shape, for the Anthropic client's tests."""
        from aiohttp import web

        body, fault = await self._begin(request, ("429", "500", "503", "timeout", "outage"))
        if fault is not None:
            return await self._fault_response(fault)
        messages = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + body["messages"]
        text = self.answer({**body, "messages": messages})
        self.served += 1
        return web.json_response(
            {
                "id": f"msg_{len(self.requests)}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "fake"),
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": max(1, len(text) // 4)},
            }
        )

    async def _control_outage(self, request: Any) -> Any:
        """``POST /_control/outage?seconds=S``: start an outage (for a server in another process)."""
        from aiohttp import web

        self.outage(float(request.query.get("seconds", "0")))
        return web.json_response({"ok": True})

    async def _control_stats(self, request: Any) -> Any:
        """``GET /_control/stats``: requests received, answers served, faults injected."""
        from aiohttp import web

        return web.json_response(
            {"requests": len(self.requests), "served": self.served, "faults": dict(self.fault_counts)}
        )

    # ------------------------------------------------------------------ lifecycle
    async def _start(self, sock: socket.socket) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/_control/outage", self._control_outage)
        app.router.add_get("/_control/stats", self._control_stats)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()

    def start(self) -> FakeLMServer:
        """Start serving on a free loopback port in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-lm-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the fake server in the foreground; prints its base URL on the first line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--answer-json", default=None, help="answer every request with this text")
    args = parser.parse_args(argv)
    fixed = args.answer_json

    server = FakeLMServer(
        (lambda body: fixed) if fixed is not None else echo_answer,
        latency=args.latency,
        failure_rate=args.failure_rate,
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()  # run until the parent closes our stdin
    finally:
        server.stop()


if __name__ == "__main__":
    main()
