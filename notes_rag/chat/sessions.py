"""Conversation history and saved chat sessions, under the user's data directory.

The history lives outside the model: `History` holds every turn; the answer pipeline decides how
many recent ones fit the prompt. Sessions are JSON files (written atomically)::

    $NOTES_RAG_DATA or $XDG_DATA_HOME/notes-rag or ~/.local/share/notes-rag/
      sessions/NAME.json    {"format", "name", "saved", "settings", "turns": [{"role", "content"}]}
      input_history         readline's history of typed lines (chat)

The chat autosaves every exchange to `sessions/chat-<date>-<time>.json` (or to the session it
resumed); `load_session("last")` is the newest session file. A save the sessions folder refuses
(not writable, the name is a folder, a full disk) goes to the first place that takes it
(`save_anywhere`): another name beside it, then `$TMPDIR/notes-rag-sessions-<user>/`, then the
current folder, and says why.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.chat.format import Turn
from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json, read_json

FORMAT = "notes-rag-session/1"
LAST = "last"  # `chat --resume` / `/load last`: the newest session
_NAME = re.compile(r"[\w][\w.-]{0,99}")


def data_dir() -> Path:
    """`$NOTES_RAG_DATA`, else `$XDG_DATA_HOME/notes-rag`, else `~/.local/share/notes-rag`."""
    if os.environ.get("NOTES_RAG_DATA"):
        return Path(os.environ["NOTES_RAG_DATA"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "notes-rag"


def sessions_dir() -> Path:
    return data_dir() / "sessions"


def input_history_file() -> Path:
    return data_dir() / "input_history"


@dataclass
class History:
    """The turns of one conversation, oldest first."""

    turns: list[Turn] = field(default_factory=list)

    def add(self, question: str, answer: str) -> None:
        self.turns += [Turn("user", question), Turn("assistant", answer)]

    def questions(self) -> list[str]:
        return [t.content for t in self.turns if t.role == "user"]

    def reset(self) -> None:
        self.turns.clear()

    def __len__(self) -> int:
        return len(self.turns)


@dataclass
class Session:
    name: str
    history: History
    settings: dict = field(default_factory=dict)  # k, mode, temperature, system at save time


def session_path(name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise NotesRagError(f"bad session name {name!r}: use letters, digits, '.', '-' and '_'")
    return sessions_dir() / f"{name}.json"


def save_session(name: str, history: History, settings: dict | None = None) -> Path:
    path = session_path(name)
    _write(path, name, history, settings)
    return path


def new_session_name() -> str:
    """The autosave name of a new conversation: `chat-20261206-224501`."""
    return dt.datetime.now().strftime("chat-%Y%m%d-%H%M%S")


def fallback_dir() -> Path:
    """Where sessions go when the sessions folder refuses them (per user, in the temp folder)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (a container without passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"notes-rag-sessions-{user}"


def save_anywhere(name: str, history: History, settings: dict | None = None) -> tuple[Path, str | None]:
    """Save like `save_session`; when the sessions folder refuses, to the first place that takes
    it. (path, None) when saved where asked, (path, why the sessions folder refused) otherwise;
    `NotesRagError` (one line, every place tried) when nowhere takes it."""
    first = session_path(name)  # a bad name is the user's to fix, not a place to fall back from
    try:
        return save_session(name, history, settings), None
    except OSError as e:
        why = _why(e, first)
    stamp = dt.datetime.now().strftime("%H%M%S")
    places = [
        first.with_name(f"{name}-{stamp}.json"),
        fallback_dir() / f"{name}.json",
        Path.cwd() / f"notes-rag-session-{name}.json",
    ]
    for path in places:
        try:
            _write(path, name, history, settings)
            return path, why
        except OSError:
            continue
    raise NotesRagError(f"could not save the conversation: {why}; also refused: {', '.join(map(str, places))}")


def _why(e: OSError, path: Path) -> str:
    if path.is_dir():
        return f"{path} is a folder"
    return f"{e.strerror or e}: {e.filename or path}"


def _write(path: Path, name: str, history: History, settings: dict | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        path,
        {
            "format": FORMAT,
            "name": name,
            "saved": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "settings": settings or {},
            "turns": [{"role": t.role, "content": t.content} for t in history.turns],
        },
    )


def list_sessions() -> list[str]:
    return sorted(p.stem for p in sessions_dir().glob("*.json"))


def last_session() -> Path | None:
    """The newest session file: in the sessions folder, or where a refused save went."""
    found = []
    for folder in (sessions_dir(), fallback_dir()):
        try:
            found += [(p.stat().st_mtime, p) for p in folder.glob("*.json") if p.is_file()]
        except OSError:
            continue
    return max(found)[1] if found else None


def load_session(name_or_path: str | Path) -> Session:
    """A saved session by name, any session file by path, or "last": the newest."""
    if str(name_or_path) == LAST and not session_path(LAST).is_file():
        newest = last_session()
        if newest is None:
            raise NotesRagError(f"no saved session in {sessions_dir()} yet")
        return read_session_file(newest)
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = session_path(str(name_or_path))
        if not path.is_file():
            known = ", ".join(list_sessions()) or "none saved yet"
            raise NotesRagError(f"no session {name_or_path!r} in {sessions_dir()} (sessions: {known})")
    return read_session_file(path)


def read_session_file(path: Path) -> Session:
    """A saved session, or a bare JSON list of {"role", "content"} turns (for `ask --history`)."""
    data = read_json(path, "history file")
    raw_turns = data if isinstance(data, list) else data.get("turns") if isinstance(data, dict) else None
    try:
        turns = [Turn(t["role"], str(t["content"])) for t in raw_turns]
    except (TypeError, KeyError, ValueError) as e:
        raise NotesRagError(
            f'{path} is not a session: expected {{"turns": [{{"role", "content"}}, …]}} ({e})'
        ) from None
    settings = data.get("settings", {}) if isinstance(data, dict) else {}
    name = data.get("name", Path(path).stem) if isinstance(data, dict) else Path(path).stem
    return Session(name, History(turns), settings if isinstance(settings, dict) else {})
