"""Datasets: ordered collections of :class:`~elixirml.Example` with loaders and splits."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigurationError, LoadError, MissingDependencyError
from ..schema import Example


def _to_example(record: Mapping[str, Any], inputs: Sequence[str] | None, fields: Mapping[str, str] | None) -> Example:
    data = dict(record)
    if fields:
        missing = [src for src in fields if src not in data]
        if missing:
            raise LoadError(f"Field mapping names {missing}, not in the record's fields {list(data)}")
        data = {fields.get(k, k): v for k, v in data.items()}
    example = Example(data)
    return example.with_inputs(*inputs) if inputs else example


def example_record(example: Example) -> bytes:
    """An example's values and input marks as canonical JSON bytes (what fingerprints hash)."""
    record = {"data": example.to_dict(), "inputs": sorted(example.input_keys or [])}
    return json.dumps(record, sort_keys=True, default=repr).encode("utf-8")


class Dataset:
    """An ordered, immutable collection of examples.

    Args:
        examples: the examples (``Example`` objects or dicts).
        inputs: names of input fields, applied to every example (``with_inputs``).
        name: a label used in metadata and reports.
    """

    def __init__(
        self, examples: Iterable[Example | Mapping[str, Any]], *, inputs: Sequence[str] | None = None, name: str = ""
    ) -> None:
        items = []
        for item in examples:
            example = item if isinstance(item, Example) else Example(item)
            if inputs:
                example = example.with_inputs(*inputs)
            items.append(example)
        self._examples: list[Example] = items
        self.name = name

    # ------------------------------------------------------------------ protocol
    def __len__(self) -> int:
        return len(self._examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Dataset(self._examples[index], name=self.name)
        return self._examples[index]

    def __repr__(self) -> str:
        return f"Dataset({self.name or 'unnamed'}, {len(self)} examples)"

    def stream(self) -> Iterator[Example]:
        """Iterate over the examples one at a time."""
        yield from self._examples

    def to_list(self) -> list[Example]:
        """The examples as a list."""
        return list(self._examples)

    def fingerprint(self) -> str:
        """A SHA-256 of the examples' content and input marks: equal data, equal fingerprint."""
        digest = hashlib.sha256()
        for example in self._examples:
            digest.update(example_record(example))
        return digest.hexdigest()

    def metadata(self) -> dict[str, Any]:
        """Name, size, field names, input fields and fingerprint."""
        fields: list[str] = []
        for example in self._examples:
            for key in example:
                if key not in fields:
                    fields.append(key)
        first = self._examples[0].input_keys if self._examples else None
        return {
            "name": self.name,
            "size": len(self),
            "fields": fields,
            "inputs": sorted(first) if first else [],
            "fingerprint": self.fingerprint(),
        }

    # ------------------------------------------------------------------ subsets
    def sample(self, k: int, seed: int = 0) -> Dataset:
        """``k`` examples drawn without replacement, reproducibly."""
        if not 0 <= k <= len(self):
            raise ConfigurationError(f"Cannot sample {k} examples from a dataset of {len(self)}")
        return Dataset(random.Random(seed).sample(self._examples, k), name=self.name)

    def shuffle(self, seed: int = 0) -> Dataset:
        """All examples in a reproducible random order."""
        items = list(self._examples)
        random.Random(seed).shuffle(items)
        return Dataset(items, name=self.name)

    def split(self, fractions: Sequence[float], seed: int | None = 0) -> list[Dataset]:
        """Split into parts of the given fractions (summing to 1).

        The examples are shuffled with ``seed`` first; ``seed=None`` keeps their order.
        """
        if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigurationError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
        items = self.shuffle(seed).to_list() if seed is not None else list(self._examples)
        parts: list[Dataset] = []
        start = 0
        for i, fraction in enumerate(fractions):
            end = len(items) if i == len(fractions) - 1 else start + round(fraction * len(items))
            parts.append(Dataset(items[start:end], name=self.name))
            start = end
        return parts

    def partition(self, n: int) -> list[Dataset]:
        """``n`` contiguous parts of nearly equal size (for distributing work)."""
        return [Dataset(part, name=self.name) for part in split_evenly(self._examples, n)]

    # ------------------------------------------------------------------ loaders
    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        inputs: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        name: str = "",
    ) -> Dataset:
        """From dicts. ``fields`` renames keys (``{"source_name": "field_name"}``)."""
        return cls((_to_example(r, inputs, fields) for r in records), name=name)

    @classmethod
    def from_jsonl(
        cls,
        path: str | os.PathLike[str],
        *,
        inputs: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        limit: int | None = None,
        name: str | None = None,
    ) -> Dataset:
        """From a JSON Lines file (one object per line)."""
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LoadError(f"{os.fspath(path)}:{number}: not valid JSON ({exc.msg})") from None
                if limit is not None and len(records) >= limit:
                    break
        return cls.from_records(records, inputs=inputs, fields=fields, name=name or os.path.basename(path))

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        inputs: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        delimiter: str = ",",
        limit: int | None = None,
        name: str | None = None,
    ) -> Dataset:
        """From a CSV file with a header row (for TSV, pass a tab as ``delimiter``)."""
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            records = []
            for row in reader:
                records.append({k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k})
                if limit is not None and len(records) >= limit:
                    break
        return cls.from_records(records, inputs=inputs, fields=fields, name=name or os.path.basename(path))

    @classmethod
    def from_tsv(cls, path: str | os.PathLike[str], **kwargs: Any) -> Dataset:
        """From a tab-separated file with a header row."""
        return cls.from_csv(path, delimiter="\t", **kwargs)

    @classmethod
    def from_pandas(
        cls, frame: Any, *, inputs: Sequence[str] | None = None, fields: Mapping[str, str] | None = None, name: str = ""
    ) -> Dataset:
        """From a pandas DataFrame (one example per row)."""
        return cls.from_records(frame.to_dict(orient="records"), inputs=inputs, fields=fields, name=name)

    @classmethod
    def from_huggingface(
        cls,
        path: str,
        split: str = "train",
        *,
        inputs: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        limit: int | None = None,
        **load_kwargs: Any,
    ) -> Dataset:
        """From the Hugging Face hub (needs the ``datasets`` package and hub access)."""
        try:
            import datasets
        except ImportError:
            raise MissingDependencyError("datasets", "huggingface", "Dataset.from_huggingface") from None
        data = datasets.load_dataset(path, split=split, **load_kwargs)
        records = data if limit is None else data.select(range(min(limit, len(data))))
        return cls.from_records(records, inputs=inputs, fields=fields, name=f"{path}:{split}")


def _bundled(name: str) -> Any:
    return resources.files("elixirml.data") / "files" / name


def sst2(*, limit: int | None = None) -> Dataset:
    """SST-2 sentiment, the 872 labelled dev sentences (bundled).

    Fields: ``sentence`` (input) and ``label`` (``"positive"``/``"negative"``).
    """
    with _bundled("sst2_dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    records = [
        {"sentence": text.strip(), "label": "positive" if label.strip() == "1" else "negative"} for text, label in rows
    ]
    return Dataset.from_records(records[:limit], inputs=["sentence"], name="sst2-dev")


def gsm8k(split: str = "train", *, limit: int | None = None) -> Dataset:
    """GSM8K grade-school math (MIT licence): bundled slices, 500 train and 200 test problems.

    Fields: ``question`` (input), ``answer`` (the worked solution ending ``#### N``) and
    ``gold`` (the final number as text).
    """
    files = {"train": "gsm8k_train_500.jsonl", "test": "gsm8k_test_200.jsonl"}
    if split not in files:
        raise ConfigurationError(f"gsm8k split must be 'train' or 'test', got {split!r}")
    records = []
    with _bundled(files[split]).open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            record["gold"] = record["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    return Dataset.from_records(records, inputs=["question"], name=f"gsm8k-{split}")


def squad(
    path: str | os.PathLike[str] | None = None, *, limit: int | None = None
) -> tuple[list[dict[str, Any]], Dataset]:
    """A file in SQuAD v1.1's JSON layout as a retrieval corpus and a question set.

    Without ``path``: the bundled slice, SQuAD v1.1's article "University_of_Notre_Dame" (55
    paragraphs, 269 questions; CC BY-SA 4.0).

    Returns ``(passages, dataset)``: the paragraphs as ``{"id", "text", "title"}`` dicts (ids
    ``"<article>-<n>"``) and one example per question with ``question`` (input), ``answers``
    (every gold answer text), ``answer`` (the first) and ``passage_id`` (its paragraph).

    Raises:
        LoadError: the file is not SQuAD JSON.
    """
    from ..errors import LoadError

    source: Any = _bundled("squad_notre_dame.json") if path is None else Path(path)
    name = "squad-notre-dame" if path is None else Path(path).stem
    try:
        data = json.loads(source.read_text(encoding="utf-8"))["data"]
        passages: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for article in data:
            for n, paragraph in enumerate(article["paragraphs"]):
                pid = f"{article['title']}-{n}"
                passages.append({"id": pid, "text": paragraph["context"], "title": article["title"]})
                for qa in paragraph["qas"]:
                    answers = list(dict.fromkeys(a["text"] for a in qa["answers"]))
                    records.append(
                        {"question": qa["question"], "answers": answers, "answer": answers[0], "passage_id": pid}
                    )
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise LoadError(f"{path} is not a SQuAD v1.1 JSON file ({type(exc).__name__}: {exc})") from None
    return passages, Dataset.from_records(records[:limit], inputs=["question"], name=name)


T = TypeVar("T")


def split_evenly(items: Sequence[T], n: int) -> list[list[T]]:
    """``n`` contiguous parts of ``items`` whose sizes differ by at most one (some empty when ``n > len(items)``)."""
    if n < 1:
        raise ConfigurationError(f"partition needs n >= 1, got {n}")
    size, extra = divmod(len(items), n)
    parts, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        parts.append(list(items[start:end]))
        start = end
    return parts
