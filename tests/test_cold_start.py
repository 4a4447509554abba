"""Cold start: the commands a student types first never import torch (2-3 s on a slow CPU), and
the top-level help lists every command, the student's first, with whole descriptions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notes_rag.cli import app as cli_app
from notes_rag.cli.main import app

REPO = Path(__file__).resolve().parents[1]
# Runs the CLI in a fresh interpreter and reports, at exit, which heavy modules it imported.
_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED', ' '.join(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    "sys.argv = ['notes-rag', *sys.argv[1:]]\n"
    "from notes_rag.cli.main import main\n"
    "main()\n"
)


def imported(args: list[str], cwd: Path) -> tuple[set[str], subprocess.CompletedProcess]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "NOTES_RAG_CACHE": str(cwd / "cache"), "PATH": "/usr/bin:/bin"},
    )
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("IMPORTED")]
    assert line, done.stdout + done.stderr
    return set(line[-1].split()[1:]), done


def test_help_imports_no_torch(tmp_path):
    heavy, done = imported(["--help"], tmp_path)
    assert done.returncode == 0 and heavy == set()
    assert "ask" in done.stdout and "pretrain" in done.stdout


def test_search_and_dry_run_import_no_torch(tiny_index, tmp_path):
    heavy, done = imported(["search", "sieć neuronowa", "--index", str(tiny_index), "--no-bilingual"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert heavy == set()
    heavy, done = imported(["index", str(tiny_index.parent), "--dry-run"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert heavy == set()


def test_ask_by_default_answers_without_torch(tiny_index, tiny_ckpt, tmp_path):
    """The default answer path (the model scores abstention, the quote answers) runs the numpy
    model: no torch."""
    question = "Kto zaproponował matematyczny model neuronu?"
    args = ["ask", question, "--json", "--index", str(tiny_index), "--model", str(tiny_ckpt)]
    heavy, done = imported(args, tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert answer["no_answer"] is not None  # the model ran (retrieval did not abstain first)
    assert "torch" not in heavy


def test_help_lists_the_students_commands_first_uncut():
    out = CliRunner().invoke(app, ["--help"], terminal_width=160).output
    study, train = out.index(cli_app.STUDY_PANEL), out.index(cli_app.TRAIN_PANEL)
    listed = re.findall(r"^  (\S+) ", out[study:train], re.M)
    assert listed == [c for c in cli_app.STUDY_COMMANDS if c in listed] and listed[:4] == [
        "index",
        "chat",
        "ask",
        "search",
    ]
    for entry in cli_app.scan_commands(tuple(cli_app._modules)).values():
        if not entry.hidden:  # whole, on one line at 160 columns (or wrapped, never cut)
            assert " ".join(entry.help.split()) in " ".join(out.split())
    assert "..." not in out[study:]  # click cuts a long description with "..."


def test_scanned_commands_are_the_registered_ones():
    """The help's list, read from the source, names every command typer registers, with its help."""
    import importlib

    scanned = cli_app.scan_commands(tuple(cli_app._modules))
    for module in {e.module for e in scanned.values()}:
        importlib.import_module(f"notes_rag.cli.{module}")
    registered = {}
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        registered[name] = (info.callback.__doc__ or "").strip().split("\n\n")[0].split()
    assert set(registered) == set(scanned)
    for name, words in registered.items():
        assert " ".join(words) == scanned[name].help


@pytest.mark.parametrize("typo, suggestion", [("serch", "search"), ("pretrian", "pretrain")])
def test_a_mistyped_command_is_matched_against_all_commands(typo, suggestion):
    out = CliRunner().invoke(app, [typo]).output
    assert f"Did you mean '{suggestion}'" in out
