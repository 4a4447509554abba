"""Keep an index current while its notes change (`notes-rag index DIR --watch`).

    watch_index(folder, None, encoder, on_update=print, stop=threading.Event())   # blocks

`watchfiles` reports changes in the folder; after each burst of them (an editor's save is a
write, a rename and a touch) `build.update_index` runs as usual: changed and added files are
re-embedded, deleted ones dropped, and the new generation is swapped in atomically, so a search
never sees half an update. A chat already running picks it up before its next question
(`search.Retriever.refresh`). Changes inside the index folder and hidden folders are not
watched (the index writes its own folder; `.git` churns). An update that fails (every note
deleted, a full disk) is reported and watching goes on: the last good index stays live.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.index.build import IndexReport, default_index_dir, update_index
from notes_rag.index.config import IndexConfig


@dataclass(frozen=True)
class WatchConfig:
    # Changes closer together than this are one update: a save, or `git pull`, is many events.
    debounce_ms: int = 500
    # How long the watcher waits for a quiet moment to check for changes it may have missed
    # while it started (a file saved between the first index run and the watcher's start).
    first_check_ms: int = 300
    # An `index` run of the user's own holds the lock: wait for it rather than fail the update.
    lock_wait_s: float = 120.0


def _watched(folder: Path, index_dir: Path) -> Callable[[object, str], bool]:
    """The watchfiles filter: not the index folder, nor any hidden folder or file."""
    folder, index_dir = folder.resolve(), index_dir.resolve()

    def keep(_change, path: str) -> bool:
        p = Path(path).resolve()
        if p == index_dir or index_dir in p.parents:
            return False
        try:
            parts = p.relative_to(folder).parts
        except ValueError:
            return False
        return not any(part.startswith(".") for part in parts)

    return keep


def watch_index(
    folder: Path,
    index_dir: Path | None,
    encoder,
    encoder_path: str | None = None,
    cfg: IndexConfig = IndexConfig(),
    wcfg: WatchConfig = WatchConfig(),
    on_update: Callable[[IndexReport], None] | None = None,
    on_error: Callable[[NotesRagError], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Re-index `folder` after each burst of changes until `stop` is set (or Ctrl-C, which
    raises KeyboardInterrupt). `on_update` gets each update's report when it changed the
    index, `on_error` each update's NotesRagError."""
    import watchfiles

    folder = Path(folder)
    index_dir = Path(index_dir) if index_dir else default_index_dir(folder)
    first = True
    for changes in watchfiles.watch(
        folder,
        watch_filter=_watched(folder, index_dir),
        debounce=wcfg.debounce_ms,
        rust_timeout=wcfg.first_check_ms,
        yield_on_timeout=True,
        stop_event=stop,
    ):
        if not changes and not first:
            continue  # a quiet moment: nothing to do
        first = False
        try:
            report = update_index(folder, index_dir, encoder, encoder_path, cfg, lock_wait_s=wcfg.lock_wait_s)
        except NotesRagError as e:
            if on_error:
                on_error(e)
            continue
        if on_update and (report.added or report.changed or report.removed or report.repaired):
            on_update(report)
