"""Where the released model lives, and how a checkpoint is named in reports.

The release is the `models/` folder at the root of the repository the package lives in; every
command that answers takes `--model DIR` instead, and falls back to it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.model.folder import CONFIG_FILE, resolve_folder


def default_model_dir() -> Path:
    """The release model: `models/` at the root of the repository the package lives in."""
    return Path(__file__).resolve().parents[2] / "models"


def resolve_model(model: Path | None) -> Path:
    """`--model DIR` if given, else the repository's `models/` when it holds a checkpoint."""
    if model is not None:
        return Path(model)
    folder = default_model_dir()
    if (resolve_folder(folder) / CONFIG_FILE).is_file():
        return folder
    raise NotesRagError(
        f"no model in {folder}; pass --model DIR (e.g. --model runs/sft/best) or train one with "
        "notes-rag pretrain and notes-rag finetune, then copy its best/ folder to models/"
    )


def model_id(folder: Path, config: dict) -> str:
    """`<stage>-step<N>-<hash of config.json>`: names the checkpoint in reports."""
    meta = config.get("meta", {})
    digest = hashlib.sha256((resolve_folder(Path(folder)) / CONFIG_FILE).read_bytes()).hexdigest()[:8]
    return f"{meta.get('stage', 'model')}-step{meta.get('step', '?')}-{digest}"
