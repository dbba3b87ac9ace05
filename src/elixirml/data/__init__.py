"""Data layer: the Dataset type, loaders, and bundled slices of public datasets (SST-2, GSM8K), a SQuAD reader."""

from ._dataset import Dataset, gsm8k, squad, sst2
from ._load import load_examples

__all__ = ["Dataset", "gsm8k", "load_examples", "squad", "sst2"]
