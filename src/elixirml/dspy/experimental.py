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
        return "A document containing text content that can be referenced and cited."


class Citation(pydantic.BaseModel):
    """One quoted span and the document it comes from."""

    type: str = "char_location"
    cited_text: str
    document_index: int = 0
    document_title: str | None = None
    start_char_index: int = 0
    end_char_index: int = 0
    supported_text: str | None = None


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
        return "Citations with quoted text and source references."

    def __len__(self) -> int:
        return len(self.citations)

    def __getitem__(self, index: int) -> Citation:
        return self.citations[index]
