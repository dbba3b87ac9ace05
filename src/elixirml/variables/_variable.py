"""Variables: any parameter of a program, declared so that optimizers can search it.

Declare variables as class attributes of a :class:`~elixirml.Module` (or ``Program``)::

    class QAProgram(em.Program):
        temperature = em.Variable.float(default=0.7, low=0.0, high=2.0)
        strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

On an instance, the attribute gives the current value (for a module or LM variable: the
chosen class or LM). ``program.variable_space()`` lists every variable of the program, its
sub-modules and its predictors; ``program.with_variables(...)`` builds a configured copy.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import VariableError
from ..lm import SETTING_NAMES

#: Request settings a Variable can be bound to with ``setting=``.
BINDABLE_SETTINGS = SETTING_NAMES - {"cache", "extra", "rollout_id"}

KINDS = ("float", "int", "choice", "bool", "text", "module", "lm", "composite", "demos")


class Variable:
    """A declared, searchable parameter. Build one with the class methods (``Variable.float`` ...).

    Attributes:
        kind: one of ``float``, ``int``, ``choice``, ``bool``, ``text``, ``module``, ``lm``,
            ``composite`` (derived from others) or ``demos`` (a predictor's demonstrations).
        name: the local name (set when declared as a class attribute).
        default: the default value (for ``module``/``lm``: the option key).
        low, high, log, step: numeric bounds and scale.
        options: allowed values (``choice``), or key -> class/LM (``module``/``lm``).
        candidates: for ``text``: known alternatives an optimizer may try.
        active_when: ``{other_variable: value}``; the variable only applies when all hold.
        depends: for ``composite``: the variables its function reads.
        description: words for humans and proposal LMs.
        metadata: free-form user data.
        hints: optimization hints (for example ``{"prior": 0.2}``).
        setting: the request setting this variable sets (``"temperature"``, ``"max_tokens"``, ...):
            its value reaches every request of the predictors it targets, with no ``config=``
            passed by hand (see "How settings flow" in docs/variables.md).
        targets: which predictors a bound variable applies to: names of sub-modules of the
            module that declares it (``["answer"]``; every predictor inside a named sub-module).
            Default for a ``setting=`` variable: every predictor of the declaring module. An
            ``lm`` variable binds only when given targets (``"*"`` for every predictor).
    """

    def __init__(
        self,
        kind: str,
        default: Any = None,
        *,
        low: float | None = None,
        high: float | None = None,
        log: bool = False,
        step: float | None = None,
        options: Any = None,
        candidates: list[str] | None = None,
        active_when: Mapping[str, Any] | None = None,
        depends: list[str] | None = None,
        derive: Callable[..., Any] | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        hints: Mapping[str, Any] | None = None,
        name: str = "",
        setting: str | None = None,
        targets: Sequence[str] | str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise VariableError(f"Unknown variable kind {kind!r}; kinds: {KINDS}")
        self.setting = setting
        self.targets: tuple[str, ...] | None = _targets(targets)
        self.kind = kind
        self.name = name
        self.low = low
        self.high = high
        self.log = log
        self.step = step
        self.options = options
        self.candidates = list(candidates or [])
        self.active_when = dict(active_when or {})
        self.depends = list(depends or [])
        self.derive = derive
        self.description = description
        self.metadata = dict(metadata or {})
        self.hints = dict(hints or {})
        self._check_declaration()
        self.default = self.validate(default) if kind not in ("composite", "demos") else default

    # ------------------------------------------------------------------ constructors
    @classmethod
    def float(
        cls, default: float, low: float, high: float, *, log: bool = False, step: float | None = None, **kw: Any
    ) -> Variable:
        """A real number in ``[low, high]`` (``log=True`` searches on a log scale)."""
        return cls("float", default, low=low, high=high, log=log, step=step, **kw)

    @classmethod
    def int(cls, default: int, low: int, high: int, *, log: bool = False, step: int = 1, **kw: Any) -> Variable:
        """An integer in ``[low, high]``."""
        return cls("int", default, low=low, high=high, log=log, step=step, **kw)

    @classmethod
    def choice(cls, options: list[Any], default: Any = None, **kw: Any) -> Variable:
        """One of ``options`` (JSON-ready values); default: the first."""
        if not options:
            raise VariableError("Variable.choice needs at least one option")
        return cls("choice", options[0] if default is None else default, options=list(options), **kw)

    @classmethod
    def bool(cls, default: bool = False, **kw: Any) -> Variable:
        """True or False."""
        return cls("bool", default, **kw)

    @classmethod
    def text(cls, default: str, *, candidates: list[str] | None = None, **kw: Any) -> Variable:
        """A piece of text: an instruction or a prompt fragment."""
        return cls("text", default, candidates=candidates, **kw)

    @classmethod
    def module(cls, options: Mapping[str, Any], default: str | None = None, **kw: Any) -> Variable:
        """A choice of module, e.g. ``{"direct": em.Predict, "cot": em.ChainOfThought}``.

        The instance attribute gives the chosen option; call it with a signature to build the
        module (``self.strategy(QA)``). Each option is built from a signature alone: a module
        class that needs more (``em.ReAct`` needs its ``tools``) is offered with those arguments
        bound, ``functools.partial(em.ReAct, tools=[search], max_iters=3)``, or as any callable
        that takes the signature and returns a module. An option that cannot be built from a
        signature alone is refused here, naming what it needs.
        """
        if not options:
            raise VariableError("Variable.module needs at least one option")
        for key, option in options.items():
            _check_module_option(key, option, kw.get("name", ""))
        return cls("module", next(iter(options)) if default is None else default, options=dict(options), **kw)

    @classmethod
    def lm(cls, options: Mapping[str, Any], default: str | None = None, **kw: Any) -> Variable:
        """A choice of LM, e.g. ``{"local": em.LM("local"), "big": em.LM("openai/...")}``."""
        if not options:
            raise VariableError("Variable.lm needs at least one option")
        return cls("lm", next(iter(options)) if default is None else default, options=dict(options), **kw)

    @classmethod
    def composite(cls, derive: Callable[..., Any], depends: list[str], **kw: Any) -> Variable:
        """A value derived from other variables: ``derive(**{name: value for name in depends})``."""
        if not depends:
            raise VariableError("Variable.composite needs the names it depends on")
        return cls("composite", None, derive=derive, depends=depends, **kw)

    # ------------------------------------------------------------------ declaration
    def _check_declaration(self) -> None:
        if self.kind in ("float", "int"):
            if self.low is None or self.high is None or self.low > self.high:
                raise VariableError(f"{self._label()}: needs low <= high, got low={self.low}, high={self.high}")
            if self.log and self.low <= 0:
                raise VariableError(f"{self._label()}: a log-scale variable needs low > 0")
        if self.kind in ("module", "lm") and not isinstance(self.options, dict):
            raise VariableError(f"{self._label()}: options must be a dict of name -> {self.kind}")
        if self.setting is not None:
            if self.kind not in ("float", "int", "choice", "bool", "composite"):
                raise VariableError(
                    f"{self._label()}: setting= binds a number, choice, bool or composite variable to a request "
                    f"setting; a {self.kind} variable cannot set {self.setting!r}"
                    + (" (an lm variable binds with targets=[...])" if self.kind == "lm" else "")
                )
            if self.setting not in BINDABLE_SETTINGS:
                raise VariableError(
                    f"{self._label()}: setting={self.setting!r} is not a request setting; "
                    f"use one of {sorted(BINDABLE_SETTINGS)}"
                )
        elif self.targets is not None and self.kind != "lm":
            raise VariableError(
                f"{self._label()}: targets= needs setting=... (which request setting to apply to the targets)"
            )

    @property
    def binds(self) -> builtins.bool:
        """Whether the variable's value is applied to predictors by binding (``setting=`` or an lm with targets)."""
        return self.setting is not None or (self.kind == "lm" and self.targets is not None)

    def _label(self) -> str:
        return f"Variable {self.name!r}" if self.name else f"{self.kind} variable"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        extra = ""
        if self.kind in ("float", "int"):
            extra = f", low={self.low}, high={self.high}" + (", log=True" if self.log else "")
        elif self.kind in ("choice", "module", "lm"):
            extra = f", options={list(self.options)}"
        if self.setting is not None:
            extra += f", setting={self.setting!r}"
        if self.targets is not None:
            extra += f", targets={list(self.targets)}"
        return f"Variable.{self.kind}({self.name or '?'}, default={self.default!r}{extra})"

    # ------------------------------------------------------------------ values
    def validate(self, value: Any) -> Any:
        """Check ``value`` and return it normalised; raises :class:`VariableError` naming the variable."""
        kind = self.kind
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise VariableError(f"{self._label()}: expected a number, got {value!r}")
            value = float(value)
            assert self.low is not None and self.high is not None
            if not self.low <= value <= self.high:
                raise VariableError(f"{self._label()}: {value} is out of range [{self.low}, {self.high}]")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise VariableError(f"{self._label()}: expected an integer, got {value!r}")
            assert self.low is not None and self.high is not None
            if not self.low <= value <= self.high:
                raise VariableError(f"{self._label()}: {value} is out of range [{self.low}, {self.high}]")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise VariableError(f"{self._label()}: expected True or False, got {value!r}")
            return value
        if kind == "text":
            if not isinstance(value, str):
                raise VariableError(f"{self._label()}: expected text, got {value!r}")
            return value
        if kind == "choice":
            if value not in self.options:
                raise VariableError(f"{self._label()}: {value!r} is not one of {self.options}")
            return value
        if kind in ("module", "lm"):
            if isinstance(value, str) and value in self.options:
                return value
            for key, option in self.options.items():  # accept the object itself
                if option is value:
                    return key
            if kind == "module":  # or the class an option binds arguments of: partial(em.ReAct, tools=[...])
                bound = [k for k, o in self.options.items() if isinstance(o, functools.partial) and o.func is value]
                if len(bound) == 1:
                    return bound[0]
            raise VariableError(f"{self._label()}: {value!r} is not one of {list(self.options)}")
        if kind == "demos":
            if not isinstance(value, (list, tuple)):
                raise VariableError(f"{self._label()}: expected a list of demos, got {type(value).__name__}")
            return list(value)
        raise VariableError(f"{self._label()}: a composite variable is derived, it cannot be set")

    def resolve(self, value: Any) -> Any:
        """The object a stored value stands for (the class or LM for module/lm variables)."""
        if self.kind in ("module", "lm"):
            return self.options[value]
        return value

    def sample(self, rng: random.Random) -> Any:
        """A random valid value."""
        kind = self.kind
        if kind in ("float", "int"):
            assert self.low is not None and self.high is not None
            if self.log:
                x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            else:
                x = rng.uniform(self.low, self.high)
            if self.step:
                x = self.low + round((x - self.low) / self.step) * self.step
            x = min(max(x, self.low), self.high)
            return round(x) if kind == "int" else x
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "choice":
            return rng.choice(self.options)
        if kind in ("module", "lm"):
            return rng.choice(list(self.options))
        if kind == "text":
            return rng.choice([self.default, *self.candidates])
        return self.default

    def encoding(self) -> dict[str, Any]:
        """How an optimizer should treat this variable: numeric, categorical or text."""
        if self.kind in ("float", "int"):
            return {
                "type": "numeric",
                "low": self.low,
                "high": self.high,
                "log": self.log,
                "step": self.step,
                "integer": self.kind == "int",
            }
        if self.kind == "bool":
            return {"type": "categorical", "choices": [False, True]}
        if self.kind == "choice":
            return {"type": "categorical", "choices": list(self.options)}
        if self.kind in ("module", "lm"):
            return {"type": "categorical", "choices": list(self.options)}
        if self.kind == "text":
            return {"type": "text", "candidates": [self.default, *self.candidates]}
        if self.kind == "demos":
            return {"type": "demos"}
        return {"type": "derived"}

    @property
    def searchable(self) -> builtins.bool:
        """Whether optimizers choose its value (composite variables are derived instead)."""
        return self.kind != "composite"

    # ------------------------------------------------------------------ descriptor
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance.variable_value(self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        instance._config[self.name] = self.validate(value)


def _check_module_option(key: str, option: Any, name: str) -> None:
    """Refuse a module option that cannot be built from a signature alone, naming what it needs."""
    label = f"Variable {name!r}" if name else "Variable.module"
    if not callable(option):
        raise VariableError(
            f"{label}: option {key!r} is {option!r}; an option is a module class or a callable that "
            "builds a module from a signature"
        )
    try:
        call = inspect.signature(option)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    try:
        call.bind(object())
    except TypeError:
        missing = [
            p.name
            for p in list(call.parameters.values())[1:]
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        target = option.func if isinstance(option, functools.partial) else option
        shown = getattr(target, "__qualname__", repr(target))
        needs = f"it also needs {', '.join(missing)}" if missing else "it does not take a signature as its one argument"
        example = ", ".join(f"{m}=..." for m in missing) or "..."
        raise VariableError(
            f"{label}: option {key!r} ({shown}) cannot be built from a signature alone: {needs}. "
            f"Offer it with its arguments bound: functools.partial({shown}, {example})"
        ) from None


def _targets(targets: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if targets is None:
        return None
    names = (targets,) if isinstance(targets, str) else tuple(targets)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise VariableError(f"targets= takes sub-module names (or '*' for every predictor), got {targets!r}")
    return names


def class_variables(cls: type) -> Iterator[tuple[str, Variable]]:
    """Variables declared as class attributes of ``cls`` and its bases (subclass wins)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, Variable) and name not in seen:
                seen.add(name)
                yield name, value
