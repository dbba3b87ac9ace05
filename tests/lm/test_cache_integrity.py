"""A damaged or tampered LM cache is never an answer and never a crash (reliability issue item 7)."""

import json
import sqlite3

import pytest

from elixirml.lm import Completion, LMResponse, Usage
from elixirml.lm._cache import FORMAT, Cache

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def response(text):
    return LMResponse([Completion(text=text)], Usage(3, 4, calls=1), "m")


def test_a_file_of_random_bytes_is_moved_aside_with_one_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.warns(RuntimeWarning, match="damaged.*moved it to") as caught:
        cache = Cache(path)
    assert len(caught) == 1
    key = cache.key("m", MESSAGES, {})
    assert cache.get(key) is None
    cache.put(key, response("4"))
    assert cache.get(key).text == "4"
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    cache.close()


def test_a_database_that_is_not_a_cache_is_moved_aside(tmp_path):
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE lm_cache (key TEXT PRIMARY KEY, something TEXT)")
    with pytest.warns(RuntimeWarning, match="damaged"):
        cache = Cache(path)
    key = cache.key("m", MESSAGES, {})
    cache.put(key, response("4"))
    assert Cache(path, memory_size=0).get(key).text == "4"


def plant(path, key, text):
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO lm_cache VALUES (?, 'm', ?, 0)", (key, text))


def good_row(key, **changes):
    row = {"format": FORMAT, "key": key, "model": "m", "completions": [Completion(text="4").to_dict()]}
    row.update(changes)
    return json.dumps(row)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps({"model": "m", "completions": [{"text": "planted"}]}),  # the old format: no version, no key
        "VERSION",  # replaced by a row for another key below
        "FORMAT",  # replaced by a row of another format below
        "MISSING",
        "EXTRA",
        "TYPES",
        "EMPTY",
    ],
)
def test_a_bad_or_planted_row_is_a_miss(tmp_path, text):
    path = tmp_path / "c.sqlite"
    cache = Cache(path, memory_size=0)
    key = cache.key("m", MESSAGES, {})
    other = cache.key("m", [{"role": "user", "content": "something else"}], {})
    completion = Completion(text="planted").to_dict()
    text = {
        "VERSION": good_row(other),
        "FORMAT": good_row(key, format=FORMAT + 1),
        "MISSING": good_row(key, completions=[{"text": "planted"}]),
        "EXTRA": good_row(key, completions=[{**completion, "evil": 1}]),
        "TYPES": good_row(key, completions=[{**completion, "text": 42}]),
        "EMPTY": good_row(key, completions=[]),
    }.get(text, text)
    plant(path, key, text)
    assert cache.get(key) is None
    assert cache.misses == 1 and cache.hits == 0
    cache.put(key, response("4"))  # the miss is answered and replaces the bad row
    assert cache.get(key).text == "4"


def test_a_row_with_a_non_text_response_is_a_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = Cache(path, memory_size=0)
    key = cache.key("m", MESSAGES, {})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO lm_cache VALUES (?, 'm', ?, 0)", (key, b"\x00\x01"))
    assert cache.get(key) is None


def test_an_lm_call_survives_a_corrupt_cache_file(tmp_path):
    import elixirml as em

    path = tmp_path / "c.sqlite"
    path.write_bytes(b"garbage" * 1000)
    lm = em.DummyLM([{"answer": "4"}], cache=path)
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert em.Predict("question -> answer", lm=lm)(question="2 + 2?").answer == "4"


# --- an answer with a lone surrogate is kept (issue 35, item 10)

SURROGATE_ANSWER = "[[ ## answer ## ]]\nA\ud800B\n\n[[ ## completed ## ]]"


def _surrogate_body(body):
    # JSON escapes can carry a lone surrogate, which no UTF-8 text can
    reply = {"choices": [{"message": {"content": SURROGATE_ANSWER}, "finish_reason": "stop"}], "usage": {}}
    return {"raw": json.dumps(reply)}


def test_an_answer_with_a_lone_surrogate_is_cached_and_reaches_the_adapter(tmp_path):
    import elixirml as em
    from elixirml.testing import FakeLMServer

    with FakeLMServer(_surrogate_body) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=Cache(tmp_path / "c.sqlite"))
        predict = em.Predict("question -> answer", lm=lm)
        assert predict(question="q").answer == "A\ud800B"  # UnicodeEncodeError in the cache write before
        fresh = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=Cache(tmp_path / "c.sqlite"))
        again = em.Predict("question -> answer", lm=fresh)(question="q")
        assert again.answer == "A\ud800B"
        assert len(srv.requests) == 1  # the second answer came from the file


def test_a_request_with_a_lone_surrogate_has_a_cache_key(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    messages = [{"role": "user", "content": "x\udfffy"}]
    key = cache.key("m", messages, {})
    assert key != cache.key("m", [{"role": "user", "content": "x?y"}], {})
    cache.put(key, response("z\udfff"))
    assert Cache(tmp_path / "c.sqlite").get(key).text == "z\udfff"


def test_a_traced_run_with_a_lone_surrogate_is_stored(tmp_path):
    import elixirml as em

    store = em.Store(f"sqlite:///{tmp_path / 's.db'}")
    lm = em.DummyLM([{"answer": "A\ud800B"}])
    predict = em.Predict("question -> answer", lm=lm)
    with store.recording("qa", {"question": "q\udc00"}) as rec:
        rec.outputs = predict(question="q").to_dict()
    stored = store.execution(rec.execution_id)
    assert stored["outputs"]["answer"] == "A\ud800B"
    assert "A\ud800B" in json.dumps(stored["trace"], ensure_ascii=False)
    with pytest.raises(ValueError), store.recording("qa", {"question": "q"}) as rec:
        raise ValueError("the answer A\ud800B is wrong")
    assert "A" in store.execution(rec.execution_id)["error"]
