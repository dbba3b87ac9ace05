"""Embedders, retrievers (BM25, Embeddings, PGVector) and em.Retrieve, on doubles and a loopback server."""

from __future__ import annotations

import asyncio
import json
import pathlib

import numpy as np
import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError, MissingDependencyError, ProviderResponseError
from elixirml.lm import Cache
from elixirml.retrievers import Passage, Retriever
from elixirml.retrievers import _pgvector as pgv
from elixirml.testing import FakeLMServer, hashed_embedding

SLICE = json.loads((pathlib.Path(__file__).parents[1] / "data" / "squad_slice.json").read_text())
CORPUS = [p["context"] for p in SLICE["paragraphs"]]
QUESTIONS = [(q["question"], i) for i, p in enumerate(SLICE["paragraphs"]) for q in p["qas"]]


@pytest.fixture
def server():
    with FakeLMServer() as s:
        yield s


def openai_embedder(server, **kwargs):
    kwargs.setdefault("cache", False)
    return em.Embedder("openai/fake-embed", base_url=server.base_url, api_key="sk-secret-key", **kwargs)


# ---------------------------------------------------------------------- embedders
def test_openai_embedder_returns_vectors_in_order_in_batches(server):
    embedder = openai_embedder(server, batch_size=2)
    texts = ["red apple", "green pear", "blue sky", "red apple pie", "sky"]
    vectors = embedder(texts)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float32
    assert np.allclose(vectors, np.array([hashed_embedding(t) for t in texts], dtype=np.float32))
    assert [len(r["input"]) for r in server.requests] == [2, 2, 1]
    assert all(r["model"] == "fake-embed" and r["encoding_format"] == "float" for r in server.requests)
    assert embedder("sky").shape == (64,)
    assert embedder.usage.calls == 4


def test_openai_embedder_sends_dimensions_and_limits_concurrency():
    with FakeLMServer(latency=0.05) as server:
        embedder = openai_embedder(server, batch_size=1, max_concurrency=2, dimensions=64)
        embedder([f"text {i}" for i in range(6)])
        assert server.max_in_flight == 2
        assert all(r["dimensions"] == 64 for r in server.requests)


def test_openai_embedder_caches_each_text_on_disk(server, tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    first = openai_embedder(server, cache=cache)
    a = first(["one", "two", "one"])
    assert [r["input"] for r in server.requests] == [["one", "two"]]  # duplicates embedded once
    again = openai_embedder(server, cache=Cache(tmp_path / "cache.sqlite"))(["two", "three", "one"])
    assert [r["input"] for r in server.requests] == [["one", "two"], ["three"]]
    assert np.allclose(again[0], a[1]) and np.allclose(again[2], a[0])
    row = cache._db.execute("SELECT response FROM lm_cache").fetchall()
    assert "sk-secret-key" not in json.dumps(row) and "sk-secret-key" not in repr(first)
    # another dimensions setting is another vector: a miss
    openai_embedder(server, cache=cache, dimensions=64)(["one"])
    assert server.requests[-1]["input"] == ["one"]


def test_openai_embedder_is_retried_by_the_lm_policies():
    with FakeLMServer(failure_rate=0.4, faults=("429", "500", "503"), seed=3) as server:
        embedder = openai_embedder(server, batch_size=1)
        vectors = embedder([f"word{i}" for i in range(20)])
        assert vectors.shape == (20, 64)
        assert sum(server.fault_counts.values()) > 0 and server.served == 20


def test_openai_embedder_malformed_body_is_a_clear_error():
    with FakeLMServer(failure_rate=1.0, faults=("malformed",)) as server:
        embedder = openai_embedder(server, num_retries=0)
        with pytest.raises(ProviderResponseError, match="malformed embeddings response"):
            embedder(["x"])


def test_function_embedder_sync_and_async_and_bad_output():
    sync = em.Embedder(lambda texts: [[len(t), 1.0] for t in texts])
    assert sync(["ab", "abc"]).tolist() == [[2.0, 1.0], [3.0, 1.0]]

    async def afn(texts):
        return np.ones((len(texts), 3))

    assert asyncio.run(em.Embedder(afn).aembed(["a", "b"])).shape == (2, 3)
    with pytest.raises(ProviderResponseError, match="1 vectors for 2 texts"):
        em.Embedder(lambda texts: [[1.0]])(["a", "b"])
    with pytest.raises(ProviderResponseError, match="NaN"):
        em.Embedder(lambda texts: [[float("nan")] for _ in texts])(["a"])
    with pytest.raises(ConfigurationError, match="item 1 is int"):
        sync(["a", 3])


def test_embedder_refuses_unknown_models():
    with pytest.raises(ConfigurationError, match="openai/<model>"):
        em.Embedder("cohere/embed")
    with pytest.raises(ConfigurationError, match="batch_size"):
        em.Embedder(lambda t: t, batch_size=0)


# ---------------------------------------------------------------------- BM25
def recall_at(retriever, k):
    hits = sum(any(p.id == str(i) for p in retriever.search(q, k)) for q, i in QUESTIONS)
    return hits / len(QUESTIONS)


def test_bm25_finds_the_paragraph_of_squad_questions():
    bm25 = em.retrievers.BM25(CORPUS)
    assert isinstance(bm25, Retriever)
    assert recall_at(bm25, 3) >= 0.8
    top = bm25.search("Which NFL team represented the AFC at Super Bowl 50?", k=2)
    assert top[0].id == "0" and top[0].score >= top[1].score > 0
    assert bm25.search("zzzz qqqq", k=3) == []
    assert len(bm25.search("Super Bowl", k=100)) <= len(CORPUS)
    assert asyncio.run(bm25.asearch("Super Bowl 50 champion", 1))[0].id == top[0].id


def test_bm25_saves_and_loads(tmp_path):
    bm25 = em.retrievers.BM25([{"text": t, "id": f"p{i}", "title": "SB50"} for i, t in enumerate(CORPUS)])
    bm25.save(tmp_path / "index")
    loaded = em.retrievers.BM25.load(tmp_path / "index")
    for question, _ in QUESTIONS:
        assert loaded.search(question, 3) == bm25.search(question, 3)
    assert loaded.search(QUESTIONS[0][0], 1)[0].metadata == {"title": "SB50"}
    with pytest.raises(LoadError, match="not a saved BM25"):
        em.retrievers.BM25.load(tmp_path / "missing")


def test_corpus_is_checked():
    with pytest.raises(ConfigurationError, match="at least one"):
        em.retrievers.BM25([])
    with pytest.raises(ConfigurationError, match="unique"):
        em.retrievers.BM25([{"text": "a", "id": "1"}, {"text": "b", "id": "1"}])
    with pytest.raises(ConfigurationError, match="no 'text'"):
        em.retrievers.BM25([{"body": "a"}])
    with pytest.raises(ConfigurationError, match="not a single string"):
        em.retrievers.BM25("just one text")
    with pytest.raises(ConfigurationError, match="positive int"):
        em.retrievers.BM25(["apple pie"]).search("apple", k=0)
    with pytest.raises(ConfigurationError, match="no words"):
        em.retrievers.BM25(["a b", "the"])


# ---------------------------------------------------------------------- Embeddings
def test_embeddings_retriever_on_the_loopback_server(server, tmp_path):
    embedder = openai_embedder(server)
    dense = em.retrievers.Embeddings(CORPUS, embedder)
    assert recall_at(dense, 3) >= 0.5  # hashed words: weaker than BM25
    first = dense.search(QUESTIONS[0][0], 3)
    assert len(first) == 3 and first[0].score >= first[1].score >= first[2].score
    assert -1.0 <= first[-1].score <= 1.0
    dense.save(tmp_path / "dense")
    loaded = em.retrievers.Embeddings.load(tmp_path / "dense", embedder)
    assert [p.id for p in loaded.search(QUESTIONS[0][0], 3)] == [p.id for p in first]
    other = em.Embedder(lambda texts: np.ones((len(texts), 64)))
    with pytest.raises(LoadError, match="built with the embedder"):
        em.retrievers.Embeddings.load(tmp_path / "dense", other)
    with pytest.raises(LoadError, match="'embeddings' index, not a 'bm25'"):
        em.retrievers.BM25.load(tmp_path / "dense")


def test_embeddings_retriever_exact_ranking_and_faiss_requirement():
    vectors = {"north": [0.0, 1.0], "east": [1.0, 0.0], "north east": [1.0, 1.0]}
    embedder = em.Embedder(lambda texts: [vectors[t] for t in texts])
    dense = em.retrievers.Embeddings(list(vectors), embedder, use_faiss=False)
    assert [p.text for p in dense.search("north", 3)] == ["north", "north east", "east"]
    assert dense.search("north", 3)[1].score == pytest.approx(2**-0.5, rel=1e-5)
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="faiss"):
            em.retrievers.Embeddings(list(vectors), embedder, use_faiss=True)
    else:
        fast = em.retrievers.Embeddings(list(vectors), embedder, use_faiss=True)
        assert [p.text for p in fast.search("north", 3)] == ["north", "north east", "east"]
    with pytest.raises(ConfigurationError, match="zero vector"):
        em.retrievers.Embeddings(["x"], em.Embedder(lambda texts: [[0.0, 0.0]]))


# ---------------------------------------------------------------------- PGVector
def test_pgvector_sql_is_built_from_checked_names():
    assert pgv.quoted_table("public.passages") == '"public"."passages"'
    for bad in ["passages; DROP TABLE x", 'a"b', "a.b.c", "", "1abc"]:
        with pytest.raises(ConfigurationError, match="plain SQL name"):
            pgv.quoted_table(bad)
    assert "vector(384)" in pgv.create_table_sql("passages", 384)
    with pytest.raises(ConfigurationError, match="dim"):
        pgv.create_table_sql("passages", 0)
    assert "ORDER BY embedding <=> CAST(:query AS vector) LIMIT :k" in pgv.search_sql("passages")
    assert "ON CONFLICT (id) DO UPDATE" in pgv.upsert_sql("passages")
    assert pgv.vector_literal([1, 0.5, -2]) == "[1.0,0.5,-2.0]"
    assert pgv.engine_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert pgv.engine_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    with pytest.raises(ConfigurationError, match="PostgreSQL URL"):
        pgv.engine_url("sqlite:///x.db")


def test_pgvector_on_a_real_server(postgres_url):
    embedder = em.Embedder(lambda texts: [hashed_embedding(t, 16) for t in texts])
    try:
        store = em.retrievers.PGVector(postgres_url, "passages", embedder)
    except ConfigurationError as exc:
        assert "pgvector" in str(exc)
        pytest.skip(f"the PostgreSQL server has no pgvector extension (Debian bookworm ships none): {exc}")
    assert store.add(CORPUS) == len(CORPUS) and len(store) == len(CORPUS)
    store.add(CORPUS[:2])  # upsert by id: no duplicates
    assert len(store) == len(CORPUS)
    local = em.retrievers.Embeddings(CORPUS, embedder)
    for question, _ in QUESTIONS:
        assert [p.id for p in store.search(question, 3)] == [p.id for p in local.search(question, 3)]
    assert "password" not in repr(store)
    store.close()


# ---------------------------------------------------------------------- em.Retrieve
class RAG(em.Program):
    def __init__(self, retriever):
        super().__init__()
        self.retrieve = em.Retrieve(k=2, retriever=retriever)
        self.answer = em.ChainOfThought("context, question -> answer")

    def forward(self, question):
        context = self.retrieve(query=question).passages
        return self.answer(context=context, question=question)


def test_retrieve_in_a_program_with_k_as_a_variable(tmp_path):
    bm25 = em.retrievers.BM25(CORPUS)
    lm = em.DummyLM([{"reasoning": "r", "answer": "Denver Broncos"}] * 4)
    program = RAG(bm25)
    program.set_lm(lm)
    pred = program(question="Which NFL team represented the AFC at Super Bowl 50?")
    assert pred.answer == "Denver Broncos"
    prompt = json.dumps(lm.requests[0]["messages"])
    assert "Denver Broncos defeated" in prompt  # the retrieved paragraph reached the prompt
    space = program.variable_space()
    assert "retrieve.k" in space.names() and space["retrieve.k"].encoding()["type"] == "numeric"
    wider = program.with_variables(**{"retrieve.k": 4})
    assert len(wider.retrieve(query="Super Bowl").passages) == 4
    assert len(program.retrieve(query="Super Bowl").passages) == 2
    assert wider.retrieve.retriever is bm25  # shared, not copied
    wider.save(tmp_path / "rag.json")
    restored = RAG(bm25).load(tmp_path / "rag.json")
    assert restored.retrieve.k == 4


def test_retrieve_uses_the_configured_rm_and_merges_queries():
    bm25 = em.retrievers.BM25(CORPUS)
    with pytest.raises(ConfigurationError, match="no retriever"):
        em.Retrieve()(query="x")
    em.configure(rm=bm25)
    result = em.Retrieve(k=3)(query=["Super Bowl 50 halftime show", "Levi's Stadium"])
    assert len(result.passages) == 3 and all(isinstance(p, Passage) for p in result.documents)
    assert len({p.id for p in result.documents}) == 3
    with pytest.raises(ConfigurationError, match="'rm' expects a retriever"):
        em.configure(rm="bm25")
    with pytest.raises(Exception, match="out of range"):
        em.Retrieve(k=0)


def test_retrievers_are_registered_extensions():
    assert {"bm25", "embeddings", "pgvector"} <= set(em.extensions.names("retrievers"))
    assert em.extensions.get("retrievers", "bm25") is em.retrievers.BM25


@pytest.mark.local_model
def test_local_embedder_runs_the_embedded_gguf(tmp_path):
    embedder = em.Embedder("local", cache=Cache(tmp_path / "c.sqlite"))
    texts = ["The cat sat on the mat.", "A kitten rested on a rug.", "Stock markets fell sharply today."]
    vectors = embedder(texts)
    assert vectors.shape[0] == 3 and vectors.shape[1] > 100
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2]  # the two sentences about cats are the closest pair
    assert np.allclose(embedder(texts[:1])[0], vectors[0])  # cached: the same vector back
