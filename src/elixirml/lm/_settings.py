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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(low: float | None = None, high: float | None = None) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        return _is_number(value) and (low is None or value >= low) and (high is None or value <= high)

    if low is not None and high is not None:
        return check, f"a number from {low} to {high}"
    if low is not None:
        return check, f"a number >= {low}"
    return check, "a number"


def _integer(low: int | None = None) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        return _is_int(value) and (low is None or value >= low)

    return check, "an int" if low is None else f"an int >= {low}"


def _stop(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _logprobs(value: Any) -> bool:
    return isinstance(value, bool) or (_is_int(value) and value >= 0)


def _dict_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, dict) for t in value)


def _extra(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


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
    "extra": (_extra, "a dict with str keys"),
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


def merge_settings(
    *,
    forced: Mapping[str, Any] | None = None,
    call: Mapping[str, Any] | None = None,
    bound: Mapping[str, Any] | None = None,
    predictor: Mapping[str, Any] | None = None,
    lm: Mapping[str, Any] | None = None,
    process: Mapping[str, Any] | None = None,
) -> RequestSettings:
    """Merge the layers of request settings into one; a higher layer wins.

    Highest first: ``forced`` (by a wrapper such as BestOfN, Refine or bootstrapping) >
    ``call`` (per-call ``config=``) > ``bound`` (values bound from Variables) > ``predictor``
    (the predictor's own ``config``) > ``lm`` (the LM's defaults) > ``process``
    (``em.configure(...)``). ``None`` values mean "not set" in any layer; ``extra`` dicts
    merge key by key with the same precedence. The layers are not changed; the values are
    not checked (see :func:`check_settings`).

    Returns:
        A new dict of the merged settings.
    """
    merged: dict[str, Any] = {}
    extra: dict[str, Any] | None = None
    for layer in (process, lm, predictor, bound, call, forced):
        if not layer:
            continue
        for key, value in layer.items():
            if value is None:
                continue
            if key == "extra":
                if not isinstance(value, Mapping):
                    raise ConfigurationError(
                        f"request setting 'extra' must be a dict of provider settings, got {truncate(value)}"
                    )
                extra = {} if extra is None else extra
                extra.update((k, v) for k, v in value.items() if v is not None)
            else:
                merged[key] = value
    if extra:
        merged["extra"] = extra
    result: RequestSettings = merged  # type: ignore[assignment]
    return result
