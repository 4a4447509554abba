"""The answer pipeline, `ask`, the chat REPL and sessions, on a random tiny GPT and a tiny index."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_chat import NOTES, read_until
from typer.testing import CliRunner

from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.format import ABSTAIN, SYSTEM_PROMPT, Turn
from notes_rag.chat.sessions import History, load_session, save_session, session_path
from notes_rag.cli.main import app
from notes_rag.cli.repl import ChatState, run_command
from notes_rag.errors import NotesRagError
from notes_rag.index.search import Hit, SearchResult
from notes_rag.model import engine as answer_mod  # the writer looks generate_copy up here as it writes
from notes_rag.model import release
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.gpt import GPT, preset
from notes_rag.model.release import resolve_model


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


class FakeRetriever:
    """Fixed hits and cosine; records the turns it was asked about."""

    def __init__(self, top_cosine=0.9, threshold=None, n=4, words=6):
        self.calls: list[list[str]] = []
        self.top_cosine, self.abstain_threshold = top_cosine, threshold
        self.hits = [
            Hit(
                i,
                1.0 / i,
                i,
                f"note{i}.md",
                10 * i,
                10 * i + 5,
                ("Topic", f"Part {i}"),
                " ".join(f"słowo{i}x{j}" for j in range(words)),
            )
            for i in range(1, n + 1)
        ]
        self.index_dir = Path(".")

    def search_conversation(self, turns, k=5, mode="hybrid"):
        self.calls.append(list(turns))
        return SearchResult(self.hits[:k], self.top_cosine)

    def translations(self, query):
        return []

    def similarity(self, query, texts):
        return np.zeros(len(texts))  # no encoder: the quote's lexical score decides

    def vectors(self, query, texts):  # every unit equally near: the scorer's prior is flat
        return np.array([1.0, 0.0]), np.tile([0.0, 1.0], (len(texts), 1))


def _fake_generate(text, tok, seen=None):
    """A stand-in for `engine.generate_copy` that writes `text` (and records each prompt)."""

    def gen(model, prompt, copy_mask=None, match=None, cfg=None, stop_ids=(), constraint=None, on_first=None):
        if seen is not None:
            seen.append(prompt)
        yield from tok.encode(text)

    return gen


def _assistant(tiny_ckpt, retriever, **cfg):
    model, tok, _ = load_model(tiny_ckpt)
    return Assistant(retriever, model, tok, AnswerConfig(**cfg), "test-model", "test-index")


# -- the turn ------------------------------------------------------------------------------------


def test_system_prompt_injected_default_and_override(tiny_ckpt, monkeypatch, tok):
    seen = []
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("Odpowiedź. [1]", tok, seen))
    a = _assistant(tiny_ckpt, FakeRetriever())
    a.ask([], "Kiedy zaproponowano model neuronu?")
    assert tok.decode(seen[-1]).count(SYSTEM_PROMPT["pl"]) == 1
    a.cfg.system = "Mów jak pirat."
    a.ask([], "When was the neuron model proposed?")
    prompt = tok.decode(seen[-1])
    assert "Mów jak pirat." in prompt and SYSTEM_PROMPT["en"] not in prompt


def test_history_aware_retrieval_and_multi_turn(tiny_ckpt, monkeypatch, tok):
    seen = []
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("W 1943. [2]", tok, seen))
    r = FakeRetriever()
    a = _assistant(tiny_ckpt, r, k=2)
    turns, ans = a.ask_turns(["Kto zaproponował model neuronu?", "W którym roku?"])
    assert r.calls == [["Kto zaproponował model neuronu?"], ["Kto zaproponował model neuronu?", "W którym roku?"]]
    assert [t.role for t in turns] == ["user", "assistant"] * 2
    assert ans.question == "W którym roku?" and ans.cited == [2] and ans.answered_by == "model"
    assert "Kto zaproponował" in tok.decode(seen[-1])  # the previous question is in the input


def test_low_cosine_abstains_without_the_model(tiny_ckpt, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(answer_mod, "generate_copy", boom)
    a = _assistant(tiny_ckpt, FakeRetriever(top_cosine=0.5, threshold=0.8))
    ans = a.ask([], "Jaka jest stolica Australii?")
    assert ans.abstained and ans.abstain_reason == "retrieval" and ans.text == ABSTAIN["pl"]
    assert len(ans.sources) == 4 and ans.prompt_passages == [] and ans.cited == []
    # The config's threshold overrides the retriever's.
    a.cfg.abstain_threshold = 0.4
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("Canberra. [1]", a.tok))
    assert not a.ask([], "What is the capital of Australia?").abstained


def test_answer_names_the_generation_it_was_retrieved_from(tiny_ckpt, tmp_path):
    retriever = FakeRetriever(top_cosine=0.5, threshold=0.8)  # abstains: no model run needed
    a = _assistant(tiny_ckpt, retriever)
    assert a.ask([], "Jaka jest stolica Australii?").index_id == "test-index"  # no generation known
    retriever.index_dir, retriever.generation = tmp_path, tmp_path / "gen-2"  # reopened a newer one
    assert a.ask([], "Jaka jest stolica Australii?").index_id == f"{tmp_path.resolve()}:gen-2"


def test_model_abstention_citations_and_the_appended_citation(tiny_ckpt, monkeypatch, tok):
    r = FakeRetriever()
    a = _assistant(tiny_ckpt, r)
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate(ABSTAIN["en"], tok))
    ans = a.ask([], "What is the capital of Australia?")
    assert ans.abstained and ans.abstain_reason == "model" and ans.cited == [] and ans.answered_by == "abstain"
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("It is 1943. [2][7]", tok))
    ans = a.ask([], "When?")
    assert not ans.abstained and ans.cited == [2] and ans.invalid_citations == [7]
    # uncited: the passage holding most of its words is cited, appended to what was streamed
    words = " ".join(r.hits[1].text.split()[:3])
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate(words, tok))
    items = list(a.stream([], "When?"))
    ans = items[-1]
    assert ans.text == f"{words} [2]" and ans.cited == [2]
    assert "".join(items[:-1]).strip() == ans.text  # streamed text is the answer: nothing retracted


def test_real_generation_stops_within_budget(tiny_ckpt):
    a = _assistant(tiny_ckpt, FakeRetriever(words=400), max_new_tokens=16)
    ans = a.ask([Turn("user", "Pytanie?"), Turn("assistant", "Odpowiedź.")], "Co dalej?")
    assert ans.timings.new_tokens <= 16 and ans.answered_by in ("model", "abstain")
    assert ans.read_passages >= 1  # passages of ~2000 tokens were cut to fit the 512-token context


def test_empty_answer_is_an_abstention_never_a_quote(tiny_ckpt, monkeypatch, tok):
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("", tok))
    items = list(_assistant(tiny_ckpt, FakeRetriever()).stream([], "Co mówi słowo1x3?"))
    ans = items[-1]
    assert ans.answered_by == "abstain" and ans.abstain_reason == "model" and ans.text == ABSTAIN["pl"]
    assert items[:-1] == [ans.text] and ans.cited == []


def test_the_model_writes_every_shown_answer(tiny_ckpt, monkeypatch, tok):
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("słowo1x3 słowo1x4 [1]", tok))
    ans = _assistant(tiny_ckpt, FakeRetriever()).ask([], "Co mówi słowo1x3?")
    assert ans.answered_by == "model" and ans.text == "słowo1x3 słowo1x4 [1]" and not ans.abstained


def test_an_old_shape_checkpoint_names_train_generator(tmp_path, tok):
    old = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=512, copy_head=True))  # no relevance codes
    write_checkpoint(tmp_path / "m", old, tok, meta={"stage": "generator", "step": 1})
    with pytest.raises(NotesRagError, match="train-generator"):
        _assistant(tmp_path / "m", FakeRetriever()).ask([], "Co?")


def test_a_model_without_copy_head_is_refused(tmp_path, tok):
    plain = GPT(preset("tiny", vocab_size=tok.vocab_size))
    write_checkpoint(tmp_path / "m", plain, tok, meta={"stage": "finetune", "step": 1})
    with pytest.raises(NotesRagError, match="train-generator"):
        _assistant(tmp_path / "m", FakeRetriever()).ask([], "Co?")


def test_real_decoding_writes_only_words_of_the_sources(tiny_ckpt):
    """The random tiny model under the constraint: every content word it streams is in the
    passages or the question; nothing is retracted."""
    from notes_rag.model.constraint import GLUE_WORDS
    from notes_rag.text import lowercase_words

    r = FakeRetriever(n=3)
    a = _assistant(tiny_ckpt, r, k=3, max_new_tokens=30)
    items = list(a.stream([], "Co mówi słowo2x3?"))
    ans = items[-1]
    assert "".join(items[:-1]).strip() == ans.text
    allowed = set(GLUE_WORDS) | {w for h in r.hits for w in lowercase_words(h.text + " " + " ".join(h.heading_path))}
    allowed |= set(lowercase_words("Co mówi słowo2x3? " + " ".join(ABSTAIN.values())))
    body = ans.text.rsplit(" [", 1)[0] if ans.cited else ans.text
    assert all(w in allowed or w.isdigit() for w in lowercase_words(body)), ans.text


def test_missing_model_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "default_model_dir", lambda: tmp_path / "models")
    with pytest.raises(NotesRagError, match="--model"):
        resolve_model(None)
    assert resolve_model(tmp_path / "x") == tmp_path / "x"


# -- ask -----------------------------------------------------------------------------------------


def test_ask_json_schema(tiny_index, tiny_ckpt, tmp_path):
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps(["Kto zaproponował model neuronu?", "W którym roku?"]), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["ask", "--turns", str(turns), "--json", "--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["question"] == "W którym roku?" and isinstance(out["answer"], str)
    assert isinstance(out["abstained"], bool) and isinstance(out["cited"], list)
    assert len(out["sources"]) == 2
    assert set(out["sources"][0]) >= {"rank", "file", "lines", "heading", "score"}
    assert out["sources"][0]["file"] in NOTES
    assert set(out["timings"]) >= {"retrieval_ms", "ttft_s", "tokens_per_s", "total_s"}
    assert out["model"].startswith("test-step1-") and "gen-" in out["index"]
    assert [t["role"] for t in out["turns"]] == ["user", "assistant"] * 2


def test_ask_missing_index_tells_the_command(tmp_path, monkeypatch, tiny_ckpt):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ask", "hello?", "--model", str(tiny_ckpt)])
    assert result.exit_code != 0 and "notes-rag index corpus/" in str(result.exception)


def test_eval_answers_through_the_pipeline(tiny_index, tiny_ckpt, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "\n".join(
            json.dumps(d, ensure_ascii=False)
            for d in [
                {
                    "id": "a",
                    "lang": "pl",
                    "question": "Kto zaproponował model neuronu?",
                    "must": [["1943"]],
                    "evidence": "W 1943 roku Warren McCulloch",
                },
                {
                    "id": "b",
                    "lang": "en",
                    "turns": ["What is GPT-4o's context?", "And Llama 3?"],
                    "must": [["8.2k"]],
                    "evidence": "Llama 3 has a context of 8.2k tokens",
                },
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["eval", str(qa), "--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["meta"]["answers"] and rep["meta"]["model"].startswith("test-step1-")
    for item in rep["items"]:
        assert isinstance(item["answer"]["text"], str) and item["answer"]["ttft_s"] is not None


# -- REPL commands and sessions ------------------------------------------------------------------


def test_slash_commands(tiny_ckpt, monkeypatch, data_dir, tok):
    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("Tak. [1]", tok))
    state = ChatState(_assistant(tiny_ckpt, FakeRetriever()))
    assert "/sources" in run_command(state, "/help")
    assert run_command(state, "/sources") == "no answer yet"
    run_command(state, "/k 2")
    run_command(state, "/mode bm25")
    run_command(state, "/temp 0.5")
    assert (state.assistant.cfg.k, state.assistant.cfg.mode, state.assistant.cfg.temperature) == (2, "bm25", 0.5)
    assert "usage" in run_command(state, "/k zero") and "usage" in run_command(state, "/mode fuzzy")
    assert "usage" in run_command(state, "/temp -1")
    run_command(state, "/system Be brief.")
    assert state.assistant.cfg.system == "Be brief."
    run_command(state, "/system default")
    assert state.assistant.cfg.system is None
    state.last = state.assistant.ask([], "Czy to działa?")
    state.history.add(state.last.question, state.last.text)
    assert run_command(state, "/sources") is not None and "note1.md" in str(
        run_command(state, "/sources 1").renderables[0]
    )
    assert "top 2 passage(s) of 2" in str(run_command(state, "/debug").renderables[0])
    assert run_command(state, "/history") is not None
    assert "saved 1 exchanges" in run_command(state, "/save test-1")
    run_command(state, "/reset")
    assert len(state.history) == 0 and state.last is None
    assert "loaded test-1: 1 exchanges" in run_command(state, "/load test-1")
    assert state.history.questions() == ["Czy to działa?"]
    assert "error" in run_command(state, "/load nope") and "unknown" in run_command(state, "/frobnicate")
    run_command(state, "/exit")
    assert state.done


def test_session_round_trip(data_dir):
    h = History()
    h.add("Co to jest tokenizacja?", "Podział tekstu na tokeny. [1]")
    h.add("A embeddings?", "Map token ids to vectors. [2]")
    path = save_session("egzamin", h, {"k": 4})
    assert path == data_dir / "sessions" / "egzamin.json" == session_path("egzamin")
    back = load_session("egzamin")
    assert back.history == h and back.settings == {"k": 4}
    assert load_session(path).history == h  # by path too
    with pytest.raises(NotesRagError, match="bad session name"):
        save_session("../evil", h)


# -- the REPL in a pseudo-terminal ---------------------------------------------------------------


@pytest.mark.slow
def test_repl_smoke_through_a_pty(tiny_index, tiny_ckpt, data_dir):
    master, slave = pty.openpty()
    env = {**os.environ, "NOTES_RAG_DATA": str(data_dir), "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "notes_rag", "chat", "--index", str(tiny_index), "--model", str(tiny_ckpt), "--k", "2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = bytearray()
    try:
        assert read_until(master, "» ".encode(), 180, screen), screen.decode(errors="replace")
        os.write(master, "Kto zaproponował model neuronu?\n".encode())
        assert read_until(master, b"sources", 120, screen), screen.decode(errors="replace")
        del screen[: screen.rfind(b"sources")]  # the next prompt may already be in the same read
        assert read_until(master, "» ".encode(), 60, screen)
        os.write(master, b"/k 3\n")
        assert read_until(master, b"k = 3", 30, screen)
        os.write(master, b"/exit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    assert "error" not in text.lower()
    history = (data_dir / "input_history").read_text(encoding="utf-8")
    assert "model neuronu" in history and "/k 3" in history


def test_repl_streams_the_answer_once(tiny_ckpt, monkeypatch, data_dir, tok):
    from notes_rag.cli import repl

    monkeypatch.setattr(answer_mod, "generate_copy", _fake_generate("słowo1x1 słowo1x2 [1]", tok))
    monkeypatch.setattr(repl, "console", repl.Console(record=True, width=200))
    answer = repl.answer_turn(ChatState(_assistant(tiny_ckpt, FakeRetriever())), "Co?")
    shown = repl.console.export_text()
    assert shown.count(answer.text) == 1 and answer.answered_by == "model"


def test_sources_table_never_cuts_number_or_place():
    from rich.console import Console

    from notes_rag.chat.answer import Answer, Source, Timings
    from notes_rag.cli.repl import sources_table

    heading = "Model matematyczny neuronu › " + "bardzo długi nagłówek slajdu " * 4
    src = [Source(1, "004_c37a24b139456986.txt", 5, 46, heading, 0.9, "x"), Source(2, "b.md", 7, 9, "krótki", 0.8, "y")]
    ans = Answer("q", "t [1]", False, None, "pl", src, [1], [], 0.9, 0.8, Timings(1, 1, None, 1), read_passages=2)
    console = Console(width=60, record=True)
    console.print(sources_table(ans))
    shown = console.export_text()
    assert "004_c37a24b139456986.txt:5-46" in shown and "b.md:7-9" in shown
    assert "1  004_" in shown and "2  b.md" in shown
