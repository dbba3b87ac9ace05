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
