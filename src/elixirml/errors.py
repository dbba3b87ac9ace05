"""The one error hierarchy of ElixirML.

Every exception the framework raises on purpose derives from :class:`ElixirMLError`.
The hierarchy separates three families, so callers can decide what to do:

```
ElixirMLError
├── UserError                  the caller did something wrong; fix the code or input
│   ├── ConfigurationError     missing/invalid settings (no LM configured, bad option)
│   │   └── OptionError        an option's value is out of its range; also a ValueError, as DSPy raises
│   ├── SignatureError         a signature that cannot be built (syntax, unknown type); also a ValueError
│   │   └── SignatureFieldError a signature class's typed attribute is no InputField()/OutputField(); also a TypeError
│   ├── PositionalInputsError  a predictor was called with positional inputs; also a ValueError and a TypeError
│   ├── MissingDependencyError an optional extra is not installed
│   ├── LoadError              a saved program or state cannot be loaded
│   │   ├── ProgramImportError the module of a saved program's class cannot be imported; also a ModuleNotFoundError
│   │   └── UnsafeLoadError    a load that would run code named in a file lacks consent; also a ValueError
│   ├── VariableError          a variable or configuration is invalid
│   └── BudgetExceededError    an LM call budget (max_lm_calls) is spent
├── ProviderError              the LM provider failed; often transient
│   ├── ProviderTimeoutError   a request exceeded its timeout
│   ├── RateLimitError         the provider said 429
│   ├── ProviderResponseError  a malformed or empty response
│   ├── TruncatedResponseError the answer was cut off (max_tokens reached); never cached
│   └── CircuitOpenError       the endpoint's circuit breaker is open (fail fast)
├── StoreError                 the store's database failed (still busy, conflicting writes, unreachable)
├── BatchError                 more inputs of a batch failed than its max_errors allows
├── MetricError                a metric returned something that is not a finite number; also a ValueError
├── SupervisorError            a supervisor cannot do what was asked (it failed, or is stopping)
├── DistributedError           distributed workers kept dying, or the cluster cannot run the work
└── OutputError                the LM answered, but the answer is not usable
    ├── ValidationError        a value broke a schema rule (field, value, rule named)
    ├── AdapterParseError      a completion could not be parsed (raw text attached)
    └── AssertionFailed        a hard output assertion still failed after its retries
```

Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdapterParseError",
    "AssertionFailed",
    "BatchError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigurationError",
    "ContextWindowExceededError",
    "DistributedError",
    "ElixirMLError",
    "LMUnexpectedError",
    "LoadError",
    "MetricError",
    "MissingDependencyError",
    "OptionError",
    "OutputError",
    "PositionalInputsError",
    "ProgramImportError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RateLimitError",
    "SignatureError",
    "SignatureFieldError",
    "StoreError",
    "SupervisorError",
    "TruncatedResponseError",
    "UnsafeLoadError",
    "UserError",
    "ValidationError",
    "VariableError",
]

_MAX_VALUE_CHARS = 200


def truncate(value: Any, limit: int = _MAX_VALUE_CHARS) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    if len(text) > limit:
        return text[: limit - 15] + f"... ({len(text)} chars)"
    return text


class ElixirMLError(Exception):
    """Base class of every error ElixirML raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message and attributes, not by calling __init__ again (whose
        # signature differs per class): an error raised on a distributed worker crosses to the
        # driver intact.
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type[ElixirMLError], args: tuple[Any, ...], state: dict[str, Any]) -> ElixirMLError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UserError(ElixirMLError):
    """The caller's code or input is wrong; retrying will not help."""


class ConfigurationError(UserError):
    """A setting is missing or invalid (for example no LM is configured)."""


class OptionError(ConfigurationError, ValueError):
    """An option's value is out of its range (a ``ValueError`` too, as DSPy raises for it)."""


class SignatureError(UserError, ValueError):
    """A signature cannot be built from what was given (a ``ValueError`` too, as DSPy raises)."""


class SignatureFieldError(SignatureError, TypeError):
    """A signature class has a typed attribute that is no ``InputField()``/``OutputField()``.

    A ``TypeError`` too, as DSPy raises.
    """


class PositionalInputsError(UserError, ValueError, TypeError):
    """A predictor was called with positional arguments; its inputs are keywords named after the signature's fields.

    A ``ValueError`` too (DSPy raises one) and a ``TypeError`` (Python's error for a call's arguments),
    so either ``except`` catches it.
    """


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed.

    Attributes:
        package: the missing import name.
        extra: the ``elixirml`` extra that installs it.
    """

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'elixirml[{extra}]'"
        )


class LoadError(UserError):
    """A saved program, state or file cannot be loaded."""


class ProgramImportError(LoadError, ModuleNotFoundError):
    """The module of the class a saved program names cannot be imported (a ``ModuleNotFoundError`` too, as in DSPy)."""


class UnsafeLoadError(LoadError, ValueError):
    """A load that would build or import code a file names was asked for without consent (a ``ValueError`` too)."""


class VariableError(UserError):
    """A variable declaration or a configuration of variables is invalid."""


class BudgetExceededError(UserError):
    """An LM call budget set by the caller (``max_lm_calls``) is spent; the call was not sent."""


class ProviderError(ElixirMLError):
    """The LM provider failed to answer.

    Attributes:
        status: the HTTP status when there was one.
        retryable: whether trying again may succeed.
        retry_after: seconds the provider asked us to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderTimeoutError(ProviderError):
    """A request to the provider exceeded its timeout."""


class RateLimitError(ProviderError):
    """The provider refused the request for rate limiting (HTTP 429)."""


class ProviderResponseError(ProviderError):
    """The provider answered with something that is not a usable response."""


class ContextWindowExceededError(ProviderError):
    """The request is longer than the model's context window (DSPy's error of the same name).

    Not retryable as it is: shorten the inputs (ReAct drops its oldest steps and asks again).

    Attributes:
        model: the model, when known.
    """

    def __init__(self, message: str | None = None, *, model: str | None = None) -> None:
        super().__init__(
            message
            or f"The request does not fit {model or 'the model'}'s context window; shorten the inputs or demos.",
            retryable=False,
        )
        self.model = model


class LMUnexpectedError(ProviderError):
    """The LM answered in a way the request did not allow (DSPy's error of the same name).

    For example a structured-output request whose answer has no structure; not retried.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class TruncatedResponseError(ProviderError):
    """The LM's answer was cut off before it ended, so it is incomplete and never cached.

    Raised when the provider reports that generation stopped at the token limit
    (``finish_reason: "length"``) or when an answer ends inside an unfinished JSON value.
    It is retryable: the LM's :class:`~elixirml.runtime.RetryPolicy` tries again (with a
    larger ``max_tokens`` when its ``grow_max_tokens`` says so), and an evaluation records it
    as an error, not as a wrong answer.

    Attributes:
        completion: the cut-off text.
    """

    def __init__(self, message: str, completion: str = "") -> None:
        super().__init__(message, retryable=True)
        self.completion = completion


class CircuitOpenError(ProviderError):
    """The endpoint's circuit breaker is open; the request was not sent."""

    def __init__(self, endpoint: str, reopens_in: float) -> None:
        super().__init__(
            f"Circuit breaker for {endpoint} is open after repeated failures; "
            f"not sending requests for another {reopens_in:.1f}s. "
            "Check the provider, or pass fallbacks=[...] to the LM.",
            retryable=False,
        )
        self.endpoint = endpoint
        self.reopens_in = reopens_in


class StoreError(ElixirMLError):
    """The store's database failed: still busy after retries, a conflicting write, or unreachable.

    Also a store that cannot be used as it is: written by a newer ElixirML, a file that is not
    an SQLite database, a write to a store open read-only. The message says what to do.
    The operation was not applied; what was asked is safe to retry.
    """


class BatchError(ElixirMLError):
    """More inputs of a batch failed than its ``max_errors`` allows (the first failure is the cause)."""


class MetricError(ElixirMLError, ValueError):
    """A metric returned a value that is not a finite number (``None``, NaN, infinity, text).

    It counts as the metric failing on that one example (scored 0, in ``metric_errors``), not
    as a wrong answer and not as a failure of the run.
    """


class SupervisorError(ElixirMLError):
    """A supervisor cannot do what was asked: it failed (its restart intensity was exceeded) or is stopping."""


class DistributedError(ElixirMLError):
    """Distributed work could not finish: its workers kept dying, or the cluster cannot run it."""


class OutputError(ElixirMLError):
    """The LM answered, but its answer cannot be used as it is.

    Attributes:
        usage: the :class:`~elixirml.lm.Usage` of the answer that could not be used, set by the LM
            that received it (None when the error did not come from an LM's answer). A predictor
            that re-asks adds it to the prediction's usage: the answer was paid for.
    """

    usage: Any = None


class ValidationError(OutputError, ValueError):
    """A value broke a schema rule.

    Attributes:
        schema: name of the signature or schema.
        field: the field that failed (``None`` for a whole-object rule).
        value: the offending value.
        rule: the rule that was broken, in words.
        completion: the LM's answer that held the value, when the value came from one.
        attempts: how many answers the LM gave that failed (1 unless the predictor re-asked).
    """

    completion: str | None = None
    attempts: int = 1

    def __init__(self, schema: str, field: str | None, value: Any, rule: str, *, hint: str = "") -> None:
        self.schema = schema
        self.field = field
        self.value = value
        self.rule = rule
        where = f"field {field!r} of {schema}" if field else schema
        super().__init__(f"Invalid value for {where}: {truncate(value)} ({rule})" + (f". {hint}" if hint else ""))


class AdapterParseError(OutputError):
    """A completion could not be parsed into the signature's output fields.

    Attributes:
        adapter: the adapter's name.
        signature: the signature's name.
        completion: the raw completion text.
        attempts: how many answers the LM gave that failed (1 unless the predictor re-asked).
    """

    attempts: int = 1

    def __init__(self, adapter: str, signature: str, completion: str, reason: str, *, hint: str = "") -> None:
        self.adapter = adapter
        self.signature = signature
        self.completion = completion
        self.reason = reason
        super().__init__(
            f"{adapter} could not parse the LM's answer for {signature}: {reason}. "
            + (f"{hint} " if hint else "")
            + f"Raw completion: {truncate(completion, 400)}"
        )


class AssertionFailed(OutputError):
    """A hard output assertion still failed after all its retries.

    Attributes:
        message: the assertion's message.
        attempts: every attempt's output, oldest first.
    """

    def __init__(self, message: str, attempts: list[Any] | None = None) -> None:
        self.message = message
        self.attempts = list(attempts or [])
        super().__init__(f"Output assertion failed after {len(self.attempts)} attempt(s): {message}")
