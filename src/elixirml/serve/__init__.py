"""Serve stored programs over HTTP (the lead merges this with the serve helper's package)."""
