"""Options shared by several commands, defined once. Their defaults are read from the config
dataclasses (`AnswerConfig`, `index.config`), never written here a second time."""

from __future__ import annotations

import typer

from notes_rag.chat.assistant import AnswerConfig
from notes_rag.index.config import MODES


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r} is not a retrieval mode; use one of {', '.join(MODES)}")
    return mode


INDEX = typer.Option(None, "--index", help="Index folder to read (default: ./.notes-rag, else ./corpus/.notes-rag).")
MODEL = typer.Option(None, "--model", help="Model folder (default: the repository's models/).")
K = typer.Option(AnswerConfig.k, "-k", "--k", min=1, help="Passages retrieved (and given to the model).")
MODE = typer.Option(AnswerConfig.mode, "--mode", callback=_check_mode, help=f"Retrieval mode: {', '.join(MODES)}.")
