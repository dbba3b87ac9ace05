"""Examples by reference: a .jsonl/.csv/.tsv file or a bundled set, as the CLI and the job server name them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import LoadError
from ..schema import Example
from ._dataset import Dataset, gsm8k, sst2

BUNDLED = ("sst2", "gsm8k", "gsm8k:test")


def load_examples(reference: str, inputs: str | Sequence[str] | None = None, limit: int | None = None) -> list[Example]:
    """Examples from a .jsonl/.csv/.tsv file or a bundled set (``sst2``, ``gsm8k``, ``gsm8k:test``).

    Args:
        reference: a file path or the name of a bundled set.
        inputs: the input fields (comma-separated or a list); needed where the data does not mark them.
        limit: use only the first ``limit`` examples.

    Raises:
        LoadError: no such file, an unknown format, or no input fields marked.
    """
    if isinstance(inputs, str):
        fields: list[str] | None = [f.strip() for f in inputs.split(",") if f.strip()]
    else:
        fields = list(inputs) if inputs else None
    name, _, split = reference.partition(":")
    if name == "sst2" and not Path(reference).exists():
        data = sst2(limit=limit)
    elif name == "gsm8k" and not Path(reference).exists():
        data = gsm8k(split or "train", limit=limit)
    else:
        path = Path(reference)
        if not path.is_file():
            raise LoadError(f"No such data file: {reference} (or use sst2, gsm8k, gsm8k:test)")
        if path.suffix == ".jsonl":
            data = Dataset.from_jsonl(path, inputs=fields, limit=limit)
        elif path.suffix in (".csv", ".tsv"):
            data = Dataset.from_csv(path, inputs=fields, delimiter="\t" if path.suffix == ".tsv" else ",", limit=limit)
        else:
            raise LoadError(f"Unknown data format {path.suffix!r}; use .jsonl, .csv or .tsv")
    return mark_inputs(data.to_list(), fields)


def mark_inputs(examples: list[Any], fields: Sequence[str] | None) -> list[Example]:
    """``examples`` (Examples or dicts) with ``fields`` marked as inputs; every example must end up marked.

    Raises:
        LoadError: no input fields are marked.
    """
    out = [e if isinstance(e, Example) else Example(e) for e in examples]
    if fields:
        out = [e.with_inputs(*fields) for e in out]
    if out and out[0].input_keys is None:
        raise LoadError("Mark the input fields (--inputs field1,field2, or inputs=[...])")
    return out
