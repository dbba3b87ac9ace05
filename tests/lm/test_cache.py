import sqlite3
import subprocess
import sys
import textwrap

import elixirml as em
from elixirml.lm import Completion, LMResponse, Usage
from elixirml.lm._cache import Cache, default_cache_dir


def response(text):
    return LMResponse([Completion(text=text)], Usage(3, 4, calls=1), "m")


def test_hit_is_marked_and_has_zero_usage(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    key = cache.key("m", [{"role": "user", "content": "x"}], {"temperature": 0})
    assert cache.get(key) is None
    cache.put(key, response("hello"))
    hit = cache.get(key)
    assert hit.cached and hit.text == "hello" and hit.usage.total_tokens == 0 and hit.usage.cached_calls == 1
    assert cache.hits == 1 and cache.misses == 1


def test_key_depends_on_every_answer_changing_setting():
    msgs = [{"role": "user", "content": "x"}]
    base = Cache.key("m", msgs, {"temperature": 0.0, "max_tokens": 10})
    for change in ({"temperature": 0.1}, {"max_tokens": 11}, {"n": 2}, {"rollout_id": 1}, {"tools": []}):
        assert Cache.key("m", msgs, {"temperature": 0.0, "max_tokens": 10, **change}) != base
    assert Cache.key("other", msgs, {"temperature": 0.0, "max_tokens": 10}) != base


def test_memory_level_is_bounded_and_disk_level_persists(tmp_path):
    cache = Cache(tmp_path / "c.sqlite", memory_size=2)
    for i in range(5):
        cache.put(str(i), response(str(i)))
    assert len(cache._memory) == 2
    assert Cache(tmp_path / "c.sqlite").get("0").text == "0"
    assert len(cache) == 5
    cache.clear()
    assert len(cache) == 0


def test_default_location_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ELIXIRML_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    assert Cache().path == tmp_path / "here" / "lm_cache.sqlite"


def test_two_processes_writing_one_file_do_not_corrupt_it(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        from elixirml.lm import Completion, LMResponse, Usage
        from elixirml.lm._cache import Cache
        cache = Cache({str(path)!r})
        who = sys.argv[1]
        for i in range(300):
            cache.put(f"{{who}}-{{i}}", LMResponse([Completion(text=f"{{who}} {{i}}")], Usage(), "m"))
            cache.put(f"same-{{i}}", LMResponse([Completion(text=f"same {{i}}")], Usage(), "m"))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM lm_cache").fetchone()[0] == 900
    cache = Cache(path)
    assert (
        cache.get("a-299").text == "a 299" and cache.get("b-0").text == "b 0" and cache.get("same-5").text == "same 5"
    )


def test_history_is_bounded():
    lm = em.DummyLM([{"answer": "x"}] * 10, history_size=3)
    predict = em.Predict("q -> answer", lm=lm)
    for i in range(10):
        predict(q=str(i))
    assert len(lm.history) == 3
    assert "[[ ## q ## ]]\n9" in lm.history[-1]["messages"][-1]["content"]
