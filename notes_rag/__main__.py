"""`python -m notes_rag` runs the CLI."""

from .cli import main

main()
