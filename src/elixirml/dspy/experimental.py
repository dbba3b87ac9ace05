"""``dspy.experimental``: DSPy's document and citation types, as plain data types.

``Document`` is an input value (text with an optional title, media type and context) and
``Citations`` an output value (quoted spans with their sources). Here they are ordinary
Pydantic types: an adapter writes a document as JSON and reads citations from JSON, without
any provider's native citation feature (DSPy uses Anthropic's when available).
"""

from __future__ import annotations

from typing import Any

import pydantic

__all__ = ["Citations", "Document"]


class Document(pydantic.BaseModel):
    """A document given to the LM as context.

    Attributes:
        data: the document's text.
        title: its title, if any.
        media_type: the content type of ``data`` (``"text/plain"``).
        context: what the document is about, to help the LM use it.
    """

    data: str
    title: str | None = None
    media_type: str = "text/plain"
    context: str | None = None

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM."""
        return (
            "A document containing text content that can be referenced and cited. Include the full text content "
            "and optionally a title for proper referencing."
        )

    def format(self) -> list[dict[str, Any]]:
        """The document as a content part (Anthropic's ``document`` block, as DSPy writes it)."""
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "text", "media_type": self.media_type, "data": self.data},
            "citations": {"enabled": True},
        }
        if self.title:
            block["title"] = self.title
        if self.context:
            block["context"] = self.context
        return [block]


class Citation(pydantic.BaseModel):
    """Individual citation with character location information."""

    type: str = "char_location"
    cited_text: str
    document_index: int
    document_title: str | None = None
    start_char_index: int
    end_char_index: int
    supported_text: str | None = None

    def format(self) -> dict[str, Any]:
        """The citation as a dict, leaving out the fields that are not set."""
        return self.model_dump(exclude_none=True)


class Citations(pydantic.BaseModel):
    """Citations with quoted text and source references."""

    citations: list[Citation]

    @classmethod
    def from_dict_list(cls, citations_dicts: list[dict[str, Any]]) -> Citations:
        """Build from a list of citation dicts."""
        return cls(citations=[Citation(**item) for item in citations_dicts])

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM."""
        return (
            "Citations with quoted text and source references. Include the exact text being cited and information "
            "about its source."
        )

    def format(self) -> list[dict[str, Any]]:
        """The citations as a list of dicts (DSPy writes them as content parts)."""
        return [c.format() for c in self.citations]

    @classmethod
    def adapt_to_native_lm_feature(cls, signature: Any, field_name: str, lm: Any, lm_kwargs: dict[str, Any]) -> Any:
        """Anthropic's models cite natively: the field leaves the prompt."""
        if str(getattr(lm, "model", "")).startswith("anthropic/"):
            return signature.delete(field_name)
        return signature

    @classmethod
    def parse_lm_response(cls, response: Any) -> Citations | None:
        """The citations an LM returned natively (a ``citations`` entry of its output), if any."""
        if isinstance(response, dict) and response.get("citations"):
            return cls.from_dict_list(list(response["citations"]))
        return None

    def __len__(self) -> int:
        return len(self.citations)

    def __getitem__(self, index: int) -> Citation:
        return self.citations[index]
