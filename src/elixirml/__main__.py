"""``python -m elixirml`` runs the command line."""

from .cli import main

main()
