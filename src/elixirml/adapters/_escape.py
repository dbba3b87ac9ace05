"""Input values never create sections: what each adapter does to the markers inside them.

An input value is data. When it contains the adapter's own section syntax (a
``[[ ## answer ## ]]`` marker, an ``<answer>`` tag, an ``answer:`` line), the prompt would show
a section the program never wrote, and an LM that repeats it would have it parsed as its answer.
Each function here breaks that syntax visibly and minimally (only text that would parse as a
section changes), so ordinary inputs reach the LM exactly as they were.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# Whatever the chat parser reads as a marker starts with "[[" then "#" (spacing and case vary).
_MARKER_START_RE = re.compile(r"\[\[(?=\s*#)")


def escape_markers(text: str) -> str:
    """Break every ``[[ ## name ## ]]`` marker in ``text`` (``[[`` becomes ``[ [``)."""
    if "[[" not in text:
        return text
    return _MARKER_START_RE.sub("[ [", text)


@functools.lru_cache(maxsize=256)
def _tag_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"<(/?\s*(?:{alternatives})\s*)>", re.IGNORECASE)


def escape_tags(text: str, names: Iterable[str]) -> str:
    """Break every ``<name>`` / ``</name>`` tag of a field in ``text`` (``<`` becomes ``&lt;``)."""
    if "<" not in text:
        return text
    return _tag_pattern(tuple(names)).sub(r"&lt;\1>", text)


@functools.lru_cache(maxsize=256)
def _label_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"^(?=[ \t]*[*`_]*(?:{alternatives})[*`_]*[ \t]*:)", re.IGNORECASE | re.MULTILINE)


def escape_labels(text: str, names: Iterable[str]) -> str:
    """Quote every later line of ``text`` that starts with a field's ``name:`` label (``> name:``).

    The first line follows the input's own label, so only lines after a newline can start a section.
    """
    if "\n" not in text or ":" not in text:
        return text
    head, _, rest = text.partition("\n")
    return head + "\n" + _label_pattern(tuple(names)).sub("> ", rest)
