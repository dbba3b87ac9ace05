"""Retrievers (``em.retrievers``): BM25, Embeddings, PGVector, and the Retriever protocol they share.

``em.Retrieve(k=3, retriever=em.retrievers.BM25(corpus))`` uses one in a program.
"""

from .retrieval import BM25, Embeddings, Passage, PGVector, Retriever

__all__ = ["BM25", "Embeddings", "PGVector", "Passage", "Retriever"]
