"""Fault injection, issue 30 rows 2, 4, 7, 8 and 9 through `notes-rag ask`: a pasted paragraph,
a question that is not UTF-8, escape codes and no words, `--json` errors, `--temp nan`, and a
closed pipe. Each asserts the one line (or the JSON object), the exit code and the answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from notes_rag.chat.question_text import clean_question, decode_question
from notes_rag.cli.main import app
from notes_rag.errors import NotesRagError


def _ask(tiny_index, tiny_ckpt, *args):
    return CliRunner().invoke(app, ["ask", *args, "--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"])


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "notes_rag", *args], capture_output=True, timeout=300, **kw)


def test_row2_a_pasted_paragraph_is_answered_and_the_notes_say_so(tiny_index, tiny_ckpt):
    paragraph = "Attention mixes information between tokens in a sequence. " * 80  # ~4,700 characters
    question = paragraph + "Kto zaproponował model neuronu?"
    result = _ask(tiny_index, tiny_ckpt, question, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["question"] == question.strip() and out["answer"]
    assert len(out["notes"]) == 1 and "retrieval and the model read its asking part" in out["notes"][0]


def test_row4_a_cp1250_question_is_read_with_one_warning(tiny_index, tiny_ckpt):
    question = "Kto zaproponował model neuronu?".encode("cp1250")
    args = [b"ask", question, b"--index", str(tiny_index).encode(), b"--model", str(tiny_ckpt).encode(), b"--json"]
    result = _run(args, env={**os.environ, "LANG": "C.UTF-8"})
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["question"] == "Kto zaproponował model neuronu?"
    warnings = result.stderr.decode().strip().splitlines()
    assert warnings == ["warning: the question was not UTF-8: read as cp1250"]


def test_row4_undecodable_bytes_are_replaced_with_one_warning():
    text, warning = decode_question("model neuronu\udcff\udcfe?")  # argv's lone surrogates
    assert text == "model neuronu\ufffd\ufffd?" and "not valid UTF-8: 2 byte(s) replaced" in warning
    assert clean_question(text) == "model neuronu ?"


def test_row7_escape_codes_are_stripped_before_retrieval(tiny_index, tiny_ckpt):
    result = _ask(tiny_index, tiny_ckpt, "Czym jest \x1b[31msłownik\x1b[0m?", "--json")
    out = json.loads(result.output)
    assert out["question"] == "Czym jest słownik?" and "31m" not in out["answer"]


@pytest.mark.parametrize("question", ["?!", "…", "\x1b[31m\x1b[0m", "— ?"])
def test_row7_a_question_without_words_is_one_line_exit_1(tiny_index, tiny_ckpt, question):
    result = _ask(tiny_index, tiny_ckpt, question)
    assert result.exit_code == 1 and isinstance(result.exception, NotesRagError)
    assert str(result.exception) == "ask a question with words"


def test_row7_through_the_cli_the_line_and_the_exit_code(tiny_index, tiny_ckpt):
    result = _run(["ask", "?!", "--index", str(tiny_index), "--model", str(tiny_ckpt)])
    assert result.returncode == 1 and result.stderr.decode().strip() == "error: ask a question with words"


def test_row8_json_errors_are_json_on_stdout_with_the_same_exit_codes(tiny_index, tiny_ckpt, tmp_path):
    missing = _run(["ask", "hi?", "--json", "--index", str(tmp_path / "none"), "--model", str(tiny_ckpt)])
    assert missing.returncode == 1
    err = json.loads(missing.stdout)
    assert err["kind"] == "user" and "no index at" in err["error"] and missing.stdout.count(b"\n") == 1
    words = _run(["ask", "?!", "--json", "--index", str(tiny_index), "--model", str(tiny_ckpt)])
    assert words.returncode == 1 and json.loads(words.stdout) == {"error": "ask a question with words", "kind": "user"}
    assert words.stderr == b""


def test_row8_an_internal_error_is_json_with_exit_2(monkeypatch, capsys):
    from notes_rag.cli import app as app_mod

    def boom():
        raise ValueError("bad shape (3,)")

    monkeypatch.setattr(app_mod, "app", boom)
    monkeypatch.setattr(sys, "argv", ["notes-rag", "ask", "x", "--json"])
    with pytest.raises(SystemExit) as e:
        app_mod.main()
    out = capsys.readouterr().out
    assert e.value.code == 2 and json.loads(out) == {"error": "ValueError: bad shape (3,)", "kind": "internal"}


def test_row9_temp_nan_and_inf_are_refused(tiny_index, tiny_ckpt):
    for value in ("nan", "inf", "-1"):
        result = _ask(tiny_index, tiny_ckpt, "Kto?", "--temp", value)
        assert result.exit_code == 2 and "--temp" in result.output


def test_row9_a_closed_pipe_is_not_an_error(tiny_index, tiny_ckpt):
    cmd = [sys.executable, "-m", "notes_rag", "ask", "Kto zaproponował model neuronu?"]
    cmd += ["--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"]
    for reader in ("head -1", "true"):  # `true` reads nothing: every write meets a closed pipe
        shell = " ".join(f"'{c}'" for c in cmd) + f" | {reader} >/dev/null; echo ${{PIPESTATUS[0]}}"
        result = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=300)
        assert result.stdout.decode().strip() == "0" and result.stderr == b"", result.stderr.decode()
