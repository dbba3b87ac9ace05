"""Tools: typed Python functions (sync or async) that LM programs can call.

``@em.tool`` turns a function into an :class:`Tool` with a name, a description (the
docstring), JSON-schema ``parameters`` built from the type hints, and ``examples``. Arguments
from the LM are validated before the call; a validation error, an exception or a timeout
becomes an observation string for the model (see :meth:`Tool.observe`), never a crash.
"""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic

from ..errors import ConfigurationError, ElixirMLError, UserError
from ..runtime import active_callbacks, aobserve_callbacks


class ToolError(ElixirMLError):
    """A tool call failed (bad arguments, an exception in the tool, or a timeout)."""


def _arguments_model(fn: Callable[..., Any], name: str) -> type[pydantic.BaseModel]:
    hints = {}
    try:
        from typing import get_type_hints

        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    return pydantic.create_model(f"{name}_arguments", **fields)


class Tool:
    """A callable tool.

    Args:
        fn: the function (sync or async).
        name: the tool's name (default: the function's).
        description: what it does (default: the docstring).
        examples: example argument dicts, shown to the LM.
        timeout: seconds before a call is abandoned (None: no limit).
        parameters: a JSON schema for the arguments (default: built from the type hints).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        examples: list[dict[str, Any]] | None = None,
        timeout: float | None = 30.0,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"A tool needs a callable, got {fn!r}")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "tool"))
        if not self.name.isidentifier():
            raise ConfigurationError(f"Tool name {self.name!r} must be an identifier")
        self.description = description if description is not None else inspect.cleandoc(fn.__doc__ or "")
        self.examples = list(examples or [])
        self.timeout = timeout
        self._model: type[pydantic.BaseModel] | None = None
        if parameters is None:
            self._model = _arguments_model(fn, self.name)
            schema = self._model.model_json_schema()
            schema.pop("title", None)
            self.parameters: dict[str, Any] = schema
        else:
            self.parameters = parameters
        self._is_async = inspect.iscoroutinefunction(fn)

    def __repr__(self) -> str:
        return f"Tool({self.name})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A tool is a valid value of a ``Tool`` (or ``list[Tool]``) input field, as in DSPy's signatures."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry (native tool calling)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def describe(self) -> str:
        """One line for a text prompt: name, description, argument schema, examples."""
        props = self.parameters.get("properties", {})

        def type_name(spec: dict[str, Any]) -> str:
            if "$ref" in spec:
                return str(spec["$ref"]).rsplit("/", 1)[-1]
            return str(spec.get("type", "any"))

        args = ", ".join(f"{k}: {type_name(v)}" for k, v in props.items())
        text = f"{self.name}({args}): {self.description}"
        if self.examples:
            text += " Examples: " + "; ".join(json.dumps(e) for e in self.examples)
        return text

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check LM-provided arguments against the parameters; raises :class:`ToolError`."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"arguments for {self.name} are not valid JSON: {exc.msg}") from None
        if not isinstance(arguments, dict):
            raise ToolError(f"arguments for {self.name} must be an object, got {type(arguments).__name__}")
        if self._model is None:
            required = self.parameters.get("required", [])
            missing = [k for k in required if k not in arguments]
            if missing:
                raise ToolError(f"{self.name} is missing required argument(s) {missing}")
            return dict(arguments)
        try:
            return self._model.model_validate(arguments).__dict__.copy()
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
            raise ToolError(f"invalid argument {where} for {self.name}: {err.get('msg')}") from None

    async def acall(self, **arguments: Any) -> Any:
        """Validate the arguments and run the tool (raises :class:`ToolError` on failure)."""
        callbacks = active_callbacks()
        if callbacks:
            return await aobserve_callbacks(
                callbacks, "tool", self, {"kwargs": arguments}, lambda: self._run(arguments)
            )
        return await self._run(arguments)

    async def _run(self, arguments: dict[str, Any]) -> Any:
        import asyncio

        values = self.validate(arguments)
        try:
            if self._is_async:
                coro: Awaitable[Any] = self.fn(**values)
            else:
                coro = asyncio.to_thread(self.fn, **values)
            if self.timeout is None:
                return await coro
            async with asyncio.timeout(self.timeout):
                return await coro
        except TimeoutError:
            raise ToolError(f"{self.name} did not finish within {self.timeout}s") from None
        except (ToolError, UserError):  # a spent budget or a setup mistake is not an observation
            raise
        except Exception as exc:
            raise ToolError(f"{self.name} raised {type(exc).__name__}: {exc}") from exc

    def __call__(self, **arguments: Any) -> Any:
        from ..runtime import run_sync

        return run_sync(self.acall(**arguments))

    async def observe(self, arguments: Any) -> tuple[str, bool]:
        """Run with LM-provided arguments; return ``(observation text, ok)`` and never raise."""
        try:
            values = arguments if isinstance(arguments, dict) else self.validate(arguments)
            result = await self.acall(**values)
        except ToolError as exc:
            return f"Error: {exc}", False
        if isinstance(result, str):
            return result, True
        try:
            return json.dumps(result, default=str, ensure_ascii=False), True
        except (TypeError, ValueError):
            return str(result), True

    @classmethod
    def from_mcp(cls, session: Any, tool: Any, *, timeout: float | None = 30.0) -> Tool:
        """Wrap a Model Context Protocol tool.

        Args:
            session: an initialised MCP client session (``mcp.ClientSession``).
            tool: an entry of ``(await session.list_tools()).tools``.
            timeout: seconds per call.
        """
        name = getattr(tool, "name", None)
        if not name:
            raise ConfigurationError(f"Not an MCP tool: {tool!r}")

        async def call(**arguments: Any) -> Any:
            result = await session.call_tool(name, arguments)
            texts = [getattr(block, "text", None) for block in getattr(result, "content", [])]
            text = "\n".join(t for t in texts if t)
            if getattr(result, "isError", False):
                raise ToolError(text or f"MCP tool {name} failed")
            return text

        return cls(
            call,
            name=name,
            description=getattr(tool, "description", "") or "",
            parameters=dict(getattr(tool, "inputSchema", None) or {"type": "object", "properties": {}}),
            timeout=timeout,
        )


def format_error_for_lm(error: BaseException, *, traceback_frames: int = 0) -> str:
    """An exception as text for an LM (DSPy's function of the same name).

    Args:
        error: the exception.
        traceback_frames: 0 gives ``str(error)``; more gives a newline and the traceback, limited to
            that many frames from the innermost (where it was raised), ending with the error's line.
    """
    if traceback_frames <= 0:
        return str(error)
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=-traceback_frames)
    return "\n" + "".join(lines).strip()


def tool_error_observation(name: str, error: ToolError) -> str:
    """The observation ReAct records for a failed tool call, as DSPy words it.

    ``"Execution error in <name>: "`` then, when the tool itself raised, the traceback of its
    exception (the innermost five frames); for bad arguments or a timeout, the reason.
    """
    cause = error.__cause__
    detail = format_error_for_lm(cause, traceback_frames=5) if cause is not None else str(error)
    return f"Execution error in {name}: {detail}"


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    examples: list[dict[str, Any]] | None = None,
    timeout: float | None = 30.0,
) -> Any:
    """Decorator: ``@em.tool`` or ``@em.tool(name=..., timeout=...)`` makes a :class:`Tool`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, examples=examples, timeout=timeout)

    return wrap(fn) if fn is not None else wrap
