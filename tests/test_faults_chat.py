"""Fault injection, issue 30 rows 1, 2 and 7 in the chat: a refused /save, an error inside a turn
or a command, a pasted paragraph, escape codes; and 200 random inputs into the REPL under a pty.
Each asserts the one line shown, that the REPL goes on, and that the conversation is on disk."""

from __future__ import annotations

import errno
import json
import os
import random
import re

import pytest
from test_chat import FakeRetriever, _assistant
from tiny_chat import ChatProcess

from notes_rag.chat import sessions
from notes_rag.chat.question_text import QUESTION_TOKENS, fit_question, question_budget
from notes_rag.chat.sessions import LAST, load_session
from notes_rag.cli import repl
from notes_rag.cli.repl import ChatState, answer_turn, run_command


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(sessions, "fallback_dir", lambda: tmp_path / "fallback")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


@pytest.fixture()
def state(tiny_ckpt, data_dir, monkeypatch):
    monkeypatch.setattr(repl, "console", repl.Console(record=True, width=200))
    return ChatState(_assistant(tiny_ckpt, FakeRetriever()))


def _lines(text) -> list[str]:
    return [line for line in str(text).splitlines() if line.strip()]


# -- row 1: a refused /save ----------------------------------------------------------------------


def test_save_to_a_name_that_is_a_folder_saves_beside_it_and_says_why(state, data_dir):
    answer_turn(state, "Czy to działa?")
    (data_dir / "sessions" / "exam.json").mkdir(parents=True)
    out = run_command(state, "/save exam")
    assert len(_lines(out)) == 1 and "is a folder" in out and "instead" in out
    saved = out.rsplit(" to ", 1)[1].split(" instead")[0]
    assert load_session(saved).history.questions() == ["Czy to działa?"]


def test_save_when_the_sessions_folder_cannot_be_made_goes_to_the_fallback(state, data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "sessions").write_text("a file where the folder should be")  # root ignores chmod
    answer_turn(state, "Czy to działa?")
    shown = repl.console.export_text()
    assert "autosave:" in shown and "fallback" in shown  # the autosave says where it went, once
    out = run_command(state, "/save exam")
    assert len(_lines(out)) == 1 and "could not save" in out and "fallback" in out
    assert load_session(LAST).history.questions() == ["Czy to działa?"]  # /load last finds it


def test_save_on_a_full_disk_says_why_and_where_it_saved(state, data_dir, monkeypatch):
    answer_turn(state, "Czy to działa?")
    real = sessions.atomic_write_json

    def full(path, obj):
        if path.parent == data_dir / "sessions":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(sessions, "atomic_write_json", full)
    out = run_command(state, "/save exam")
    assert len(_lines(out)) == 1 and "No space left on device" in out and "fallback" in out


def test_nowhere_to_save_is_one_line_and_the_conversation_stays(state, data_dir, monkeypatch):
    answer_turn(state, "Czy to działa?")

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sessions, "atomic_write_json", full)
    out = run_command(state, "/save exam")
    assert len(_lines(out)) == 1 and out.plain.startswith("error: could not save")
    assert state.history.questions() == ["Czy to działa?"] and not state.done


def test_every_exchange_is_autosaved_and_resumable(state, data_dir):
    for q in ("Czy to działa?", "A dlaczego?"):
        answer_turn(state, q)
        assert load_session(LAST).history == state.history  # on disk after each exchange
    assert state.saved_to == data_dir / "sessions" / f"{state.session}.json"
    assert "cleared" in run_command(state, "/reset")
    assert "loaded" in run_command(state, "/load last") and state.history.questions() == [
        "Czy to działa?",
        "A dlaczego?",
    ]


def test_an_error_in_a_command_or_a_turn_is_one_line(state, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("something broke\nin two lines")

    monkeypatch.setitem(repl.COMMANDS, "history", boom)
    out = run_command(state, "/history")
    assert _lines(out) == ["internal error: RuntimeError: something broke in two lines"]
    assert "usage" in run_command(state, "/temp nan") and "usage" in run_command(state, "/temp inf")
    repl.show("no passage [/bold]")  # typed text is never markup (rich would raise on this)
    assert "no passage [/bold]" in repl.console.export_text()


def test_the_loop_goes_on_after_a_failed_turn_and_ends_only_on_exit(state, monkeypatch):
    typed = iter(["Czy to działa?", "A teraz?", "/exit", "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    real, calls = state.assistant.stream, []

    def flaky(history, question):
        calls.append(question)
        if len(calls) == 1:
            raise ValueError("the question leaves no room for any passage")
        return real(history, question)

    monkeypatch.setattr(state.assistant, "stream", flaky)
    repl.repl(state)
    shown = repl.console.export_text()
    assert "internal error: ValueError: the question leaves no room for any passage" in shown
    assert state.history.questions() == ["A teraz?"] and load_session(LAST).history == state.history
    assert next(typed) == "never read"


# -- rows 2 and 7 in the turn -------------------------------------------------------------------


def test_a_pasted_paragraph_is_answered_and_says_it_was_shortened(state, data_dir):
    paragraph = " ".join(["Attention mixes information between tokens in a sequence."] * 300)
    question = paragraph + " Kto zaproponował model neuronu?"
    answer = answer_turn(state, question)
    assert answer is not None and answer.text
    assert len(answer.notes) == 1 and "retrieval and the model read its asking part" in answer.notes[0]
    assert answer.question == question  # the whole question is kept in the conversation
    assert load_session(LAST).history.questions() == [question]


def test_the_asking_sentence_is_what_the_model_reads(tok):
    paragraph = " ".join(f"Zdanie numer {i} mówi o tokenach." for i in range(200))
    short = fit_question(tok, paragraph + " Kto zaproponował model neuronu?", QUESTION_TOKENS)
    assert short.endswith("Kto zaproponował model neuronu?") and len(tok.encode(short)) <= QUESTION_TOKENS
    first = fit_question(tok, "Kto zaproponował model neuronu? " + paragraph, QUESTION_TOKENS)
    assert first.startswith("Kto zaproponował model neuronu?")
    run_on = fit_question(tok, "słowo " * 5000, QUESTION_TOKENS)
    assert len(tok.encode(run_on)) <= QUESTION_TOKENS + 2
    assert question_budget(1024 - 120, 72) == QUESTION_TOKENS and question_budget(392, 300) == 23


def test_escape_codes_are_stripped_and_a_question_without_words_is_one_line(state):
    answer = answer_turn(state, "\x1b[31msłownik\x1b[0m?")
    assert answer.question == "słownik?"
    assert "31m" not in answer.text
    with pytest.raises(Exception, match="ask a question with words"):
        answer_turn(state, "?!…")


# -- the REPL process ----------------------------------------------------------------------------


def _env(data_dir):
    # /open runs $VISUAL: `true` opens nothing
    return {
        **os.environ,
        "NOTES_RAG_DATA": str(data_dir),
        "TMPDIR": str(data_dir.parent),
        "VISUAL": "true",
        "EDITOR": "true",
    }


@pytest.mark.slow
def test_the_repl_survives_a_refused_save_and_resumes_after_a_kill(tiny_index, tiny_ckpt, data_dir):
    args = ["--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"]
    chat = ChatProcess(args, _env(data_dir))
    try:
        assert chat.prompt(180), chat.text()
        chat.send("Kto zaproponował model neuronu?\n".encode())
        assert chat.prompt(), chat.text()
        (data_dir / "sessions" / "exam.json").mkdir()
        chat.send(b"/save exam\n")
        assert chat.prompt() and chat.proc.poll() is None, chat.text()
        # the terminal wraps the message where the temp path's length puts it: compare words
        assert "is a folder" in " ".join(chat.text().split())
        chat.proc.kill()  # a crash or a closed terminal: the exchange is already on disk
        chat.proc.wait()
    finally:
        chat.close()
    chat = ChatProcess([*args, "--resume"], _env(data_dir))
    try:
        assert chat.prompt(180), chat.text()
        assert "1 exchanges" in chat.text()
        chat.send(b"/exit\n")
        assert chat.proc.wait(timeout=60) == 0
    finally:
        chat.close()


def _random_input(rng: random.Random) -> tuple[bytes, str | None]:
    """One random line, and the question it is when it passes the terminal unchanged (plain
    text), else None."""
    kind = rng.choice(["plain", "plain", "long", "bytes", "controls", "ansi", "slash", "slash", "words"])
    alphabet = "abcdefghijklmnopqrstuvwxyz ąćęłńóśźż ABC 0123456789 ?!.,-"
    if kind in ("plain", "long"):
        n = rng.randint(1, 200) if kind == "plain" else rng.randint(2000, 20_000)
        text = "".join(rng.choice(alphabet) for _ in range(n))
        return text.encode() + b"\n", " ".join(text.split()) if any(c.isalnum() for c in text) else None
    if kind == "bytes":
        return bytes(rng.randint(0x20, 0xFF) for _ in range(rng.randint(1, 300))).replace(b"/", b"x") + b"\n", None
    if kind == "controls":
        # every control character but those that end the process by design or stop the terminal
        # (Ctrl-D EOF, Ctrl-Z suspend, Ctrl-\ quit, Ctrl-S/Ctrl-Q flow) and those with which
        # readline keeps the line open (Tab's completion question, Ctrl-V quoting the newline,
        # Ctrl-X and Esc prefixes)
        safe = [c for c in range(1, 32) if c not in (3, 4, 9, 10, 13, 17, 19, 22, 24, 26, 27, 28)]
        body = bytes(rng.choice([*safe, *b"abc xyz?"]) for _ in range(rng.randint(1, 80)))
        return body + b"\n", None
    if kind == "ansi":
        return f"\x1b[{rng.randint(0, 99)}mtokenizacja\x1b[0m słownik?".encode() + b"\n", None
    if kind == "words":
        return rng.choice(["?", "!!!", "…", "—", "   "]).encode() + b"\n", None
    name = rng.choice(["help", "sources", "open", "k", "mode", "temp", "system", "save", "load", "history", "debug"])
    arg = rng.choice(["", "1", "0", "-3", "99999", "nan", "inf", "x" * rng.randint(1, 300), "[/bold]", "last", ".."])
    return f"/{name} {arg}".encode() + b"\n", None


def _printable(line: bytes) -> bool:
    try:
        return line.decode("utf-8")[:-1].isprintable()
    except UnicodeDecodeError:
        return False


@pytest.mark.slow
def test_200_random_inputs_never_end_the_repl_and_every_exchange_is_on_disk(tiny_index, tiny_ckpt, data_dir):
    rng = random.Random(30)
    args = ["--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"]
    chat = ChatProcess(args, _env(data_dir))
    plain: list[str] = []
    clean, recent = True, []  # the last 3 lines left readline as it was (no stray bytes, no keys)
    try:
        assert chat.prompt(180), chat.text()
        for i in range(200):
            line, question = _random_input(rng)
            chat.send(line)
            assert chat.prompt(), f"input {i} {line[:80]!r}: no prompt back\n{chat.text()[-3000:]}"
            assert chat.proc.poll() is None, f"input {i} ended the REPL"
            if question and clean and len(line) < 400:
                plain.append(question)
            recent = [*recent[-2:], line]
            clean = all(_printable(r) and len(r) < 400 for r in recent)
        chat.send(b"/exit\n")
        assert chat.proc.wait(timeout=60) == 0
    finally:
        chat.close()
    assert "Traceback" not in chat.text()
    saved = json.loads(max((data_dir / "sessions").glob("chat-*.json"), key=os.path.getmtime).read_text())
    on_disk = [t["content"] for t in saved["turns"] if t["role"] == "user"]
    assert len(saved["turns"]) == 2 * len(on_disk)
    # every answer shown (its sources table's title on a line of its own) is an exchange on disk
    screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(chat.screen))
    shown = re.findall(rb"\n *(?:sources|closest passages \(not used\)) *\r?\n", screen)
    assert len(shown) == len(on_disk) > 50
    # and a short plain question after another is kept as typed (readline itself may reorder the
    # characters of a 20,000-character line or one after stray bytes: not the REPL's doing)
    missing = [q[:80] for q in plain if q not in on_disk]
    assert not missing, (len(missing), len(plain), missing[:3])


def test_a_model_input_too_small_for_any_passage_abstains_with_a_note(state):
    """The speedrun smoke model (seq_len 256) beside a long system prompt: the reader's input
    cannot hold one passage; the model does not answer (every shown answer is its own), and a
    note says why."""
    state.assistant.cfg.system = "Odpowiadaj krótko i zawsze cytuj notatki. " * 40
    answer = state.assistant.ask([], "Czy to działa?")
    assert answer.abstained and answer.answered_by == "abstain"
    assert answer.notes == ["the model's input cannot hold a passage beside this question: it did not answer"]
