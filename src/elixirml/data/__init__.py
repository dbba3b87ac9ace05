"""Data layer: the Dataset type, loaders, and bundled slices of public datasets (SST-2, GSM8K), a SQuAD reader."""

from ._dataset import Dataset, gsm8k, squad, sst2

__all__ = ["Dataset", "gsm8k", "squad", "sst2"]
