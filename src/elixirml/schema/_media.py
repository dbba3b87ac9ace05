"""Rich field types: Image, History, ToolCalls, Code (DSPy's ``dspy.Image``, ``dspy.History``, ...).

Each is a Pydantic model, so a value validates, saves with a program (demos) and shows in
traces as JSON. How each reaches the LM is the adapters' business:

- ``Image``: sent as an image content part (OpenAI ``image_url``; Anthropic ``image`` blocks);
  the prompt text holds a marker where each image goes (:func:`split_image_parts`).
- ``History``: earlier turns, rendered as prior user/assistant messages.
- ``ToolCalls``: filled from the LM's native tool calls when it makes them.
- ``Code``: the code of a fenced block, with its language; the fences are stripped.
"""

from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import pydantic
from pydantic.json_schema import SkipJsonSchema

from ..errors import ConfigurationError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>[A-Za-z0-9+/=\s]+)$")
_MARKER = re.compile(r"\[\[image:([0-9a-f]{16})\]\]")


def _sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class Image(pydantic.BaseModel):
    """An image input (DSPy's ``dspy.Image``): a URL, or the image itself as a ``data:`` URL.

    ``em.Image(x)`` takes an ``http(s)://`` or ``data:`` URL, a file path, raw bytes, or a PIL
    image; the class methods name the kind. Files, bytes and PIL images are embedded
    (base64), so the value is self-contained when a program with image demos is saved.

    Attributes:
        url: the ``http(s)://`` URL or the ``data:<mime>;base64,...`` URL.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    url: str

    def __init__(self, value: Any = None, /, **data: Any) -> None:
        if value is not None:
            if data:
                raise ConfigurationError("em.Image takes one value (a URL, path, bytes or PIL image) or url=...")
            data = {"url": _to_url(value)}
        super().__init__(**data)

    @pydantic.field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        if _DATA_URL.match(url):
            return url
        raise ValueError("an image URL is http(s):// or data:<mime>;base64,...")

    @classmethod
    def from_url(cls, url: str) -> Image:
        """An image the LM fetches from ``url`` (or a ``data:`` URL)."""
        return cls(url=url)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Image:
        """The image in the file ``path``, embedded."""
        return cls(url=_file_url(Path(path)))

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str | None = None) -> Image:
        """An image from its encoded bytes (PNG, JPEG, GIF, WebP), embedded."""
        return cls(url=_bytes_url(data, mime_type))

    @classmethod
    def from_PIL(cls, image: Any) -> Image:  # noqa: N802 - DSPy's name
        """A PIL image, embedded as PNG."""
        return cls(url=_pil_url(image))

    @property
    def mime_type(self) -> str | None:
        """The media type of an embedded image (None for a plain URL)."""
        match = _DATA_URL.match(self.url)
        return match.group("mime") if match else None

    @property
    def data(self) -> bytes | None:
        """The bytes of an embedded image (None for a plain URL)."""
        match = _DATA_URL.match(self.url)
        return base64.b64decode(match.group("data")) if match else None

    def marker(self) -> str:
        """The text that stands for this image in a prompt (replaced by an image part)."""
        return f"[[image:{hashlib.sha256(self.url.encode()).hexdigest()[:16]}]]"

    def __repr__(self) -> str:
        head, base64_mark, payload = self.url.partition("base64,")
        if base64_mark:  # embedded bytes: their length, not the bytes (as DSPy shows them)
            return f"Image(url={head}base64,<IMAGE_BASE_64_ENCODED({len(payload)})>)"
        shown = self.url if len(self.url) <= 60 else f"{self.url[:40]}...({len(self.url)} chars)"
        return f"Image(url={shown!r})"

    __str__ = __repr__


def _to_url(value: Any) -> str:
    if isinstance(value, Image):
        return value.url
    if isinstance(value, (bytes, bytearray)):
        return _bytes_url(bytes(value), None)
    if isinstance(value, os.PathLike):
        return _file_url(Path(value))
    if isinstance(value, str):
        if value.startswith(("http://", "https://", "data:")):
            return value
        path = Path(value)
        if path.is_file():
            return _file_url(path)
        raise ConfigurationError(f"em.Image({value[:80]!r}): not an http(s)/data URL and no such file")
    if hasattr(value, "save") and hasattr(value, "mode"):
        return _pil_url(value)
    raise ConfigurationError(f"em.Image takes a URL, a file path, bytes or a PIL image, got {type(value).__name__}")


def _file_url(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"em.Image: cannot read {path} ({exc.strerror})") from None
    return _bytes_url(data, _sniff_mime(data) or mimetypes.guess_type(path.name)[0])


def _bytes_url(data: bytes, mime_type: str | None) -> str:
    mime = mime_type or _sniff_mime(data)
    if mime is None or not mime.startswith("image/"):
        raise ConfigurationError("em.Image: the bytes are not a PNG, JPEG, GIF or WebP image; pass mime_type=...")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _pil_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _bytes_url(buffer.getvalue(), "image/png")


_PLAIN = frozenset({str, int, float, bool, type(None)})


def images_in(values: Any) -> dict[str, Image]:
    """Every :class:`Image` in ``values`` (nested in lists, tuples and dicts), by marker."""
    found: dict[str, Image] = {}

    def walk(value: Any) -> None:
        if type(value) in _PLAIN:  # most values: no isinstance on a model class (those checks are slow)
            return
        if isinstance(value, Image):
            found[value.marker()] = value
        elif isinstance(value, History):
            walk(value.messages)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(values)
    return found


def split_image_parts(text: str, images: dict[str, Image]) -> str | list[dict[str, Any]]:
    """``text`` with its image markers turned into OpenAI content parts (``text`` and ``image_url``).

    Text without a known marker is returned as it is.
    """
    if not images or "[[image:" not in text:
        return text
    parts: list[dict[str, Any]] = []
    position = 0
    for match in _MARKER.finditer(text):
        image = images.get(match.group(0))
        if image is None:
            continue
        if match.start() > position:
            parts.append({"type": "text", "text": text[position : match.start()]})
        parts.append({"type": "image_url", "image_url": {"url": image.url}})
        position = match.end()
    if not parts:
        return text
    if position < len(text):
        parts.append({"type": "text", "text": text[position:]})
    return parts


class History(pydantic.BaseModel):
    """Earlier turns of a conversation, as an input field (DSPy's ``dspy.History``).

    Each message is a dict of the signature's field values (inputs, and the outputs the LM gave),
    for example ``{"question": "...", "answer": "..."}``. Adapters render each as a user turn
    with its inputs and an assistant turn with its outputs, before the current inputs.

    Attributes:
        messages: the earlier turns, oldest first.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    messages: list[dict[str, Any]]


class ToolCall(pydantic.BaseModel):
    """One tool call: the tool's name and its arguments."""

    model_config = pydantic.ConfigDict(frozen=True)

    name: str
    args: dict[str, Any] = pydantic.Field(default_factory=dict)
    id: str | None = None


class ToolCalls(pydantic.BaseModel):
    """An output field of tool calls (DSPy's ``dspy.ToolCalls``).

    Filled from the LM's native tool calls when it makes them (the tools go in the request's
    ``tools`` setting: ``config={"tools": [tool.openai_schema() for tool in tools]}``);
    otherwise parsed from the answer's JSON (``[{"name": ..., "args": {...}}]``).

    Attributes:
        tool_calls: the calls, in order.
        tool_call_results: what the calls returned, once they ran (DSPy's ``ToolCallResults``, or
            a list of ``{"call_id", "name", "value"}`` entries); a ``History`` turn holding them is
            replayed as tool messages. Not part of the schema the LM is asked to follow.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    tool_calls: list[ToolCall]
    tool_call_results: SkipJsonSchema[Any] = pydantic.Field(default=None, exclude_if=lambda v: v is None)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"tool_calls": value}
        return value

    @classmethod
    def from_native(cls, calls: list[dict[str, Any]]) -> ToolCalls:
        """From an LM response's native tool calls (``{"id", "name", "arguments"}`` dicts)."""
        return cls(
            tool_calls=[
                ToolCall(name=str(c.get("name") or ""), args=dict(c.get("arguments") or {}), id=c.get("id"))
                for c in calls
            ]
        )

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: list[dict[str, Any]]) -> ToolCalls:
        """From ``[{"name": ..., "args": {...}}, ...]`` (DSPy's constructor)."""
        return cls(tool_calls=[ToolCall(**dict(call)) for call in tool_calls_dicts])

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM (DSPy 3.4's ``ToolCalls.description()``)."""
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. Each call must include `name` and "
            '`args`. Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    @classmethod
    def prompt_hint(cls) -> str:
        """How the LM is asked to write the value when it does not call tools natively."""
        return 'must be a JSON list of tool calls: [{"name": "<tool>", "args": {...}}]'


ToolCalls.ToolCall = ToolCall  # type: ignore[attr-defined]  # DSPy's spelling: dspy.ToolCalls.ToolCall


_CODE_TYPES: dict[str, type[Code]] = {}  # one class per language, so Code["python"] is Code["python"]
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


class Code(pydantic.BaseModel):
    """Code as an output (or input) field, with its language (DSPy's ``dspy.Code``).

    ``em.Code["python"]`` fixes the language. From an answer, the code of the first fenced
    block is taken (fences stripped); text without fences is the code itself.

    Attributes:
        code: the code, without fences.
        language: its language (from the fence, or the one the type fixes).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    code: str
    language: str = ""

    #: The language ``Code["<language>"]`` fixes ("" for any).
    default_language: ClassVar[str] = ""

    def __class_getitem__(cls, language: Any) -> type[Code]:
        if not isinstance(language, str) or not language:
            raise ConfigurationError(f"Code[...] takes a language name such as 'python', got {language!r}")
        made = _CODE_TYPES.get(language)
        if made is None:
            made = type(f"Code[{language!r}]", (Code,), {"default_language": language, "__module__": __name__})
            _CODE_TYPES[language] = made
        return made

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return cls.parse_text(value)
        if isinstance(value, dict) and not value.get("language") and cls.default_language:
            return {**value, "language": cls.default_language}
        return value

    @classmethod
    def parse_text(cls, text: str) -> dict[str, str]:
        """The code and language of an answer's text (its first fenced block, or all of it)."""
        match = _FENCE.search(text)
        if match is None:
            return {"code": text.strip("\n"), "language": cls.default_language}
        return {"code": match.group(2).rstrip("\n"), "language": match.group(1) or cls.default_language}

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM (DSPy 3.4's ``Code.description()``)."""
        language = cls.default_language or "python"
        return (
            "Code represented in a string, specified in the `code` field. If this is an output field, the code "
            f"field should follow the markdown code block format, e.g. \n```{language}\n{{code}}\n```\n"
            f"Programming language: {language}"
        )

    @classmethod
    def from_completion_text(cls, text: str) -> Code:
        """The value of a completion's text for this field."""
        return cls.model_validate(cls.parse_text(text))

    @classmethod
    def prompt_hint(cls) -> str:
        """How the LM is asked to write the value."""
        language = cls.default_language or "<language>"
        return f"must be code in a fenced block: ```{language} ... ```"

    def __str__(self) -> str:
        return self.code
