"""Program: a Module with validated inputs/outputs, lifecycle hooks, and a runtime constructor."""

from __future__ import annotations

import contextlib
import copy
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import ConfigurationError, UserError, VariableError
from ..schema import Example, Prediction, Schema, Signature, SignatureMeta
from ..variables import BINDABLE_SETTINGS, Variable
from . import _assertions, _trace
from ._module import Module
from ._predict import Predict


def _validate(schema: Any, values: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if schema is None:
        return dict(values)
    if isinstance(schema, SignatureMeta):
        schema = typing.cast(type[Signature], schema)
        fields = schema.input_fields if kind == "input" else schema.output_fields
        checked = (
            schema.validate_inputs(dict(values))
            if kind == "input"
            else schema.validate_outputs({k: values[k] for k in fields if k in values})
        )
        return {**dict(values), **checked}
    if isinstance(schema, Schema):
        return {**dict(values), **schema.validate(values)}
    raise ConfigurationError(f"A program {kind} schema must be a Signature or em.Schema, got {schema!r}")


class Program(Module):
    """A Module with optional input/output schemas, lifecycle hooks and ``run``/``arun``.

    Class attributes (or constructor arguments) ``input_schema`` and ``output_schema`` take a
    Signature or an :class:`~elixirml.Schema`; inputs are validated before every run and
    outputs after it. Override the hooks to observe or adjust a run:

    - ``before_run(inputs)``: may return replacement inputs.
    - ``after_prediction(predictor, prediction)``: after every predictor call in the run.
    - ``after_run(inputs, output)``: may return a replacement output.
    - ``on_error(error)``: may return a fallback output; return None to let the error propagate.
      Errors in the setup (:class:`~elixirml.errors.UserError` and its kin, a spent budget
      included) never reach it: they propagate.
    """

    input_schema: ClassVar[Any] = None
    output_schema: ClassVar[Any] = None

    def __init__(self, *, input_schema: Any = None, output_schema: Any = None) -> None:
        if input_schema is not None:
            self.__dict__["_input_schema"] = input_schema
        if output_schema is not None:
            self.__dict__["_output_schema"] = output_schema

    # ------------------------------------------------------------------ hooks
    def before_run(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Called with the validated inputs; return a dict to replace them."""
        return None

    def after_prediction(self, predictor: Any, prediction: Prediction) -> None:
        """Called after every predictor call made during a run."""

    def after_run(self, inputs: dict[str, Any], output: Any) -> Any:
        """Called with the output; return a value to replace it."""
        return None

    def on_error(self, error: Exception) -> Any:
        """Called when the run fails; return a fallback output, or None to re-raise.

        Not called for :class:`~elixirml.errors.UserError` (configuration, signature, budget):
        those propagate.
        """
        return None

    # ------------------------------------------------------------------ running
    def _schemas(self) -> tuple[Any, Any]:
        return (
            self.__dict__.get("_input_schema", type(self).input_schema),
            self.__dict__.get("_output_schema", type(self).output_schema),
        )

    def _begin(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        inputs = _validate(self._schemas()[0], kwargs, "input")
        replaced = self.before_run(inputs)
        return replaced if replaced is not None else inputs

    def _end(self, inputs: dict[str, Any], output: Any) -> Any:
        schema = self._schemas()[1]
        if schema is not None:
            values = output.to_dict() if isinstance(output, Example) else output
            if not isinstance(values, Mapping):
                raise ConfigurationError(f"{type(self).__name__} has an output schema but returned {output!r}")
            _validate(schema, values, "output")
        replaced = self.after_run(inputs, output)
        return output if replaced is None else replaced

    def _recover(self, error: Exception) -> Any:
        if isinstance(error, UserError):  # the setup is wrong or a budget is spent: no fallback hides it
            raise error
        fallback = self.on_error(error)
        if fallback is None:
            raise error
        return fallback

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        inputs = self._begin(kwargs)
        with self._bindings_and_listener():
            try:
                output = _assertions.run_with_retries(lambda: self.forward(*args, **inputs))
            except Exception as exc:  # an assertion retry is a BaseException: it never reaches on_error
                output = self._recover(exc)
        return self._end(inputs, output)

    async def _acall_bound(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run asynchronously, with schemas and hooks."""
        inputs = self._begin(kwargs)
        with self._bindings_and_listener():
            try:
                output = await _assertions.arun_with_retries(lambda: self.aforward(*args, **inputs))
            except Exception as exc:  # an assertion retry is a BaseException: it never reaches on_error
                output = self._recover(exc)
        return self._end(inputs, output)

    def _bindings_and_listener(self) -> contextlib.AbstractContextManager[Any]:
        """The scope of a run: bound variables applied, ``after_prediction`` listening."""
        stack = contextlib.ExitStack()
        bound = self._binding_variables()
        if bound:
            stack.enter_context(self._binding_scope(bound))
        stack.enter_context(_trace.listening(self.after_prediction))
        return stack

    def run(self, inputs: Mapping[str, Any]) -> Any:
        """Run on a dict of inputs."""
        return self(**dict(inputs))

    async def arun(self, inputs: Mapping[str, Any]) -> Any:
        """Run on a dict of inputs, asynchronously."""
        return await self.acall(**dict(inputs))

    # ------------------------------------------------------------------ runtime constructor
    @classmethod
    def create(
        cls,
        modules: Mapping[str, Any],
        connections: list[tuple[str, str]] | None = None,
        variables: Mapping[str, Variable] | None = None,
        *,
        input_schema: Any = None,
        output_schema: Any = None,
        name: str = "RuntimeProgram",
    ) -> Program:
        """Build a program from parts, without writing a class.

        Args:
            modules: name -> a Module, or ``(module_variable_name, signature)`` to let a
                ``Variable.module`` in ``variables`` choose the module class.
            connections: ``(before, after)`` pairs fixing the order; values flow between
                modules by field name. Without connections, modules run in the given order.
            variables: name -> Variable; one named like a request setting (``temperature``,
                ``max_tokens``, ``frequency_penalty``, ...) and declared without ``setting=``
                is bound to that setting of every predictor, as if declared with ``setting=name``.
            input_schema: validates inputs (Signature or Schema).
            output_schema: validates outputs.
            name: the class name of the new program.
        """
        attrs: dict[str, Any] = {}
        for key, value in (variables or {}).items():
            if not isinstance(value, Variable):
                raise VariableError(f"variables[{key!r}] must be a Variable, got {value!r}")
            if key in BINDABLE_SETTINGS and value.setting is None and value.kind in ("float", "int", "choice", "bool"):
                value = copy.copy(value)
                value.setting = key
            attrs[key] = value
        new_cls = type(name, (_GraphProgram,), attrs)
        program: Program = new_cls(
            modules=dict(modules),
            connections=list(connections or []),
            input_schema=input_schema,
            output_schema=output_schema,
        )
        return program


def _order(names: list[str], connections: list[tuple[str, str]]) -> list[str]:
    for a, b in connections:
        for end in (a, b):
            if end not in names:
                raise ConfigurationError(f"Connection ({a!r}, {b!r}) names unknown module {end!r}; modules: {names}")
    remaining = list(names)
    order: list[str] = []
    while remaining:
        ready = [n for n in remaining if not any(b == n and a in remaining for a, b in connections)]
        if not ready:
            raise ConfigurationError(f"Connections form a cycle among {remaining}")
        order.append(ready[0])
        remaining.remove(ready[0])
    return order


class _GraphProgram(Program):
    """A program built by :meth:`Program.create`: modules run in connection order."""

    def __init__(
        self,
        *,
        modules: dict[str, Any],
        connections: list[tuple[str, str]],
        input_schema: Any = None,
        output_schema: Any = None,
    ) -> None:
        super().__init__(input_schema=input_schema, output_schema=output_schema)
        built: dict[str, Module] = {}
        for key, spec in modules.items():
            if isinstance(spec, tuple):
                variable_name, signature = spec
                chosen = self.variable_value(variable_name)
                built[key] = chosen(signature)
            elif isinstance(spec, Module):
                built[key] = spec
            else:
                raise ConfigurationError(f"modules[{key!r}] must be a Module or (variable, signature), got {spec!r}")
        self.modules = built
        self.order = _order(list(built), connections)

    async def aforward(self, **inputs: Any) -> Prediction:
        state = dict(inputs)
        for key in self.order:
            module = self.modules[key]
            if isinstance(module, Predict):
                args = {f: state[f] for f in module.signature.input_fields if f in state}
                result = await module.acall(**args)
            else:
                result = await module.acall(**state)
            if isinstance(result, (Example, Mapping)):
                state.update(dict(result.items()))
        return Prediction(state)
