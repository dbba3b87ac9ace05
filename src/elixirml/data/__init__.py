"""Bundled data files (small slices of public datasets)."""
