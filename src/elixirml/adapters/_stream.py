"""Incremental parsers that split a streamed completion into output-field chunks."""

from __future__ import annotations

import json

from ._chat import _MARKER_RE


class ChatStreamParser:
    """Splits text with ``[[ ## field ## ]]`` markers into ``(field, text)`` pieces as it arrives."""

    def __init__(self, output_fields: list[str]) -> None:
        self.fields = {f.lower(): f for f in output_fields}
        self.buffer = ""
        self.pos = 0
        self.current: str | None = None

    def feed(self, chunk: str) -> list[tuple[str, str]]:
        """Add ``chunk``; return the field pieces it completes."""
        self.buffer += chunk
        out: list[tuple[str, str]] = []
        safe_end = len(self.buffer)
        opening = self.buffer.rfind("[[", self.pos)
        if opening != -1 and "]]" not in self.buffer[opening:]:
            safe_end = opening  # may be the start of a marker: wait for more text
        elif self.buffer.endswith("["):
            safe_end = len(self.buffer) - 1
        for match in _MARKER_RE.finditer(self.buffer, self.pos, safe_end):
            self._emit(out, self.buffer[self.pos : match.start()])
            self.current = self.fields.get(match.group(1).strip().lower().replace(" ", "_"))
            self.pos = match.end()
        self._emit(out, self.buffer[self.pos : safe_end])
        self.pos = max(self.pos, safe_end)
        return out

    def _emit(self, out: list[tuple[str, str]], text: str) -> None:
        if self.current is not None and text:
            out.append((self.current, text))


class JSONStreamParser:
    """Streams the values of a JSON object's top-level keys, character by character."""

    def __init__(self, output_fields: list[str]) -> None:
        self.fields = set(output_fields)
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.string = ""
        self.key: str | None = None
        self.expect_value = False
        self.value_field: str | None = None
        self.value_is_string = False

    def feed(self, chunk: str) -> list[tuple[str, str]]:
        """Add ``chunk``; return the field pieces it completes."""
        out: list[tuple[str, str]] = []
        for ch in chunk:
            self._step(ch, out)
        merged: list[tuple[str, str]] = []
        for field, text in out:
            if merged and merged[-1][0] == field:
                merged[-1] = (field, merged[-1][1] + text)
            else:
                merged.append((field, text))
        return merged

    def _step(self, ch: str, out: list[tuple[str, str]]) -> None:
        if self.in_string:
            if self.escape:
                self.escape = False
                decoded = json.loads(f'"\\{ch}"') if ch in 'nrtbf"\\/' else ch
                self._string_char(decoded, out)
            elif ch == "\\":
                self.escape = True
            elif ch == '"':
                self.in_string = False
                if self.depth >= 2 and self.value_field is not None:
                    out.append((self.value_field, ch))
                if self.value_is_string:
                    self.value_is_string = False
                    self.value_field = None
                elif self.depth == 1 and not self.expect_value:
                    self.key = self.string
            else:
                self._string_char(ch, out)
            return
        if ch == '"':
            self.in_string = True
            self.string = ""
            if self.depth >= 2 and self.value_field is not None:
                out.append((self.value_field, ch))
            if self.expect_value and self.depth == 1:
                self.expect_value = False
                self.value_is_string = True
                self.value_field = self.key if self.key in self.fields else None
            return
        if ch in "{[":
            self.depth += 1
            if self.expect_value and self.depth == 2:
                self.expect_value = False
                self.value_field = self.key if self.key in self.fields else None
        elif ch in "}]":
            if self.depth == 2 and self.value_field is not None:
                out.append((self.value_field, ch))
                self.value_field = None
                self.depth -= 1
                return
            self.depth -= 1
        elif ch == ":" and self.depth == 1:
            self.expect_value = True
            return
        elif ch == "," and self.depth == 1:
            self.value_field = None
            self.expect_value = False
            return
        elif self.expect_value and self.depth == 1 and not ch.isspace():
            self.expect_value = False
            self.value_field = self.key if self.key in self.fields else None
        if self.value_field is not None and self.depth >= 1 and not (ch.isspace() and self.depth == 1):
            out.append((self.value_field, ch))

    def _string_char(self, ch: str, out: list[tuple[str, str]]) -> None:
        if self.value_field is not None and (self.value_is_string or self.depth >= 2):
            out.append((self.value_field, ch))
        else:
            self.string += ch
