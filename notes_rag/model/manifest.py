"""`manifest.json`: the sha256 of every file a model folder's loading depends on.

    write_manifest(folder)      # after saving (write_checkpoint, promote): hashes what is there
    verify_folder(folder)       # at load: one-line CheckpointError on a damaged file
    check_folder(folder)        # `notes-rag doctor`: every listed file, the encoder delta too

    manifest.json  {"format": "notes-rag-manifest/1", "files": {"model.safetensors":
                    {"sha256": "…", "bytes": 13670228}, …}, "finite": true}

Listed: the weights (`model.safetensors`, or the shards and their index), `config.json`,
`tokenizer.json` and, in a release, `encoder-delta.safetensors`, `unit-reranker.safetensors`
(model/unit_reranker.py) and their headers. `finite` records
that every weight was a finite number when the manifest was written (a diverged run's NaNs).

At load `verify_folder` hashes the model's own files (weights, config, tokenizer): measured on
the 13.7 MB release (AMD EPYC, 2 cores, 2026-12-06) sha256 takes 9.9 ms, so the full hash runs
at every load rather than a cheap partial one (the issue's bound is 50 ms). The encoder delta
(10 ms more) is checked where it is read (index/encoder_delta.py, by its own header) and by
`notes-rag doctor`. A folder without a manifest (older runs) still loads: its weights are read
once and checked finite instead (6 ms). A mismatch, a listed file gone, or non-finite weights
are one line naming the file; never an answer computed on damaged weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from notes_rag.fileio import atomic_write_json
from notes_rag.model.folder import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, resolve_folder

MANIFEST_FILE = "manifest.json"
FORMAT = "notes-rag-manifest/1"
SHARD_INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
# the retrieval encoder's delta and the unit reranker: each checked by its own header where it is read
DELTA_FILES = ("encoder-delta.safetensors", "encoder-delta.json", "unit-reranker.safetensors", "unit-reranker.json")

_verified: dict[tuple, bool] = {}  # (folder, files' stat) -> verified, so one process hashes once


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_files(folder: Path) -> list[str]:
    """Names of the files the model load reads: weights (or shards + index), config, tokenizer."""
    folder = Path(folder)
    names = []
    if (folder / WEIGHTS_FILE).is_file():
        names.append(WEIGHTS_FILE)
    elif (folder / SHARD_INDEX).is_file():
        try:
            index = json.loads((folder / SHARD_INDEX).read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            shards = []
        names += [SHARD_INDEX, *shards]
    return names + [n for n in (CONFIG_FILE, TOKENIZER) if (folder / n).is_file()]


def write_manifest(folder: Path, finite: bool | None = None) -> Path:
    """Hash the folder's loadable files (and the delta files, when there) into manifest.json.
    `finite`: whether the weights are all finite numbers; None reads them to find out."""
    folder = Path(folder)
    names = [*model_files(folder), *(n for n in DELTA_FILES if (folder / n).is_file())]
    if finite is None:
        finite = weights_finite(folder)
    files = {n: {"sha256": sha256(folder / n), "bytes": (folder / n).stat().st_size} for n in names}
    path = folder / MANIFEST_FILE
    atomic_write_json(path, {"format": FORMAT, "files": files, "finite": finite})
    return path


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, None when it has none; a one-line error when it is unreadable."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
            raise ValueError(f"not a {FORMAT} manifest")
        return data
    except (OSError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"{path} is unreadable ({e}): restore it, or remake it with notes-rag doctor --fix"
        ) from None


def weights_finite(folder: Path) -> bool | None:
    """True when every weight is a finite number, False when one is not; None when numpy cannot
    read the weights (bf16 shards), as then the torch load checks."""
    import numpy as np
    from safetensors.numpy import load_file

    names = [n for n in model_files(folder) if n.endswith(".safetensors")]
    if not names:
        return None
    try:
        for name in names:
            for a in load_file(str(Path(folder) / name)).values():
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    return False
    except Exception:  # noqa: BLE001 - an unreadable dtype or a damaged file: other checks say which
        return None
    return True


def _stat_key(folder: Path, names: list[str]) -> tuple:
    out = [str(folder.resolve())]
    for n in names:
        st = (folder / n).stat()
        out.append((n, st.st_size, st.st_mtime_ns))
    return tuple(out)


def verify_folder(folder: Path, names: list[str] | None = None) -> None:
    """Raise `CheckpointError` (one line naming the file) when a file the model load reads
    differs from the manifest, or the weights are not finite numbers. `names`: the files to check
    (default: the model's own, `model_files`)."""
    folder = resolve_folder(Path(folder))
    if not folder.is_dir():
        return  # the loader says what is missing
    names = model_files(folder) if names is None else names
    try:
        key = _stat_key(folder, [n for n in names if (folder / n).is_file()])
    except OSError:
        return
    if _verified.get(key):
        return
    manifest = read_manifest(folder)
    if manifest is None:
        if weights_finite(folder) is False:
            raise CheckpointError(_not_finite(folder))
        _verified[key] = True
        return
    files = manifest["files"]
    for name in names:
        entry = files.get(name)
        if entry is None:
            continue  # written after the manifest (e.g. a copied delta): not vouched for, not refused
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {MANIFEST_FILE}): restore it")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointError(
                f"{path} is corrupt or truncated: {size} bytes where {MANIFEST_FILE} lists {entry.get('bytes')}"
            )
        if sha256(path) != entry.get("sha256"):
            raise CheckpointError(
                f"{path} is damaged: its sha256 differs from {MANIFEST_FILE} (restore the file or retrain)"
            )
    if manifest.get("finite") is False:
        raise CheckpointError(_not_finite(folder))
    _verified[key] = True


def _not_finite(folder: Path) -> str:
    weights = [n for n in model_files(folder) if n.endswith(".safetensors")]
    where = folder / weights[0] if len(weights) == 1 else folder
    return f"{where} holds non-finite weights (NaN or inf): damaged or diverged; restore it or use an earlier one"


def check_folder(folder: Path) -> list[str]:
    """Every listed file of the manifest checked (the doctor's full check): one line per
    problem, [] when the folder is sound."""
    folder = resolve_folder(Path(folder))
    try:
        manifest = read_manifest(folder)
    except CheckpointError as e:
        return [str(e)]
    if manifest is None:
        problems = [
            f"{folder} has no {MANIFEST_FILE}: its files cannot be verified (notes-rag doctor --fix writes one)"
        ]
        if weights_finite(folder) is False:
            problems.append(_not_finite(folder))
        return problems
    try:
        _verified.clear()
        verify_folder(folder, list(manifest["files"]))
    except CheckpointError as e:
        return [str(e)]
    return []
