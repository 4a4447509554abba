"""Model checkpoints: one folder = safetensors weights + JSON config + tokenizer file.

    model.safetensors   weights (no pickle: safetensors only), or shards + their index (model/sharding.py)
    config.json         {"format", "model": GPTConfig, "tokenizer": fingerprint, "meta": {...}}
    tokenizer.json      the vocabulary the weights were trained with
    manifest.json       sha256 of each file above, and whether the weights are finite (model/manifest.py)

`load_model` is the single way every command gets a model; it validates everything and raises
`CheckpointError` (one readable line) for a missing, truncated, corrupt or mismatched folder.
Folders are replaced atomically: written beside the target, then swapped in by rename.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from notes_rag.fileio import atomic_write_json
from notes_rag.model.folder import (  # noqa: F401  (the folder's names, read without torch; re-exported)
    CONFIG_FILE,
    FORMAT,
    WEIGHTS_FILE,
    CheckpointError,
    read_config,
    resolve_folder,
)
from notes_rag.model.gpt import GPT, GPTConfig
from notes_rag.model.manifest import verify_folder, write_manifest
from notes_rag.model.sharding import INDEX_FILE, read_weights, write_shards
from notes_rag.model.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerError, load_tokenizer


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights to save: tied output head stored once, DDP/compile wrappers unwrapped."""
    model = unwrap(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def unwrap(model: torch.nn.Module) -> GPT:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def write_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    tok: Tokenizer,
    meta: dict | None = None,
    extra_files: dict[str, dict[str, torch.Tensor] | dict] | None = None,
    shards: tuple[str, int] | None = None,
) -> None:
    """Write a complete checkpoint folder atomically (old folder stays valid until the swap).

    `extra_files` maps file names to tensors (saved as safetensors) or JSON-able dicts, e.g. the
    optimizer and data-loader state of a training run. `shards` = (dtype, max bytes per file)
    writes the weights as shards (a release) instead of one fp32 `model.safetensors`.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = model_state(model)
        if shards is None:
            save_file(state, str(tmp / WEIGHTS_FILE))
        else:
            write_shards(tmp, state, *shards)
        tok.save(tmp / TOKENIZER_FILE)
        for name, content in (extra_files or {}).items():
            if name.endswith(".safetensors"):
                save_file(content, str(tmp / name))
            else:
                atomic_write_json(tmp / name, content)
        config = {
            "format": FORMAT,
            "model": unwrap(model).config.to_dict(),
            "tokenizer": tok.fingerprint,
            "meta": meta or {},
        }
        atomic_write_json(tmp / CONFIG_FILE, config)
        write_manifest(tmp, finite=all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()))
        _fsync_dir(tmp)
        swap_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_folder(new: Path, target: Path) -> None:
    """Replace `target` by `new`; a crash in between leaves `target` or `target.old` intact."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_model(folder: Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load (model in eval mode, tokenizer, config dict) from a checkpoint folder, its files
    verified against its manifest first (model/manifest.py)."""
    folder = resolve_folder(Path(folder))
    config = read_config(folder)
    try:
        cfg = GPTConfig.from_dict(config["model"])
        cfg.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"bad model config in {folder / CONFIG_FILE}: {e}") from None
    try:
        tok = load_tokenizer(folder / TOKENIZER_FILE)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from None
    if tok.fingerprint != config.get("tokenizer"):
        raise CheckpointError(f"tokenizer in {folder} does not match the one the weights were trained with")
    if tok.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"tokenizer has {tok.vocab_size} tokens but the model expects {cfg.vocab_size}")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file() and not (folder / INDEX_FILE).is_file():
        raise CheckpointError(f"missing weights file {weights}")
    try:
        state = read_weights(folder, device=str(device))
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"corrupt or truncated weights in {folder}: {e}") from None
    model = GPT(cfg).to(device)
    load_weights(model, state, str(weights))
    verify_folder(folder)  # bytes changed in place load fine above: the manifest's sha256 tells
    model.eval()
    return model, tok, config


def upgrade_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older layouts, loaded exactly:
    - before the fused QKV projection (2026-11-23) each layer's query and key/value weights were
      apart; stacked in that order they are the fused weight;
    - readers saved before the pooled sentence evidence (2026-11-27) lack `read_pool`; at zero
      it adds nothing, which is what those readers computed."""
    out = dict(state)
    if "read_tok.weight" in out and "read_pool.weight" not in out:
        out["read_pool.weight"] = torch.zeros(1, out["read_tok.weight"].shape[1], dtype=out["read_tok.weight"].dtype)
    for name in [n for n in state if n.endswith(".attn.c_q.weight")]:
        prefix = name[: -len("c_q.weight")]
        if prefix + "c_kv.weight" in out:
            out[prefix + "c_qkv.weight"] = torch.cat([out.pop(name), out.pop(prefix + "c_kv.weight")])
    return out


def load_weights(model: GPT, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy `state` into `model`, checking names and shapes first."""
    state = upgrade_state(state)
    expected = model_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{origin} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, t in expected.items():
        if state[name].shape != t.shape:
            raise CheckpointError(f"{origin}: {name} has shape {tuple(state[name].shape)}, expected {tuple(t.shape)}")
    model.load_state_dict(state, strict=not model.config.tie_embeddings)
