"""Fault injection, issue 30 row 3: model weights damaged in place (same size, bytes changed),
non-finite weights, a folder without a manifest. Each asserts one line naming the file, exit 1,
and that no answer is computed on damaged weights; plus the shipped release verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny_chat import write_tiny_checkpoint

from notes_rag.model import manifest
from notes_rag.model.checkpoint import CheckpointError, load_model
from notes_rag.model.release import default_model_dir


@pytest.fixture()
def ckpt(tmp_path, tok):
    manifest._verified.clear()
    return write_tiny_checkpoint(tmp_path / "model", tok)


def _ask(index, model, *extra) -> subprocess.CompletedProcess:
    args = ["ask", "Kto zaproponował model neuronu?", "--index", str(index), "--model", str(model), *extra]
    return subprocess.run([sys.executable, "-m", "notes_rag", *args], capture_output=True, timeout=300)


def _flip(path, at: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + n] = bytes(b ^ 0xFF for b in data[at : at + n])
    path.write_bytes(bytes(data))


def test_every_saved_checkpoint_has_a_manifest_that_verifies(ckpt):
    files = json.loads((ckpt / "manifest.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "config.json", "tokenizer.json"}
    assert manifest.check_folder(ckpt) == []


def test_weights_damaged_in_place_are_one_line_and_no_answer(ckpt, tiny_index):
    weights = ckpt / "model.safetensors"
    size = weights.stat().st_size
    _flip(weights, size // 2)  # same size, bytes changed: safetensors still loads it
    assert weights.stat().st_size == size
    result = _ask(tiny_index, ckpt)
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and result.stdout == b""
    assert err == [f"error: {weights} is damaged: its sha256 differs from manifest.json (restore the file or retrain)"]
    with pytest.raises(CheckpointError, match="is damaged"):
        load_model(ckpt)  # the torch path too (train-generator, finetune, chat with the model writing)
    as_json = _ask(tiny_index, ckpt, "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["kind"] == "user"


def test_non_finite_weights_without_a_manifest_are_one_line(ckpt, tiny_index):
    weights = ckpt / "model.safetensors"
    state = load_file(str(weights))
    name = sorted(state)[0]
    state[name] = np.full_like(state[name], np.nan)
    save_file(state, str(weights))
    (ckpt / "manifest.json").unlink()  # an older folder: still loads, but not on NaN weights
    result = _ask(tiny_index, ckpt)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and "RuntimeWarning" not in err
    assert f"{weights} holds non-finite weights" in err


def test_a_folder_without_a_manifest_still_loads(ckpt):
    (ckpt / "manifest.json").unlink()
    model, tok, config = load_model(ckpt)
    assert config["meta"]["stage"] == "test"
    manifest.write_manifest(ckpt)  # what doctor --fix does
    assert manifest.check_folder(ckpt) == []


def test_a_damaged_tokenizer_or_a_missing_listed_file_is_named(ckpt, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ckpt, copy)
    _flip(copy / "tokenizer.json", 10, 1)
    assert "tokenizer.json is damaged" in manifest.check_folder(copy)[0]
    data = json.loads((ckpt / "manifest.json").read_text())
    data["files"]["encoder-delta.safetensors"] = {"sha256": "0" * 64, "bytes": 1}
    (ckpt / "manifest.json").write_text(json.dumps(data))
    assert "encoder-delta.safetensors is missing" in manifest.check_folder(ckpt)[0]


def test_the_shipped_release_matches_its_manifest():
    """models/ (weights, config, tokenizer, encoder delta): rewrite its manifest.json with
    `notes_rag.model.manifest.write_manifest("models")` after replacing a file by hand."""
    manifest._verified.clear()
    assert manifest.check_folder(default_model_dir()) == []


def test_non_finite_activations_are_one_line_and_nothing_is_shown(ckpt, monkeypatch):
    from test_chat import FakeRetriever, _assistant

    from notes_rag.errors import NotesRagError

    monkeypatch.setattr("notes_rag.chat.writer.abstention_margin", lambda *a: float("nan"))
    assistant = _assistant(ckpt, FakeRetriever())
    shown = []
    with pytest.raises(NotesRagError, match="computed NaN or inf"):
        for piece in assistant.stream([], "Czy to działa?"):
            shown.append(piece)
    assert shown == []
