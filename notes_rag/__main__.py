"""`python -m notes_rag` runs the CLI."""

from notes_rag.cli.main import main

main()
