"""Data layer: the Dataset type, loaders, and bundled slices of public datasets (SST-2, GSM8K), a SQuAD reader."""

from ._dataset import Dataset, example_record, gsm8k, split_evenly, squad, sst2
from ._load import BUNDLED, load_examples, mark_inputs

__all__ = [
    "BUNDLED",
    "Dataset",
    "example_record",
    "gsm8k",
    "load_examples",
    "mark_inputs",
    "split_evenly",
    "squad",
    "sst2",
]
