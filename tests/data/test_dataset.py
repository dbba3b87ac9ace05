import json

import pytest

import elixirml as em


def test_loaders_and_field_mapping(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"q": f"q{i}", "a": str(i)}) for i in range(5)) + "\n")
    data = em.Dataset.from_jsonl(tmp_path / "d.jsonl", inputs=["question"], fields={"q": "question", "a": "answer"})
    assert len(data) == 5 and data[0].question == "q0" and data[0].inputs().to_dict() == {"question": "q0"}
    (tmp_path / "d.csv").write_text("text,label\nhello,1\nbye,0\n")
    csv_data = em.Dataset.from_csv(tmp_path / "d.csv", inputs=["text"])
    assert [e.label for e in csv_data] == ["1", "0"]
    (tmp_path / "d.tsv").write_text("text\tlabel\nhello\t1\n")
    assert em.Dataset.from_tsv(tmp_path / "d.tsv")[0].text == "hello"
    records = em.Dataset.from_records([{"x": 1}, {"x": 2}], inputs=["x"])
    assert [e.x for e in records.stream()] == [1, 2]
    with pytest.raises(em.errors.LoadError, match="nope"):
        em.Dataset.from_records([{"x": 1}], fields={"nope": "y"})
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(em.errors.LoadError, match="bad.jsonl:2"):
        em.Dataset.from_jsonl(tmp_path / "bad.jsonl")


def test_pandas_loader():
    pd = pytest.importorskip("pandas")
    data = em.Dataset.from_pandas(pd.DataFrame({"q": ["a", "b"], "a": [1, 2]}), inputs=["q"])
    assert [e.a for e in data] == [1, 2]


def test_splits_samples_partitions_are_reproducible():
    data = em.Dataset.from_records([{"i": i} for i in range(100)], inputs=["i"])
    train, val, test = data.split([0.6, 0.2, 0.2], seed=1)
    assert (len(train), len(val), len(test)) == (60, 20, 20)
    assert sorted(e.i for part in (train, val, test) for e in part) == list(range(100))
    assert [e.i for e in data.split([0.6, 0.2, 0.2], seed=1)[0]] == [e.i for e in train]
    assert [e.i for e in data.sample(5, seed=3)] == [e.i for e in data.sample(5, seed=3)]
    parts = data.partition(3)
    assert [len(p) for p in parts] == [34, 33, 33] and parts[1][0].i == 34
    with pytest.raises(em.errors.ConfigurationError):
        data.split([0.5, 0.6])


def test_metadata_and_fingerprint():
    a = em.Dataset.from_records([{"q": "x", "a": "y"}], inputs=["q"], name="tiny")
    b = em.Dataset.from_records([{"q": "x", "a": "y"}], inputs=["q"])
    meta = a.metadata()
    assert meta["name"] == "tiny" and meta["size"] == 1 and meta["fields"] == ["q", "a"] and meta["inputs"] == ["q"]
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != em.Dataset.from_records([{"q": "x", "a": "z"}], inputs=["q"]).fingerprint()


def test_bundled_datasets():
    sst2 = em.data.sst2()
    assert len(sst2) == 872 and {e.label for e in sst2} == {"positive", "negative"}
    assert sst2[0].inputs().to_dict() == {"sentence": sst2[0].sentence}
    gsm = em.data.gsm8k("test")
    assert len(gsm) == 200 and gsm[0].gold.replace(".", "").isdigit()
