"""Core values: :class:`Example` (a data point) and :class:`Prediction` (a module's output)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import pydantic


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set):
        return tuple(sorted(_freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)
    return value


def _plain(value: Any) -> Any:
    """``value`` with nested examples, Pydantic models, lists and dicts made plain (see ``Example.toDict``)."""
    if isinstance(value, Example):
        return value.toDict()
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


#: Fields whose name starts with this are internal (DSPy's datasets add ``dspy_uuid``,
#: ``dspy_split``): kept, but not counted by ``len`` nor listed by ``keys``/``values``/``items``.
INTERNAL_PREFIX = "dspy_"


class Example:
    """A data point: named values, some marked as inputs.

    Values are reachable as attributes (``ex.question``) and as keys (``ex["question"]``).
    ``with_inputs("question")`` returns a copy that marks which keys are inputs;
    :meth:`inputs` and :meth:`labels` split the example along that line.
    """

    __slots__ = ("_input_keys", "_store")
    _store: dict[str, Any]
    _input_keys: frozenset[str] | None

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **kwargs: Any) -> None:
        object.__setattr__(self, "_store", {})
        object.__setattr__(self, "_input_keys", None)
        if isinstance(base, Example):
            self._store.update(base._store)
            object.__setattr__(self, "_input_keys", base._input_keys)
        elif base is not None:
            self._store.update(base)
        self._store.update(kwargs)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {key!r}; fields: {list(self._store)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key in type(self).__slots__ or key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return sum(1 for key in self._store if not key.startswith(INTERNAL_PREFIX))

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def keys(self, include_dspy: bool = False) -> list[str]:
        """The field names.

        Args:
            include_dspy: also list internal fields (named ``dspy_...``, as DSPy's datasets
                write them); they are left out by default, as in DSPy.
        """
        return [k for k in self._store if include_dspy or not k.startswith(INTERNAL_PREFIX)]

    def values(self, include_dspy: bool = False) -> list[Any]:
        """The field values (internal ``dspy_...`` fields only with ``include_dspy``)."""
        return [v for k, v in self._store.items() if include_dspy or not k.startswith(INTERNAL_PREFIX)]

    def items(self, include_dspy: bool = False) -> list[tuple[str, Any]]:
        """The ``(name, value)`` pairs (internal ``dspy_...`` fields only with ``include_dspy``)."""
        return [(k, v) for k, v in self._store.items() if include_dspy or not k.startswith(INTERNAL_PREFIX)]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self._store.get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Example):
            return self._store == other._store and self._input_keys == other._input_keys
        if isinstance(other, dict):  # a plain dict of the same values (what DSPy loads a saved demo as)
            return self._store == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((_freeze(self._store), tuple(sorted(self._input_keys or ()))))

    def __repr__(self) -> str:
        """DSPy's form: ``Example({'q': 'x', 'a': 'y'}) (input_keys={'q'})``, internal ``dspy_...`` fields left out."""
        shown = {k: v for k, v in self._store.items() if not k.startswith(INTERNAL_PREFIX)}
        marks = self._input_keys
        keys = None if marks is None else "{" + ", ".join(repr(k) for k in sorted(marks)) + "}" if marks else "set()"
        return f"{type(self).__name__}({shown!r}) (input_keys={keys})"

    def copy(self, **changes: Any) -> Example:
        """A copy with some values replaced."""
        new = type(self)(self)
        new._store.update(changes)
        return new

    def without(self, *keys: str) -> Example:
        """A copy without the named fields (names it does not have are ignored, as in DSPy)."""
        new = self.copy()
        for key in keys:
            new._store.pop(key, None)
        return new

    def with_inputs(self, *keys: str) -> Example:
        """A copy that marks ``keys`` as the input fields."""
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise KeyError(f"with_inputs: no field(s) {missing} in this example; fields: {list(self._store)}")
        new = self.copy()
        object.__setattr__(new, "_input_keys", frozenset(keys))
        return new

    @property
    def input_keys(self) -> frozenset[str] | None:
        """The keys marked as inputs, or None when :meth:`with_inputs` was not called."""
        return self._input_keys

    def inputs(self) -> Example:
        """An example holding only the input fields."""
        if self._input_keys is None:
            raise ValueError("This example has no inputs marked; call .with_inputs('field', ...) first")
        new = Example({k: v for k, v in self._store.items() if k in self._input_keys})
        object.__setattr__(new, "_input_keys", self._input_keys)
        return new

    def labels(self) -> Example:
        """An example holding every field that is not an input."""
        keys = self._input_keys or frozenset()
        return Example({k: v for k, v in self._store.items() if k not in keys})

    def toDict(self) -> dict[str, Any]:  # noqa: N802 - DSPy's name
        """A plain dict of the values, nested values made plain too (DSPy's ``toDict``).

        Nested examples become dicts, Pydantic models (``History``, ``Image``) their
        ``model_dump()``, inside lists and dicts too, so the result is JSON-ready where the
        values are. :meth:`to_dict` keeps the values as they are.
        """
        return {key: _plain(value) for key, value in self._store.items()}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy of the values."""
        return dict(self._store)


class Completions(Sequence["Prediction"]):
    """The completions of an ``n > 1`` call, read as in DSPy.

    ``completions[i]`` is a :class:`Prediction`; ``completions.answer`` and
    ``completions["answer"]`` list one field over every completion. It compares equal to a
    list of dicts with the same values.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._items = [dict(item) for item in items]

    @overload
    def __getitem__(self, key: int) -> Prediction: ...
    @overload
    def __getitem__(self, key: slice) -> list[Prediction]: ...
    @overload
    def __getitem__(self, key: str) -> list[Any]: ...
    def __getitem__(self, key: int | slice | str) -> Prediction | list[Prediction] | list[Any]:
        if isinstance(key, str):
            if not self._items or any(key not in item for item in self._items):
                raise KeyError(f"{key!r} is not a field of every completion; fields: {self._fields()}")
            return [item[key] for item in self._items]
        if isinstance(key, slice):
            return [Prediction(item) for item in self._items[key]]
        return Prediction(self._items[key])

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"Completions have no field {name!r}; fields: {self._fields()}") from None

    def _fields(self) -> list[str]:
        return list(self._items[0]) if self._items else []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Prediction]:
        return (Prediction(item) for item in self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Completions):
            return self._items == other._items
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self._items) and all(
                isinstance(o, (Mapping, Example)) and dict(o) == item
                for o, item in zip(other, self._items, strict=False)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable contents, like a list

    def __repr__(self) -> str:
        return f"Completions({self._items!r})"


class Prediction(Example):
    """The output of a module: output fields as attributes.

    Attributes:
        completions: when the LM returned several completions (``n > 1``), their output
            values as :class:`Completions` (DSPy's reading: ``completions.answer`` lists every
            answer, ``completions[i]`` is a Prediction); the prediction's own fields are the first.
        usage: token usage of the LM calls that produced it (a dict).
    """

    __slots__ = ("_completions", "_lm_usage", "_trace", "_usage")
    _completions: list[dict[str, Any]] | None
    _usage: dict[str, Any]
    _trace: list[Any] | None
    _lm_usage: dict[str, dict[str, Any]] | None

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **kwargs: Any) -> None:
        super().__init__(base, **kwargs)
        object.__setattr__(self, "_completions", None)
        object.__setattr__(self, "_usage", {})
        object.__setattr__(self, "_trace", None)
        object.__setattr__(self, "_lm_usage", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._store!r})"

    @classmethod
    def from_completions(cls, completions: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> Prediction:
        """Build a prediction whose fields are the first completion's."""
        # Every predictor call builds one (two while tracing): fill the slots directly, bypassing
        # Example.__init__; a slot added to Example or Prediction must be set here too.
        pred = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(pred, "_store", dict(completions[0]) if completions else {})
        setattr_(pred, "_input_keys", None)
        setattr_(pred, "_completions", list(completions))
        setattr_(pred, "_usage", dict(usage) if usage else {})
        setattr_(pred, "_trace", None)
        setattr_(pred, "_lm_usage", None)
        return pred

    @property
    def completions(self) -> Completions:
        """Every completion's output values (one element when ``n == 1``)."""
        return Completions(self._completions if self._completions is not None else [self._store])

    @property
    def usage(self) -> dict[str, Any]:
        """Token usage (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ...)."""
        return self._usage

    @property
    def trace(self) -> list[Any] | None:
        """The predictor calls of the run that produced this prediction (see ``em.inspect_trace``)."""
        return self._trace

    def get_lm_usage(self) -> dict[str, dict[str, Any]] | None:
        """Token usage by model of the module call that returned this prediction (DSPy's shape).

        Set when usage tracking is on (``em.configure(track_usage=True)``), else ``None``:
        ``{"openai/gpt-4o-mini": {"prompt_tokens": ..., "completion_tokens": ..., "total_tokens": ...}}``.
        """
        return self._lm_usage

    def set_lm_usage(self, usage: dict[str, dict[str, Any]] | None) -> None:
        """Record the usage by model that :meth:`get_lm_usage` returns."""
        object.__setattr__(self, "_lm_usage", usage)

    def attach_trace(self, entries: list[Any]) -> None:
        """Record the trace of the run that produced this prediction."""
        object.__setattr__(self, "_trace", list(entries))

    def __float__(self) -> float:
        if "score" in self._store:
            return float(self._store["score"])
        raise TypeError("Prediction has no 'score' field to convert to float")
