"""Typed request settings: what they are, how they are checked, and the one merge of their layers.

A request's settings come from up to six layers. :func:`merge_settings` applies them, highest
first:

=========  ==========================================================  ====================
priority   layer                                                       set by
=========  ==========================================================  ====================
1          ``forced``: values a wrapper must control                   BestOfN, Refine,
                                                                       bootstrapping
2          ``call``: the per-call ``config=``                          ``predict(config=)``
3          ``bound``: values bound from Variables (``setting=``)       a Program's Variables
4          ``predictor``: the predictor's own ``config``               ``Predict(config=)``
5          ``lm``: the LM's defaults                                   ``em.LM(temperature=)``
6          ``process``: process settings                               ``em.configure(max_tokens=)``
=========  ==========================================================  ====================

``None`` means "not set" in every layer. The ``extra`` dicts (provider-specific settings)
merge key by key with the same precedence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from ..errors import ConfigurationError, truncate


class RequestSettings(TypedDict, total=False):
    """The settings a request can carry. Every key is optional.

    ``extra`` holds provider-specific settings (llama.cpp's ``min_p``, ``repeat_penalty``, ...),
    passed only to providers that declare them. ``cache`` and ``rollout_id`` are request
    options that are never sent to the provider: ``cache`` selects the cache (or ``False``),
    ``rollout_id`` is part of the cache key, so a new id asks the model again.
    """

    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    stop: str | list[str]
    seed: int
    n: int
    presence_penalty: float
    frequency_penalty: float
    logprobs: bool | int
    top_logprobs: int
    response_format: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    extra: dict[str, Any]
    cache: Any
    rollout_id: int | str


#: Every request setting's name.
SETTING_NAMES: frozenset[str] = frozenset(RequestSettings.__optional_keys__)

#: Request options that never reach the provider (every LM honours them itself).
UNSENT_SETTINGS: frozenset[str] = frozenset({"cache", "rollout_id"})

#: The settings a provider may declare in ``supported_settings`` (``extra`` is checked by name
#: against ``supported_extras`` instead).
PROVIDER_SETTINGS: frozenset[str] = SETTING_NAMES - UNSENT_SETTINGS - {"extra"}


#: Names an ``extra`` dict may never carry: the request's own fields, which an extra would overwrite.
RESERVED_EXTRAS: frozenset[str] = frozenset({"model", "messages", "stream"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(low: float | None = None, high: float | None = None) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:  # one call per value of every request: the common types first, inline
        if type(value) is not float and type(value) is not int and not _is_number(value):
            return False
        return math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)

    if low is not None and high is not None:
        return check, f"a number from {low} to {high}"
    if low is not None:
        return check, f"a number >= {low}"
    return check, "a number"


def _integer(low: int | None = None) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        return (type(value) is int or _is_int(value)) and (low is None or value >= low)

    return check, "an int" if low is None else f"an int >= {low}"


def _stop(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _logprobs(value: Any) -> bool:
    return isinstance(value, bool) or (_is_int(value) and value >= 0)


def _dict_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, dict) for t in value)


def _extra(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value) and RESERVED_EXTRAS.isdisjoint(value)


def _rollout_id(value: Any) -> bool:
    return isinstance(value, str) or _is_int(value)


# Each setting's check and the words that say what it must be.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": _number(0),
    "top_p": _number(0, 1),
    "top_k": _integer(0),
    "max_tokens": _integer(1),
    "stop": (_stop, "a str or a list of str"),
    "seed": _integer(),
    "n": _integer(1),
    "presence_penalty": _number(),
    "frequency_penalty": _number(),
    "logprobs": (_logprobs, "a bool, or an int >= 0 (how many alternatives per token)"),
    "top_logprobs": _integer(0),
    "response_format": (lambda v: isinstance(v, dict), "a dict"),
    "tools": (_dict_list, "a list of dicts (tool schemas)"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a str or a dict"),
    "extra": (_extra, "a dict with str keys, none of them 'model', 'messages' or 'stream' (the request's own fields)"),
    "cache": (lambda v: True, "anything"),
    "rollout_id": (_rollout_id, "an int or a str"),
}
assert set(_RULES) == SETTING_NAMES


def check_settings(
    values: Mapping[str, Any], *, where: str, error: type[Exception] = ConfigurationError
) -> RequestSettings:
    """Check request settings and return them as a new :class:`RequestSettings` (``None`` values dropped).

    Every key must be a known setting and every value of its type (``bool`` is not a number;
    ``max_tokens >= 1``, ``n >= 1``, ``temperature >= 0``, ``0 <= top_p <= 1``, ...). A tuple
    of stop strings becomes a list.

    Args:
        values: the settings to check.
        where: where they come from, for the message (e.g. ``"config of Predict(QA)"``).
        error: the exception class to raise (``LoadError`` for settings read from files).

    Raises:
        error: naming the setting, its value, what it must be, and ``where``.
    """
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        rule = _RULES.get(key)
        if rule is None:
            raise error(
                f"{where}: unknown request setting {key!r} (value {truncate(value)}). Known settings: "
                f"{', '.join(sorted(SETTING_NAMES))}. Put provider-specific settings in extra={{...}}."
            )
        if key == "stop" and isinstance(value, tuple):
            value = list(value)
        check, expected = rule
        if not check(value):
            raise error(
                f"{where}: request setting {key!r} must be {expected}, got {truncate(value)} "
                f"({type(value).__name__}). Fix the value or leave the setting out."
            )
        if key == "extra":
            value = {k: v for k, v in value.items() if v is not None}
            if not value:
                continue
        checked[key] = value
    result: RequestSettings = checked  # type: ignore[assignment]
    return result


# Settings the merge treats apart: extra merges key by key, logprobs=N has one form, stop may be a tuple.
_SPECIAL = frozenset({"extra", "logprobs", "stop"})

#: How each layer is named in an error message (highest first, as they apply).
LAYER_NAMES: dict[str, str] = {
    "forced": "settings forced by a wrapper (BestOfN, Refine, bootstrapping)",
    "call": "per-call settings (config= of the call, or lm.request(**settings))",
    "bound": "settings bound from Variables (setting=...)",
    "predictor": "the predictor's config",
    "lm": "the LM's defaults",
    "process": "process settings (em.configure)",
}


# The layers in the order merge_settings applies them (lowest first; a later one wins).
_LAYER_ORDER = ("process", "lm", "predictor", "bound", "call", "forced")


class MergedSettings(dict[str, Any]):
    """The settings :func:`merge_settings` returns: every layer applied and checked.

    An LM given these (``lm.arequest(messages, settings=merged)``) sends them as they are,
    without merging its layers again; a plain dict there is merged as the per-call layer.
    """

    __slots__ = ("checked_for",)

    #: The LM whose provider these settings were checked against (None: not checked for one).
    checked_for: Any


def _refuse_value(key: str, value: Any, name: str, owner: Any) -> None:
    """Raise the error for a value its rule refuses (a tuple of stop strings passes)."""
    if key == "stop" and isinstance(value, tuple) and _stop(list(value)):
        return
    check_settings({key: value}, where=_where(name, owner))  # raises with the message


def _check_logprobs(layer: Mapping[str, Any], name: str, owner: Any) -> None:
    """``logprobs=N`` (or ``False``) with a different ``top_logprobs`` in one layer is refused."""
    logprobs = layer.get("logprobs")
    top = layer.get("top_logprobs")
    if (
        top is not None
        and logprobs is not None
        and (logprobs is False or (not isinstance(logprobs, bool) and logprobs != top))
    ):
        raise ConfigurationError(
            f"{_where(name, owner)}: logprobs={logprobs!r} and top_logprobs={top!r} disagree (an int logprobs "
            "is how many alternatives per token, as top_logprobs). Pass logprobs=True with top_logprobs=N, "
            "or logprobs=N alone."
        )


def _where(name: str, owner: Any) -> str:
    return f"{owner!r}: {LAYER_NAMES[name]}" if owner is not None else LAYER_NAMES[name]


def merge_settings(
    *,
    forced: Mapping[str, Any] | None = None,
    call: Mapping[str, Any] | None = None,
    bound: Mapping[str, Any] | None = None,
    predictor: Mapping[str, Any] | None = None,
    lm: Mapping[str, Any] | None = None,
    process: Mapping[str, Any] | None = None,
    check: bool = True,
    supported: Callable[..., None] | None = None,
    owner: Any = None,
) -> RequestSettings:
    """Check the layers of request settings and merge them into one; a higher layer wins.

    Highest first: ``forced`` (by a wrapper such as BestOfN, Refine or bootstrapping) >
    ``call`` (per-call ``config=``, or ``lm.request(**settings)``) > ``bound`` (values bound
    from Variables) > ``predictor`` (the predictor's own ``config``) > ``lm`` (the LM's
    defaults) > ``process`` (``em.configure(...)``). ``None`` values mean "not set" in any
    layer; ``extra`` dicts merge key by key with the same precedence. ``logprobs=N`` (an int)
    means ``logprobs=True, top_logprobs=N``; the merged settings carry that one form, and
    ``logprobs=False`` drops ``top_logprobs`` set by a lower layer. The layers are not changed.

    Args:
        forced: see above (and ``call``, ``bound``, ``predictor``, ``lm``, ``process``).
        call: the per-call layer.
        bound: the layer bound from Variables.
        predictor: the predictor's own layer.
        lm: the LM's defaults.
        process: the process settings.
        check: check every layer (as :func:`check_settings` does, and more: ``extra`` may not
            set ``model``, ``messages`` or ``stream``, and ``logprobs=N`` with a different
            ``top_logprobs`` is refused).
        supported: called on the merged settings (an LM's :meth:`~elixirml.lm.LM.check_supported`);
            when it raises, it is called on each layer with ``where=`` naming it, so the error
            names the layer that holds the setting.
        owner: named in error messages (the predictor or the LM), with the layer.

    Returns:
        A new :class:`MergedSettings`.

    Raises:
        ConfigurationError: a value that is not valid, naming the setting, the value and the layer.
    """
    merged = MergedSettings()
    extra: dict[str, Any] | None = None
    layers = (process, lm, predictor, bound, call, forced)  # lowest first, named by _LAYER_ORDER
    for index, layer in enumerate(layers):
        if not layer:
            continue
        name = _LAYER_ORDER[index]
        if check and type(layer) is not dict and not isinstance(layer, Mapping):  # dict first: the ABC check is slow
            raise ConfigurationError(
                f"{_where(name, owner)} must be a dict of request settings, e.g. {{'temperature': 0.2}}; "
                f"got {truncate(layer)} ({type(layer).__name__})"
            )
        for key, value in layer.items():
            if value is None:
                continue
            if check:
                rule = _RULES.get(key)
                if rule is None or not rule[0](value):
                    _refuse_value(key, value, name, owner)
            if key not in _SPECIAL:
                merged[key] = value
            elif key == "extra":
                if type(value) is not dict and not isinstance(value, Mapping):
                    raise ConfigurationError(
                        f"request setting 'extra' must be a dict of provider settings, got {truncate(value)}"
                    )
                extra = {} if extra is None else extra
                extra.update((k, v) for k, v in value.items() if v is not None)
            elif key == "logprobs":
                if value is False:
                    merged.pop("top_logprobs", None)
                    merged["logprobs"] = False
                elif value is True:
                    merged["logprobs"] = True
                else:
                    merged["logprobs"] = True
                    merged["top_logprobs"] = value
            elif isinstance(value, tuple):  # stop
                merged["stop"] = list(value)
            else:
                merged["stop"] = value
        if check and "top_logprobs" in layer:
            _check_logprobs(layer, name, owner)
    if extra:
        merged["extra"] = extra
    if supported is not None:
        try:
            supported(merged)
        except ConfigurationError:
            # name the layer that holds what the provider cannot honour (only on the error path)
            for name, layer in zip(_LAYER_ORDER, layers):
                if layer:
                    supported(layer, where=_where(name, owner))
            raise
    result: RequestSettings = merged  # type: ignore[assignment]
    return result
