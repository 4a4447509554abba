"""Study mode sessions end to end on a tiny index and a tiny random GPT: cards checked by the
round trip through our chat, graded, scheduled; the `notes-rag quiz` session driven through a
pty (question, typed answer, grade, next card, Ctrl-C saves); `--json`, `--export`, bad input."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import time

import pytest
from tiny_chat import build_tiny_index, read_until, use_top_line_writer, with_top_line_writer
from typer.testing import CliRunner

from notes_rag.cli.main import app
from notes_rag.study.session import QuizSession
from notes_rag.study.store import StudyStore, db_path

NOTES = {
    "tokeny.md": "# Tokenizacja\n\n## Słownik\n\nSłownik to tabela odwzorowań, która przypisuje tokenom "
    "identyfikatory.\n\nEmbeddingi to wektory liczb przypisane tokenom przez warstwę wejściową.\n",
    "neurony.md": "# Neurony\n\n## Historia\n\nW 1943 roku Warren McCulloch i Walter Pitts zaproponowali "
    "matematyczny model neuronu.\n\nPerceptron to model neuronu z progiem, który zaproponował Frank Rosenblatt.\n",
    "llm.md": "# Language models\n\nA context window is the number of tokens a model reads at once.\n\n"
    "GPT-3 was trained with 175 billion parameters on text from the web.\n",
}


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    return build_tiny_index(tmp_path_factory.mktemp("notes"), NOTES)


@pytest.fixture(autouse=True)
def top_line(monkeypatch):
    """The quiz keeps cards our chat answers: the tiny model writes the encoder's top line."""
    use_top_line_writer(monkeypatch)


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_session_cards_are_checked_graded_and_cached(tiny_index, tiny_ckpt, data_dir):
    s = QuizSession.open(tiny_index, tiny_ckpt)
    cards = []
    while (c := s.next_card(timeout=120)) is not None:
        cards.append(c)
    assert cards, "no card passed the checks"
    assert {c.lang for c in cards} <= {"pl", "en"} and all(c.file in NOTES for c in cards)
    first = cards[0]
    # (rejection is tested in test_study_grading: the tiny random encoder finds any two texts close)
    assert s.grade(first, first.answer).accepted
    s.record(first, "good", s.grade(first, first.answer), first.answer)
    s.close()
    again = QuizSession.open(tiny_index, tiny_ckpt)  # cached: the same cards, no checking needed
    assert again.next_card(timeout=5).card_id != first.card_id  # the reviewed one is not due yet
    again.close()
    store = StudyStore(db_path(tiny_index))
    assert len(store.reviews(first.card_id)) == 1 and len(store.cards()) == len(cards)


def _controlling_tty() -> None:
    """In the child: a new session whose controlling terminal is the pty, so the \\x03 written
    to it is a real Ctrl-C (the terminal sends SIGINT). SIGINT back to its default, as a login
    shell leaves it: a test run started in the background (`cmd &`, nohup) ignores SIGINT, the
    child inherits that, Python then installs no KeyboardInterrupt handler and the Ctrl-C is
    lost (the clean-clone CI failures of 12-07 on this machine, reproduced by ignoring SIGINT
    in the parent)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.slow
def test_quiz_through_a_pty_and_ctrl_c_saves(tiny_index, tiny_ckpt, data_dir):
    master, slave = pty.openpty()
    env = with_top_line_writer({**os.environ, "NOTES_RAG_DATA": str(data_dir), "COLUMNS": "100", "TERM": "xterm"})
    cmd = [sys.executable, "-m", "notes_rag", "quiz", "--index", str(tiny_index), "--model", str(tiny_ckpt), "-n", "3"]
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, preexec_fn=_controlling_tty
    )
    os.close(slave)
    screen = bytearray()
    try:
        assert read_until(master, b"answer> ", 180, screen), screen.decode(errors="replace")
        assert b"[1/3]" in screen
        os.write(master, "tabela odwzorowań\n".encode())
        assert read_until(master, b"rating> ", 60, screen), screen.decode(errors="replace")
        assert b"expected:" in screen and b"from " in screen
        os.write(master, b"\n")  # Enter: the suggested rating
        assert read_until(master, b"next review", 30, screen)
        del screen[: screen.rfind(b"next review")]
        assert read_until(master, b"answer> ", 120, screen), screen.decode(errors="replace")
        assert b"[2/3]" in screen
        # Ctrl-C as a person types it: not in the same microsecond the prompt appears, where
        # readline may not have taken the terminal yet and the SIGINT can be lost (seen 1 in 4
        # runs: the process still waiting at "answer> ")
        time.sleep(0.5)
        os.write(master, b"\x03")  # Ctrl-C
        assert proc.wait(timeout=60) == 0
        read_until(master, b"saved", 5, screen)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"1 review(s) saved" in screen, screen.decode(errors="replace")
    store = StudyStore(db_path(tiny_index))
    reviewed = [c for c in store.cards() if store.reviews(c.card_id)]
    assert len(reviewed) == 1 and store.reviews(reviewed[0].card_id)[0]["typed"] == "tabela odwzorowań"


def test_quiz_command_inside_chat(tiny_index, tiny_ckpt, data_dir, monkeypatch):
    from notes_rag.chat.assistant import Assistant
    from notes_rag.cli import repl

    monkeypatch.setattr(repl, "console", repl.Console(record=True, width=120))
    typed = iter(["tabela odwzorowań", "4"])

    def fake_input(prompt=""):
        try:
            return next(typed)
        except StopIteration:
            raise KeyboardInterrupt from None  # Ctrl-C at the second card's answer

    monkeypatch.setattr("builtins.input", fake_input)
    state = repl.ChatState(Assistant.open(tiny_index, tiny_ckpt))
    repl.run_command(state, "/quiz")
    shown = repl.console.export_text()
    assert "[1/10]" in shown and "expected:" in shown and "easy · next review" in shown
    assert "1 review(s) saved" in shown
    assert "nothing in the notes" in repl.run_command(state, "/quiz xyzzy qwertz")


def test_json_export_and_bad_input(tiny_index, tiny_ckpt, data_dir, tmp_path):
    runner = CliRunner()
    common = ["--index", str(tiny_index), "--model", str(tiny_ckpt)]
    out = runner.invoke(app, ["quiz", "--json", "-n", "2", *common])
    assert out.exit_code == 0, out.output
    cards = json.loads(out.output)["cards"]
    assert 1 <= len(cards) <= 2 and {"question", "answer", "place", "heading", "lang"} <= set(cards[0])
    deck = tmp_path / "deck.apkg"
    out = runner.invoke(app, ["quiz", "--export", str(deck), *common])
    assert out.exit_code == 0 and deck.stat().st_size > 0, out.output
    bad = runner.invoke(app, ["quiz", "--export", str(tmp_path / "nope" / "d.apkg"), *common])
    assert bad.exit_code != 0 and "writable" in str(bad.exception)
    missing = runner.invoke(app, ["quiz", "--index", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "no index" in str(missing.exception)
