"""A checkpoint folder's file names and its config, read without torch.

`chat`/`ask` answer through the numpy model by default (model/numpy_gpt.py) and name the model
in reports (release.py); both read the folder with these, so they never import torch.
checkpoint.py (which writes and loads the torch model) re-exports them.
"""

from __future__ import annotations

import json
from pathlib import Path

from notes_rag.errors import NotesRagError

FORMAT = "notes-rag-gpt/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(NotesRagError):
    """A checkpoint folder cannot be used."""


def resolve_folder(folder: Path) -> Path:
    """The folder itself, or its `.old` twin when a crash interrupted a swap."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():
        return old
    return folder


def read_config(folder: Path) -> dict:
    folder = resolve_folder(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    if not path.is_file():
        raise CheckpointError(f"not a notes-rag checkpoint (no {CONFIG_FILE}): {folder}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt {path}: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint config")
    return config
