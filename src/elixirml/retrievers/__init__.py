"""Retrievers (``em.retrievers``): the Retriever protocol, passages, and the built-in indexes.

BM25, Embeddings and PGVector; ``em.Retrieve(k=3, retriever=em.retrievers.BM25(corpus))`` uses
one in a program.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._base import Passage, Retriever, as_passages

if TYPE_CHECKING:
    from ._bm25 import BM25
    from ._embeddings import Embeddings
    from ._pgvector import PGVector

# The indexes load on first use: a program with Retrieve needs only the protocol.
__getattr__ = lazy_getattr(
    __name__, {"BM25": "._bm25", "Embeddings": "._embeddings", "PGVector": "._pgvector"}, globals()
)

__all__ = ["BM25", "Embeddings", "PGVector", "Passage", "Retriever", "as_passages"]
