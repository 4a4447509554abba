"""The reader: match flags, input encoding, heads and masking, reply assembly, save/load, learning."""

import numpy as np
import pytest
import torch

from notes_rag.chat.format import ABSTAIN
from notes_rag.chat.reply import compose, quote
from notes_rag.eval.reader_synthetic import lookup_item, train_lookup
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.gpt import GPT, preset
from notes_rag.model.reader import (
    EXACT,
    LOWER,
    PREFIX,
    TRANSLATION,
    QuestionWords,
    Reading,
    Unit,
    collate,
    encode,
    heads,
    read,
    reader_loss,
    with_reader_heads,
)
from notes_rag.sft.reader_data import ReaderBatches, batch_of, items_of_record

PASSAGES = [
    (
        "neurony.md › Historia",
        "W 1943 roku McCulloch i Pitts zaproponowali matematyczny model neuronu.\n"
        "- perceptron: Rosenblatt, 1958\nPotem przyszła zima AI.",
    ),
    ("bpe.md › Tokenizacja", "BPE breaks unknown words into smaller subword units. It starts from bytes."),
]


def _reader(tok):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=256, reader=True))
    for p in (
        model.match_emb,
        model.read_tok.weight,
        model.read_pool.weight,
        model.read_cls.weight,
    ):  # not the zero start
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def test_match_flags_exact_case_prefix_translation():
    q = QuestionWords.of("Kto zaproponował Model neuronu?", translations=("perceptron proposed",))
    assert q.flags("Model") == EXACT | LOWER | PREFIX
    assert q.flags("model") == LOWER | PREFIX
    assert q.flags("neuronów") == PREFIX  # Polish inflection: same 5-letter folded prefix
    assert q.flags("zaproponowali") == PREFIX
    assert q.flags("perceptronu") == TRANSLATION
    assert q.flags("kto") == 0  # stopwords never flag
    assert q.flags("zima") == 0


def test_encode_units_cover_passages_and_map_back(tok):
    inp = encode(tok, "Kto zaproponował model neuronu?", PASSAGES, history=("Co to BPE?",))
    assert inp.ids[0] == tok.special("bos") and inp.ids[-1] == tok.special("assistant")
    assert len(inp.ids) == len(inp.match) == len(inp.offsets)
    for n, (_, text) in enumerate(PASSAGES, 1):
        units = [u for u in inp.units if u.passage == n]
        assert units[0].start == 0 and units[-1].end == len(text)
        assert "".join(text[u.start : u.end] for u in units) == text
        for u in units:  # a unit's tokens decode to its text
            assert tok.decode(inp.ids[u.first : u.last + 1]) == text[u.start : u.end]
    first = PASSAGES[0][1]
    assert [first[u.start : u.end].strip() for u in inp.units][:2] == [
        "W 1943 roku McCulloch i Pitts zaproponowali matematyczny model neuronu.",
        "- perceptron: Rosenblatt, 1958",
    ]
    flagged = tok.decode([i for i, b in zip(inp.ids, inp.match) if b])
    assert "zaproponowali" in flagged and " model neuronu" in flagged and "Pitts" not in flagged
    question_end = inp.ids.index(tok.special("passage"))
    assert not any(inp.match[:question_end])  # flags only on passages


def test_encode_fits_context_by_trimming_then_dropping(tok):
    long = [("a", "Zdanie numer jeden o modelu. " * 30), ("b", "Inne zdanie o czymś. " * 30)]
    inp = encode(tok, "model?", long, max_len=120)
    assert len(inp.ids) <= 120
    assert inp.units and all(u.last < len(inp.ids) - 1 for u in inp.units)
    with pytest.raises(ValueError):
        encode(tok, "model " * 200, long, max_len=64)


def test_heads_shapes_and_masking(tok):
    model = _reader(tok)
    inputs = [encode(tok, "model neuronu?", PASSAGES), encode(tok, "BPE?", PASSAGES[1:])]
    x = collate(inputs)
    _, tok_scores, cls, ptr = heads(model, x)
    U = max(len(i.units) for i in inputs)
    assert tok_scores.shape == (*x["ids"].shape, 3) and cls.shape == (2, 4) and ptr.shape == (2, 1 + U)
    assert torch.isinf(ptr[1, 1 + len(inputs[1].units) :]).all()  # padded sentences can never win
    assert torch.isfinite(ptr[0]).all()
    r = read(model, inputs[0])
    assert r.unit in inputs[0].units  # the pointer never leaves the passages
    lo, hi = r.span
    assert r.unit.start <= lo < hi <= r.unit.end
    assert abs(r.no_answer + sum(r.passage_probs) - 1) < 1e-4


def _record(questions: list[str], golds: list[dict]) -> dict:
    """An SFT conversation over PASSAGES: each question, an assistant turn, and its gold."""
    turns = [t for q in questions for t in ({"role": "user", "content": q}, {"role": "assistant", "content": "…"})]
    passages = [{"label": a, "text": b} for a, b in PASSAGES]
    return {
        "system": "",
        "passages": passages,
        "task": "qa",
        "source": "t",
        "lang": "pl",
        "turns": turns,
        "golds": golds,
    }


def test_training_items_labels_and_loss(tok):
    rec = _record(
        ["Kto zaproponował model neuronu?", "Czy BPE zna słowa?", "Ile kosztował GPT-3?"],
        [
            {"passage": 1, "answer": "McCulloch i Pitts"},
            {"passage": 2, "answer": "no"},
            {"passage": None, "answer": ""},
        ],
    )
    items = items_of_record(rec, tok, 256)
    assert [(it.unit, it.kind) for it in items] == [(0, 0), (-2, 2), (-1, -1)]
    span = tok.decode(items[0].ids[items[0].start : items[0].end + 1].tolist())
    assert "McCulloch i Pitts" in span and len(span) < 30
    model = _reader(tok).train()
    x, y = batch_of(items, lm_frac=0.5)
    loss = reader_loss(model, x, y)
    loss.backward()
    assert torch.isfinite(loss) and model.read_tok.weight.grad.abs().sum() > 0 and model.match_emb.grad.abs().sum() > 0
    batches = ReaderBatches(items * 4, micro_tokens=2048, seed=1)
    first = batches.next_batch()[0]["ids"]
    state = batches.state_dict()
    again = ReaderBatches(items * 4, micro_tokens=2048, seed=1)
    again.load_state_dict({"epoch": 0, "cursor": 0})
    assert torch.equal(again.next_batch()[0]["ids"], first) and state["cursor"] == 1


def test_reply_per_case_both_languages():
    text = PASSAGES[0][1]
    unit = Unit(1, 0, text.index("\n"), 0, 0)
    a = text.index("McCulloch")
    span = (a, a + len("McCulloch i Pitts"))
    base = dict(kind_prob=0.9, unit=unit, unit_prob=0.8, span=span)
    r = compose(Reading(no_answer=0.1, kind="span", **base), [text], "pl", 0.5)
    assert r.text == "W 1943 roku McCulloch i Pitts zaproponowali matematyczny model neuronu. [1]"
    assert r.text[r.span[0] : r.span[1]] == "McCulloch i Pitts" and r.cited == [1] and not r.abstained
    r = compose(Reading(no_answer=0.1, kind="yes", **base), [text], "pl", 0.5)
    assert r.text.startswith("Tak — W 1943") and r.text[r.span[0] : r.span[1]] == "McCulloch i Pitts"
    assert compose(Reading(no_answer=0.1, kind="no", **base), [text], "en", 0.5).text.startswith("No — W 1943")
    for lang in ("pl", "en"):
        r = compose(Reading(no_answer=0.7, kind="span", **base), [text], lang, 0.5)
        assert r.abstained and r.text == ABSTAIN[lang] and r.cited == []
    line = text.index("- perceptron")
    flat, sp = quote(text, line, line + len("- perceptron: Rosenblatt, 1958"), (line + 14, line + 24))
    assert flat == "perceptron: Rosenblatt, 1958" and flat[sp[0] : sp[1]] == "Rosenblatt"


def test_save_load_identical_reading(tok, tmp_path):
    model = _reader(tok)
    write_checkpoint(tmp_path / "r", model, tok, meta={"stage": "reader"})
    loaded, _, config = load_model(tmp_path / "r")
    assert config["model"]["reader"] is True and loaded.config.reader
    inp = encode(tok, "model neuronu?", PASSAGES)
    assert read(model, inp) == read(loaded, inp)


def test_plain_model_gains_zero_heads_without_changing_its_lm(tok):
    torch.manual_seed(0)
    plain = GPT(preset("tiny", vocab_size=tok.vocab_size)).eval()
    reader = with_reader_heads(plain).eval()
    idx = torch.randint(0, tok.vocab_size, (1, 20))
    assert torch.equal(plain(idx), reader(idx))
    assert not reader.match_emb.abs().sum() and reader.config.reader


def test_tiny_reader_learns_synthetic_lookup():
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=64, reader=True))
    curve = train_lookup(model, steps=150, n_sentences=8)
    assert curve[-1][1] >= 0.9, curve
    item = lookup_item(np.random.default_rng(1), 64)
    assert item.match[item.unit_first[item.unit] : item.unit_last[item.unit] + 1].sum() == 2 * EXACT


def test_reader_saved_before_pooled_evidence_loads_exactly(tok, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _reader(tok)
    with torch.no_grad():
        model.read_pool.weight.zero_()  # what a reader without the pooled term computed
    write_checkpoint(tmp_path / "r", model, tok)
    weights = tmp_path / "r" / "model.safetensors"
    state = load_file(str(weights))
    del state["read_pool.weight"]
    save_file(state, str(weights))
    loaded, _, _ = load_model(tmp_path / "r")
    inp = encode(tok, "model neuronu?", PASSAGES)
    assert not loaded.read_pool.weight.any() and read(loaded, inp) == read(model, inp)


def test_titles_and_fragments_are_context_not_answers(tok):
    from notes_rag.model.reader import can_answer

    slide = "Model matematyczny neuronu\n\n1943 McCulloch i Pitts proponują matematyczny model neuronu\n-----\nZadanie:"
    inp = encode(tok, "Kto zaproponował model neuronu?", [("s.txt › Model matematyczny neuronu", slide)])
    chosen = [slide[u.start : u.end].strip() for u in inp.units]
    assert chosen == ["1943 McCulloch i Pitts proponują matematyczny model neuronu"]
    assert "Zadanie" in tok.decode(inp.ids)  # still read as context
    assert not can_answer("## Wady modelu", set()) and can_answer("Wady modelu są trzy", set())


def test_lead_in_line_quotes_what_it_introduces():
    text = "Zalety:\n- szybki\n- tani\n# Wady\n- wolny"
    assert quote(text, 0, len("Zalety:"), None) == ("Zalety: - szybki - tani", None)


def test_lexical_prior_moves_the_choice_not_the_abstention(tok):
    from notes_rag.model.reader import shared_stems

    model = _reader(tok)
    inp = encode(tok, "Kto zaproponował model neuronu?", PASSAGES)
    plain = read(model, inp)
    prior = [100.0 * n for n in shared_stems(inp, [t for _, t in PASSAGES], "Kto zaproponował model neuronu?")]
    pushed = read(model, inp, prior=prior)
    assert PASSAGES[0][1][pushed.unit.start : pushed.unit.end].startswith("W 1943")
    assert pushed.no_answer == plain.no_answer


def test_train_reader_end_to_end_and_cli_errors(tok, tmp_path):
    import json
    from dataclasses import replace

    from typer.testing import CliRunner

    from notes_rag.cli.main import app
    from notes_rag.train.loop import TrainConfig
    from notes_rag.train.reader import ReaderTrainConfig, train_reader

    torch.manual_seed(0)
    write_checkpoint(tmp_path / "base", GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=256)), tok)
    rec = _record(["Kto zaproponował model neuronu?"], [{"passage": 1, "answer": "McCulloch i Pitts"}])
    data = tmp_path / "sft"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(json.dumps(rec, ensure_ascii=False) for _ in range(8)) + "\n")
    cfg = replace(ReaderTrainConfig(seq_len=256, micro_tokens=1024), train=TrainConfig(max_steps=2, eval_every=2))
    result = train_reader(tmp_path / "base", [data], tmp_path / "run", cfg)
    assert result["step"] == 2 and "sentence_acc" in result and "span_f1" in result
    model, _, config = load_model(tmp_path / "run" / "best")
    assert model.config.reader and config["meta"]["stage"] == "reader"
    runner = CliRunner()
    args = ["train-reader", "--base", str(tmp_path / "base"), "--data", str(data), "--out", str(tmp_path / "r2")]
    bad = runner.invoke(app, args)
    assert bad.exit_code != 0 and "give --steps or --time-budget" in str(bad.exception)
