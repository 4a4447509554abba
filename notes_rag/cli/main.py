"""The `notes-rag` entry point: registers every command module on the app, then runs it.

Kept apart from `app.py` so that command modules import the app without an import cycle.
"""

from notes_rag.cli import chat, data, eval, index, speedrun, train  # noqa: F401  (each registers its commands)
from notes_rag.cli.app import app, main

__all__ = ["app", "main"]
