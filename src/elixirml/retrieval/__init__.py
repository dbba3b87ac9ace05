"""Retrieval: the Retriever protocol, passages, and the built-in indexes (BM25, embeddings, pgvector)."""

from ._base import Passage, Retriever, as_passages
from ._bm25 import BM25
from ._embeddings import Embeddings
from ._pgvector import PGVector

__all__ = ["BM25", "Embeddings", "PGVector", "Passage", "Retriever", "as_passages"]
