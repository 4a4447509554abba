"""Fault injection, issue 30 row 6 (a UTF-8 note with a few bad bytes, a cp1250 note) and row 9's
index items (CURRENT.json missing, Ctrl-C during `index`, a first index on a full disk). Each
asserts the one line, the exit code, and what was kept."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest
from tiny_encoder import build_tiny_encoder
from typer.testing import CliRunner

from notes_rag.cli.main import app
from notes_rag.fileio import decode_note
from notes_rag.index.notes import scan_notes

POLISH = "# Tokenizacja\n\nSłownik przypisuje tokenom identyfikatory.\nŻółw i źdźbło: zażółć gęślą jaźń.\n"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc"))


def _damaged_utf8() -> bytes:
    data = bytearray(POLISH.encode("utf-8"))
    line3 = data.index("Żółw".encode())
    data[line3 + 2 : line3 + 2] = b"\xff\xfe"  # two stray bytes on line 4, inside "Żółw"
    return bytes(data)


def test_row6_a_few_bad_bytes_keep_the_polish_letters_and_name_the_line(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tokeny.md").write_bytes(_damaged_utf8())
    (notes / "stare.md").write_bytes(POLISH.encode("cp1250"))
    found, skipped = scan_notes(notes)
    text = {n.path: n.text for n in found}
    assert "Słownik" in text["tokeny.md"] and "zażółć gęślą jaźń" in text["tokeny.md"]
    assert text["stare.md"] == POLISH and {n.path: n.encoding for n in found}["stare.md"] == "cp1250"
    warned = [s for s in skipped if s.path == "tokeny.md"]
    assert len(warned) == 1 and warned[0].reason == "2 invalid UTF-8 byte(s) replaced (line 4)"
    assert not [s for s in skipped if s.path == "stare.md"]


def test_row6_the_threshold_between_damaged_utf8_and_a_legacy_encoding():
    assert decode_note(POLISH.encode("iso-8859-2")).encoding == "iso-8859-2"
    many = bytearray(POLISH.encode("utf-8"))
    for i in range(5, len(many), 12):  # a bad byte every 12: still mostly UTF-8, said so
        if many[i] < 0x80:
            many[i] = 0xFF
    decoded = decode_note(bytes(many))
    assert decoded.encoding == "utf-8" and "replaced" in decoded.note and "Ż" in decoded.text


def test_row6_the_index_run_names_the_file_and_line(tmp_path, tiny_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tokeny.md").write_bytes(_damaged_utf8())
    out = subprocess.run(
        [sys.executable, "-m", "notes_rag", "index", str(notes), "--encoder", str(tiny_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "tokeny.md: 2 invalid UTF-8 byte(s) replaced (line 4)" in out.stderr


def test_row9_missing_current_json_names_this_folder(tmp_path, tiny_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text(POLISH, encoding="utf-8")
    assert CliRunner().invoke(app, ["index", str(notes), "--encoder", str(tiny_path)]).exit_code == 0
    (notes / ".notes-rag" / "CURRENT.json").unlink()
    monkeypatch.chdir(notes)
    result = CliRunner().invoke(app, ["search", "Słownik"])
    assert result.exit_code == 1
    assert "rebuild it with: notes-rag index ." in str(result.exception) and "corpus/" not in str(result.exception)


def _interrupting(*args, **kwargs):
    raise KeyboardInterrupt


def _full_disk(*args, **kwargs):
    from notes_rag.index.build import _write_error

    raise _write_error(kwargs.get("index_dir") or args[1], OSError(errno.ENOSPC, "No space left on device"))


def test_row9_interrupt_and_full_disk_lines(tmp_path, tiny_path, monkeypatch, capsys):
    import notes_rag.index.build as build
    from notes_rag.cli import app as app_mod

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text(POLISH, encoding="utf-8")
    for fault, expected in (
        (_interrupting, "interrupted: no index was written; run the same command again to finish"),
        (_full_disk, "no index was written: free some disk space and run again"),
    ):
        monkeypatch.setattr(build, "update_index", fault)
        monkeypatch.setattr(sys, "argv", ["notes-rag", "index", str(notes), "--encoder", str(tiny_path)])
        with pytest.raises(SystemExit) as e:
            app_mod.main()
        assert e.value.code == (130 if fault is _interrupting else 1)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and "previous index" not in err
    monkeypatch.undo()
    assert CliRunner().invoke(app, ["index", str(notes), "--encoder", str(tiny_path)]).exit_code == 0
    monkeypatch.setattr(build, "update_index", _interrupting)
    monkeypatch.setattr(sys, "argv", ["notes-rag", "index", str(notes), "--encoder", str(tiny_path)])
    with pytest.raises(SystemExit) as e:
        app_mod.main()
    assert e.value.code == 130 and "the previous index is unchanged" in capsys.readouterr().err
    assert json.loads((notes / ".notes-rag" / "CURRENT.json").read_text())["generation"]
