"""The answer pipeline, `ask`, the chat REPL and sessions, on a random tiny GPT and a tiny index."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from notes_rag.chat import assistant as answer_mod
from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.format import ABSTAIN, SYSTEM_PROMPT, Passage, Turn
from notes_rag.chat.prompt import fit_prompt
from notes_rag.chat.sessions import History, load_session, save_session, session_path
from notes_rag.cli.main import app
from notes_rag.cli.repl import ChatState, run_command
from notes_rag.errors import NotesRagError
from notes_rag.index.search import Hit, SearchResult
from notes_rag.model import release
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.gpt import GPT, preset
from notes_rag.model.release import resolve_model

NOTES = {
    "neurony.md": "# Neurony\n\n## Historia\n\nW 1943 roku Warren McCulloch i Walter Pitts zaproponowali "
    "matematyczny model neuronu. Neuron sumuje wagi wejść i porównuje sumę z progiem.\n",
    "llm.md": "# Language models\n\n## Context\n\nGPT-4o has a context window of 128k tokens. Llama 3 has a "
    "context of 8.2k tokens. Attention mixes information between tokens.\n",
    "tokeny.md": "# Tokenizacja\n\nTokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory. "
    "Embeddings map token ids to vectors.\n",
}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tok):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=512))
    folder = tmp_path_factory.mktemp("model") / "best"
    write_checkpoint(folder, model, tok, meta={"stage": "test", "step": 1})
    return folder


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    from tiny_encoder import build_tiny_encoder

    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder

    root = tmp_path_factory.mktemp("notes")
    enc = build_tiny_encoder(root / "enc")
    notes = root / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text, encoding="utf-8")
    update_index(notes, notes / ".notes-rag", load_encoder(enc), encoder_path=str(enc))
    return notes / ".notes-rag"


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


def _fake_generate(text, tok):
    def gen(model, prompt, cfg=None, stop_ids=(), logit_bias=None):
        yield from tok.encode(text)

    return gen


def _assistant(tiny_ckpt, retriever, **cfg):
    model, tok, _ = load_model(tiny_ckpt)
    cfg = {"min_grounding": 0.0, **cfg}  # fake answers need not be grounded unless a test says so
    return Assistant(retriever, model, tok, AnswerConfig(**cfg), "test-model", "test-index")


# -- prompt assembly ---------------------------------------------------------------------------


def _fit(tok, context, history, passages, **kw):
    return fit_prompt(tok, "System prompt.", passages, history, "Ostatnie pytanie?", context, reserve=20, **kw)


def test_prompt_drops_oldest_turns_then_trims_then_drops_passages(tok):
    passages = [Passage(f"p{i}.md › H", " ".join(["tekst notatki o sieciach"] * 30)) for i in range(3)]
    history = []
    for i in range(3):
        history += [Turn("user", f"Pytanie numer {i} o sieci?"), Turn("assistant", f"Odpowiedź {i} z notatek. [1]")]
    full = _fit(tok, 10_000, history, passages)
    assert full.dropped_turns == 0 and not full.trimmed and full.passages == 3
    per_exchange = (full.tokens["history"]) // 3

    # Room for everything but one exchange: the oldest goes, passages stay whole.
    plan = _fit(tok, full.tokens["total"] + 20 - per_exchange // 2, history, passages)
    assert plan.dropped_turns == 2 and plan.turns == history[2:] and not plan.trimmed

    # Less room: down to the last exchange, then the passages are trimmed to a common length
    # (the top passage may keep twice as much: here all of it).
    tight = full.tokens["total"] + 20 - full.tokens["history"] + per_exchange - 30
    plan = _fit(tok, tight, history, passages)
    assert plan.turns == history[4:] and plan.passages == 3 and plan.trimmed
    assert plan.passage_tokens[0] == plan.passage_tokens_full[0]
    assert plan.passage_tokens[1] == plan.passage_tokens[2] < plan.passage_tokens_full[1]
    assert len(plan.ids) <= tight - 20 and tok.decode(plan.ids).count("tekst notatki") < 90
    # Trimmed text is the start of the passage.
    assert plan.tokens["passages"] < full.tokens["passages"]

    # Much less: no history, passages at the floor, the lowest-ranked dropped.
    plan = _fit(tok, 200, history, passages, min_passage_tokens=40)
    assert plan.turns == [] and plan.dropped_passages >= 1 and len(plan.ids) <= 180
    assert plan.tokens["total"] == len(plan.ids)

    with pytest.raises(NotesRagError, match="too long"):
        _fit(tok, 25, history, passages)


def test_system_prompt_injected_default_and_override(tiny_ckpt, monkeypatch, tok):
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("Odpowiedź. [1]", tok))
    a = _assistant(tiny_ckpt, FakeRetriever())
    ans = a.ask([], "Kiedy zaproponowano model neuronu?")
    assert tok.decode(ans.prompt.ids).count(SYSTEM_PROMPT["pl"]) == 1
    a.cfg.system = "Mów jak pirat."
    ans = a.ask([], "When was the neuron model proposed?")
    prompt = tok.decode(ans.prompt.ids)
    assert "Mów jak pirat." in prompt and SYSTEM_PROMPT["en"] not in prompt


def test_history_aware_retrieval_and_multi_turn(tiny_ckpt, monkeypatch, tok):
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("W 1943. [2]", tok))
    r = FakeRetriever()
    a = _assistant(tiny_ckpt, r, k=2)  # a 512-token model: room for the earlier exchange
    turns, ans = a.ask_turns(["Kto zaproponował model neuronu?", "W którym roku?"])
    assert r.calls == [["Kto zaproponował model neuronu?"], ["Kto zaproponował model neuronu?", "W którym roku?"]]
    assert [t.role for t in turns] == ["user", "assistant"] * 2
    assert ans.question == "W którym roku?" and ans.cited == [2]
    assert ans.prompt.turns == turns[:2]  # the earlier exchange is in the prompt
    assert "Kto zaproponował" in tok.decode(ans.prompt.ids)


def test_low_cosine_abstains_without_the_model(tiny_ckpt, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(answer_mod, "generate", boom)
    a = _assistant(tiny_ckpt, FakeRetriever(top_cosine=0.5, threshold=0.8))
    ans = a.ask([], "Jaka jest stolica Australii?")
    assert ans.abstained and ans.abstain_reason == "retrieval" and ans.text == ABSTAIN["pl"]
    assert len(ans.sources) == 4 and ans.prompt is None and ans.cited == []
    # The config's threshold overrides the retriever's.
    a.cfg.abstain_threshold = 0.4
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("Canberra. [1]", a.tok))
    assert not a.ask([], "What is the capital of Australia?").abstained


def test_model_abstention_and_citation_cleanup(tiny_ckpt, monkeypatch, tok):
    a = _assistant(tiny_ckpt, FakeRetriever())
    monkeypatch.setattr(answer_mod, "generate", _fake_generate(ABSTAIN["en"], tok))
    ans = a.ask([], "What is the capital of Australia?")
    assert ans.abstained and ans.abstain_reason == "model" and ans.cited == []
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("It is 1943. [2][7]", tok))
    ans = a.ask([], "When?")
    assert not ans.abstained and ans.cited == [2] and ans.invalid_citations == [7]
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("No citation at all", tok))
    ans = a.ask([], "When?")
    assert ans.text == "No citation at all" and ans.cited == [] and not ans.abstained


def test_real_generation_stops_within_budget(tiny_ckpt):
    a = _assistant(tiny_ckpt, FakeRetriever(words=400), max_new_tokens=16)
    ans = a.ask([Turn("user", "Pytanie?"), Turn("assistant", "Odpowiedź.")], "Co dalej?")
    assert ans.timings.new_tokens <= 16 and ans.prompt.tokens["total"] <= 512 - 16
    assert ans.prompt.trimmed  # 4 passages of ~2000 tokens had to be cut


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
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("Tak. [1]", tok))
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
    assert "passages kept 2" in str(run_command(state, "/debug").renderables[1])
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


def _read_until(fd, needle: bytes, timeout: float, buf: bytearray) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needle in buf:
            return True
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return needle in buf
            if not chunk:
                return needle in buf
            buf.extend(chunk)
    return needle in buf


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
        assert _read_until(master, "» ".encode(), 180, screen), screen.decode(errors="replace")
        os.write(master, "Kto zaproponował model neuronu?\n".encode())
        assert _read_until(master, b"sources", 120, screen), screen.decode(errors="replace")
        del screen[: screen.rfind(b"sources")]  # the next prompt may already be in the same read
        assert _read_until(master, "» ".encode(), 60, screen)
        os.write(master, b"/k 3\n")
        assert _read_until(master, b"k = 3", 30, screen)
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


def test_abstain_by_retrieval_bans_the_abstention_start(tiny_ckpt, tok):
    a = _assistant(tiny_ckpt, FakeRetriever(), abstain_by="retrieval", copy_boost=0.0)
    bias = a.logit_bias(tok.encode("prompt"))
    first = bias(torch.zeros(tok.vocab_size), [])
    for text in ABSTAIN.values():
        assert first[tok.encode(text)[0]] == float("-inf")
    assert torch.isfinite(bias(torch.zeros(tok.vocab_size), [5])).all()  # only the first token
    assert _assistant(tiny_ckpt, FakeRetriever(), copy_boost=0.0, abstain_by="model").logit_bias([1, 2]) is None


def test_grounding_guard_quotes_the_notes_instead_of_an_ungrounded_answer(tiny_ckpt, monkeypatch, tok):
    from notes_rag.chat.guard import grounding

    passages = [h.text for h in FakeRetriever().search_conversation(["x"], k=2)]
    assert grounding(passages[0] + " [1]", passages) == 1.0
    assert grounding("całkiem zmyślona odpowiedź", passages) == 0.0
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("Zupełnie zmyślona bzdura o kosmosie. [1]", tok))
    ans = _assistant(tiny_ckpt, FakeRetriever(), k=2, min_grounding=0.6).ask([], "Kto zaproponował model neuronu?")
    assert ans.ungrounded_text.startswith("Zupełnie zmyślona")
    assert ans.text != ans.ungrounded_text and ans.cited and not ans.abstained and ans.answered_by == "quote"
    quoted = ans.text.rsplit("[", 1)[0].strip()
    assert any(quoted in p for p in passages)
    # nothing is retracted: the only text streamed is the answer that stands
    a = _assistant(tiny_ckpt, FakeRetriever(), k=2, min_grounding=0.6)
    pieces = [x for x in a.stream([], "Kto zaproponował model neuronu?") if isinstance(x, str)]
    assert pieces == [ans.text]


@pytest.fixture(scope="module")
def reader_ckpt(tmp_path_factory, tok):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=512, reader=True))
    for p in (model.match_emb, model.read_tok.weight, model.read_pool.weight, model.read_cls.weight):
        torch.nn.init.normal_(p, std=0.5)
    folder = tmp_path_factory.mktemp("reader") / "best"
    write_checkpoint(folder, model, tok, meta={"stage": "reader", "step": 1})
    return folder


@pytest.mark.parametrize("reader_abstain", [1.01, -1.0])
def test_reader_answers_by_pointing_or_abstains(reader_ckpt, reader_abstain):
    retriever = FakeRetriever(n=3)
    a = _assistant(reader_ckpt, retriever, k=3, reader_abstain=reader_abstain, answer_with="reader")
    assert a.reads
    items = list(a.stream([], "Co mówi słowo2x3?"))
    ans = items[-1]
    assert items[:-1] == [ans.text]  # one piece: the reply, shown once
    data = ans.to_dict()
    if reader_abstain > 1:  # never abstains: a quoted sentence of the cited passage
        assert ans.answered_by == "reader" and not ans.abstained and len(ans.cited) == 1
        quoted = ans.text.rsplit(" [", 1)[0]
        assert quoted in retriever.hits[ans.cited[0] - 1].text
        assert data["span"] is None or ans.text[slice(*ans.span)] in quoted
    else:
        assert ans.answered_by == "abstain" and ans.abstained and ans.abstain_reason == "reader"
        assert ans.text == ABSTAIN["pl"] and not ans.cited
    assert 0.0 <= data["no_answer"] <= 1.0 and data["answered_by"] == ans.answered_by
    gen = _assistant(reader_ckpt, retriever, k=3, answer_with="model")
    assert not gen.reads


@pytest.mark.parametrize("reader_abstain", [1.01, -1.0])
def test_quote_answers_by_meaning_unless_the_reader_abstains(reader_ckpt, reader_abstain):
    retriever = FakeRetriever(n=3)
    a = _assistant(reader_ckpt, retriever, k=3, reader_abstain=reader_abstain)  # the default: quote
    assert a.cfg.answer_with == "quote" and a.reads
    items = list(a.stream([], "Co mówi słowo1x3?"))
    ans = items[-1]
    assert items[:-1] == [ans.text] and 0.0 <= ans.no_answer <= 1.0
    if reader_abstain > 1:  # a sentence of the top passage, cited
        assert ans.answered_by == "quote" and ans.cited == [1] and not ans.abstained
        assert ans.text.rsplit(" [", 1)[0] in retriever.hits[0].text
    else:
        assert ans.answered_by == "abstain" and ans.abstain_reason == "reader"


def test_ask_json_with_a_reader_model(tiny_index, reader_ckpt):
    result = CliRunner().invoke(
        app,
        ["ask", "Kto zaproponował model neuronu?", "--json", "--index", str(tiny_index), "--model", str(reader_ckpt)],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["answered_by"] in ("quote", "abstain") and 0 <= out["no_answer"] <= 1
    if out["answered_by"] == "quote":  # grounded by construction: a sentence of the cited source
        (n,) = out["cited"]
        assert out["answer"].rsplit(" [", 1)[0].split()[-1] in out["sources"][n - 1]["text"]


def test_repl_prints_a_reader_answer_once_with_its_span(reader_ckpt, monkeypatch, data_dir):
    from notes_rag.cli import repl

    a = _assistant(reader_ckpt, FakeRetriever(n=3), k=3, reader_abstain=1.01, answer_with="reader")
    monkeypatch.setattr(repl, "console", repl.Console(record=True, width=200))
    answer = repl.answer_turn(ChatState(a), "Co mówi słowo2x3?")
    shown = repl.console.export_text()
    assert shown.count(answer.text) == 1 and answer.answered_by == "reader"
    assert str(repl.answer_text(answer)) == answer.text


def test_sources_table_never_cuts_number_or_place():
    from rich.console import Console

    from notes_rag.chat.answer import Answer, Source, Timings
    from notes_rag.cli.repl import sources_table

    heading = "Model matematyczny neuronu › " + "bardzo długi nagłówek slajdu " * 4
    src = [Source(1, "004_c37a24b139456986.txt", 5, 46, heading, 0.9, "x"), Source(2, "b.md", 7, 9, "krótki", 0.8, "y")]
    ans = Answer("q", "t [1]", False, None, "pl", src, [1], [], 0.9, 0.8, Timings(1, 1, None, 1), None, read_passages=2)
    console = Console(width=60, record=True)
    console.print(sources_table(ans))
    shown = console.export_text()
    assert "004_c37a24b139456986.txt:5-46" in shown and "b.md:7-9" in shown
    assert "1  004_" in shown and "2  b.md" in shown


@pytest.mark.parametrize(
    "generated, reason",
    [
        ("{p0} {p0} {p0} {p0} [1]", "loop"),
        ("{p0}", "uncited"),
        ("{p0} [7]", "uncited"),  # a made-up passage number is no citation
        ("Zupełnie zmyślona bzdura o kosmosie i gwiazdach. [1]", "ungrounded"),
        ("{p1} [1]", "ungrounded"),  # grounded in passage 2, but passage 1 is cited
    ],
)
def test_looping_uncited_and_ungrounded_answers_are_never_shown(tiny_ckpt, monkeypatch, tok, generated, reason):
    from notes_rag.chat.guard import problem

    passages = [h.text for h in FakeRetriever().search_conversation(["x"], k=2)]
    first = " ".join(passages[0].split()[:6])
    text = generated.format(p0=first, p1=" ".join(passages[1].split()[:6]))
    assert problem(text, passages, 0.6) == reason
    assert problem(first + " [1]", passages, 0.6) is None
    monkeypatch.setattr(answer_mod, "generate", _fake_generate(text, tok))
    a = _assistant(tiny_ckpt, FakeRetriever(), k=2, min_grounding=0.6)
    shown = [x for x in a.stream([], "Kto zaproponował model neuronu?") if isinstance(x, str)]
    ans = a.ask([], "Kto zaproponował model neuronu?")
    assert shown == [ans.text] and ans.answered_by == "quote" and ans.cited
    assert ans.ungrounded_text == text.strip() and text.strip() not in shown


def test_repl_says_the_model_was_overruled_only_when_the_guard_replaced_it(reader_ckpt, tiny_ckpt, monkeypatch, tok):
    from notes_rag.cli import repl

    note = "not supported by your notes"
    monkeypatch.setattr(repl, "console", repl.Console(record=True, width=200))
    quoted = repl.answer_turn(ChatState(_assistant(reader_ckpt, FakeRetriever(n=3), k=3, reader_abstain=1.01)), "Co?")
    assert quoted.answered_by == "quote" and note not in repl.console.export_text()
    monkeypatch.setattr(answer_mod, "generate", _fake_generate("Zupełnie zmyślona bzdura o kosmosie. [1]", tok))
    guarded = repl.answer_turn(ChatState(_assistant(tiny_ckpt, FakeRetriever(), k=2, min_grounding=0.6)), "Kto?")
    assert guarded.ungrounded_text is not None and note in repl.console.export_text()
