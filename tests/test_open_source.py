"""Jumping to the source: OSC 8 links only on consoles that show them, the editor command line
per editor, and `/open N` (a real editor process, or the printed place without one)."""

from __future__ import annotations

import io
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from notes_rag.chat.answer import Answer, Source, Timings
from notes_rag.cli.open_source import editor_command, supports_links
from notes_rag.cli.repl import ChatState, run_command, source_text, sources_table

OSC8 = "\x1b]8;"


@pytest.fixture()
def notes(tmp_path):
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    (tmp_path / "notes" / "sub" / "a b.md").write_text("# T\n\nzdanie\n" * 10, encoding="utf-8")
    (tmp_path / "notes" / "slides.pdf").write_bytes(b"%PDF-1.4\n")
    return tmp_path / "notes"


def _answer(*sources: Source) -> Answer:
    return Answer("q", "a [1]", False, None, "pl", list(sources), [1], [], 0.9, 0.8, Timings(1.0, 0.1, None, 0.2))


NOTE = Source(1, "sub/a b.md", 12, 18, "T", 0.9, "zdanie")
PAGE = Source(2, "slides.pdf", 3, 9, "", 0.8, "slajd", location="p12")


def _render(renderable, **console) -> str:
    out = io.StringIO()
    Console(file=out, width=100, **console).print(renderable)
    return out.getvalue()


def test_links_only_where_the_console_shows_them(notes):
    terminal = Console(file=io.StringIO(), force_terminal=True, color_system="standard")
    assert supports_links(terminal, {"TERM": "xterm-256color"})
    assert not supports_links(terminal, {"TERM": "dumb"}) and not supports_links(terminal, {"TERM": "linux"})
    assert not supports_links(Console(file=io.StringIO()), {"TERM": "xterm-256color"})  # piped

    linked = _render(sources_table(_answer(NOTE, PAGE), notes), force_terminal=True, color_system="standard")
    assert OSC8 in linked and (notes / "sub" / "a b.md").resolve().as_uri() in linked
    assert (notes / "slides.pdf").resolve().as_uri() in linked
    assert "sub/a b.md:12-18" in linked and "slides.pdf:p12" in linked
    head = _render(source_text(_answer(NOTE), 1, notes), force_terminal=True, color_system="standard")
    assert OSC8 in head
    assert OSC8 not in _render(sources_table(_answer(NOTE), None), force_terminal=True, color_system="standard")
    assert OSC8 not in _render(sources_table(_answer(NOTE), notes))  # a file, not a terminal: plain text


def test_a_missing_file_is_not_linked(notes):
    gone = Source(1, "gone.md", 1, 2, "", 0.5, "x")
    assert OSC8 not in _render(sources_table(_answer(gone), notes), force_terminal=True, color_system="standard")


@pytest.mark.parametrize(
    "editor, expected",
    [
        ("vi", ["vi", "+12", "F"]),
        ("vim", ["vim", "+12", "F"]),
        ("/usr/bin/nvim", ["/usr/bin/nvim", "+12", "F"]),
        ("nano", ["nano", "+12", "F"]),
        ("emacs -nw", ["emacs", "-nw", "+12", "F"]),
        ("code --wait", ["code", "--wait", "-g", "F:12"]),
        ("codium", ["codium", "-g", "F:12"]),
        ("subl", ["subl", "F:12"]),
        ("gedit", ["gedit", "F"]),  # an editor we do not know: the file, at its start
    ],
)
def test_editor_command_per_editor(editor, expected):
    assert editor_command(Path("F"), 12, {"EDITOR": editor}) == expected


def test_visual_wins_and_no_editor_means_no_command():
    assert editor_command(Path("F"), 3, {"VISUAL": "code", "EDITOR": "vim"}) == ["code", "-g", "F:3"]
    assert editor_command(Path("F"), 3, {}) is None and editor_command(Path("F"), 3, {"EDITOR": " "}) is None
    assert editor_command(Path("F"), None, {"EDITOR": "vim"}) == ["vim", "F"]  # page or cell: no line


def _fake_editor(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """An executable named like an editor that records its arguments."""
    log = tmp_path / f"{name}.args"
    exe = tmp_path / "bin" / name
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, log


def _state(notes: Path, *sources: Source, index_dir: Path | None = None) -> ChatState:
    index_dir = index_dir or notes / ".notes-rag"
    retriever = SimpleNamespace(index_dir=index_dir, meta={"notes": str(notes.resolve())})
    return ChatState(SimpleNamespace(retriever=retriever, cfg=None), last=_answer(*sources))


def test_open_runs_the_editor_at_the_line(notes, tmp_path, monkeypatch):
    exe, log = _fake_editor(tmp_path, "vim")
    monkeypatch.setenv("VISUAL", str(exe))
    state = _state(notes, NOTE, PAGE)
    out = run_command(state, "/open 1")
    path = (notes / "sub" / "a b.md").resolve()
    assert log.read_text().splitlines() == ["+12", str(path)] and out == f"opened {path}:12"
    run_command(state, "/open 2")  # cited by page: the file, no line
    assert log.read_text().splitlines() == [str((notes / "slides.pdf").resolve())]


def test_an_index_kept_elsewhere_opens_the_files_of_the_notes_it_indexed(notes, tmp_path, monkeypatch):
    exe, log = _fake_editor(tmp_path, "vim")
    monkeypatch.setenv("VISUAL", str(exe))
    state = _state(notes, NOTE, index_dir=tmp_path / "indexes" / "course")  # notes-rag index notes --out ...
    run_command(state, "/open 1")
    assert log.read_text().splitlines() == ["+12", str((notes / "sub" / "a b.md").resolve())]
    moved = tmp_path / "moved"  # the default layout follows its folder when it moves
    notes.rename(moved)
    assert _state(Path("/gone"), NOTE, index_dir=moved / ".notes-rag").notes == moved.resolve()


def test_open_without_an_editor_prints_the_place(notes, monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    out = run_command(_state(notes, NOTE), "/open 1")
    assert out.startswith(f"{(notes / 'sub' / 'a b.md').resolve()}:12") and "$EDITOR" in out


def test_open_reports_an_editor_that_cannot_start_and_bad_numbers(notes, monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "/nonexistent/editor")
    state = _state(notes, NOTE)
    assert "could not start /nonexistent/editor" in run_command(state, "/open 1")
    assert run_command(state, "/open 5").startswith("usage: /open N")
    assert run_command(_state(notes), "/open x").startswith("usage")
    state.last = None
    assert run_command(state, "/open 1") == "no answer yet"
