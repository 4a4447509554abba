"""The `notes-rag` entry point: names every command module, then runs the app.

Kept apart from `app.py` so that command modules import the app without an import cycle. The
modules are imported lazily (cli/app.py `LazyGroup`): only the one whose command runs.
"""

from notes_rag.cli.app import app, command_modules, main

# each of these modules of notes_rag/cli/ registers its commands on `app`
command_modules("align", "chat", "data", "doctor", "eval", "index", "quiz", "speedrun", "train")

__all__ = ["app", "main"]
