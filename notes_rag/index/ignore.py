"""Which entries of a notes folder are left out of the index, and why.

- Hidden files and folders (`.git`, `.obsidian`, the index's own `.notes-rag`) hold tool state.
- The index's own folder, wherever `--out` puts it inside the notes.
- Ignore files in gitignore syntax (read with pathspec): the notes' `.gitignore` and
  `.notes-ragignore`, in the folder and in any subfolder, each relative to its own folder.

Precedence is git's: the deepest folder's rules first, and within one folder `.notes-ragignore`
over `.gitignore`, so `!drafts/keep.md` in `.notes-ragignore` indexes a file git ignores; the
last matching line of a file decides. As in git, a file inside an ignored folder cannot be
re-included (the folder is not even walked).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

# Deepest first, then this order: the first file with a matching line decides.
IGNORE_FILES = (".notes-ragignore", ".gitignore")


@dataclass(frozen=True)
class _Rules:
    base: str  # the folder the file sits in, relative to the notes folder ("" for the top)
    source: str  # the ignore file, relative to the notes folder, for the reason shown
    spec: GitIgnoreSpec
    lines: tuple[int, ...]  # source line number of each pattern


def _read_rules(folder: Path, base: str, name: str) -> _Rules | None:
    path = folder / base / name
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        return None
    kept = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip() and not ln.startswith("#")]
    if not kept:
        return None
    spec = GitIgnoreSpec.from_lines([ln for _, ln in kept])
    source = f"{base}/{name}" if base else name
    return _Rules(base, source, spec, tuple(i for i, _ in kept))


class IgnoreRules:
    """The rules in force while walking a notes folder top-down: `enter(dir)` as each folder is
    reached, then `reason(path)` for its entries."""

    def __init__(self, folder: Path, index_dir: Path | None = None):
        self.folder = Path(folder)
        self.index_dir = Path(index_dir).resolve() if index_dir else None
        self._rules: dict[str, list[_Rules]] = {}

    def enter(self, rel_dir: str) -> None:
        found = [r for name in IGNORE_FILES if (r := _read_rules(self.folder, rel_dir, name))]
        if found:
            self._rules[rel_dir] = found

    def _chain(self, rel_path: str) -> list[_Rules]:
        parts = rel_path.split("/")[:-1]
        bases = [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return [r for base in reversed(bases) for r in self._rules.get(base, [])]

    def reason(self, rel_path: str, is_dir: bool) -> tuple[str, str] | None:
        """Why `rel_path` (relative to the notes folder, '/'-separated) is left out, as (kind,
        reason) with kind "index", "hidden" or "ignored"; None when it is not."""
        if is_dir and self.index_dir is not None and (self.folder / rel_path).resolve() == self.index_dir:
            return "index", "the index's own folder"
        if rel_path.rsplit("/", 1)[-1].startswith("."):
            return "hidden", "hidden folder" if is_dir else "hidden file"
        for rules in self._chain(rel_path):
            local = rel_path[len(rules.base) + 1 :] if rules.base else rel_path
            result = rules.spec.check_file(local + "/" if is_dir else local)
            if result.include is None:
                continue
            if not result.include:
                return None  # re-included by a "!" line
            line = rules.lines[result.index]
            return "ignored", f"ignored by {rules.source}:{line} ({rules.spec.patterns[result.index].pattern})"
        return None
