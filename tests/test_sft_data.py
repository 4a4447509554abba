"""SFT data: text surgery, kit converters on inline records, and an end-to-end build on a tiny kit."""

import random

import pytest
from tiny_kit import EN_TOPICS, TOPICS, write_kit

from notes_rag.chat.format import ABSTAIN, Conversation, extract_citations, is_abstention, parse, render
from notes_rag.model.tokenizer import train_tokenizer
from notes_rag.sft.build import build_sft, summary
from notes_rag.sft.clauses import answer_clause, n_words, sentence_spans, trim_around
from notes_rag.sft.config import DEFAULT_MIX, BuildConfig
from notes_rag.sft.kit import (
    convert_boolq,
    convert_extractive,
    convert_instructions,
    convert_negatives,
    convert_translation,
)

CTX = (
    "Wacław Kowalski (ur. 2 maja 1916 w Gżatsku) – polski aktor. W 1937 ukończył seminarium, np. w Leśnej "
    "Podlaskiej. Po wojnie studiował w Łodzi. Tam wypatrzył go Leon Schiller."
)


def test_sentences_respect_abbreviations():
    sents = [CTX[a:b] for a, b in sentence_spans(CTX)]
    assert sents[0] == "Wacław Kowalski (ur. 2 maja 1916 w Gżatsku) – polski aktor."
    assert sents[1].startswith("W 1937") and sents[1].endswith("Podlaskiej.")
    assert len(sents) == 4


def test_trim_around_keeps_span_and_budget():
    text = " ".join(f"Zdanie numer {i} mówi coś o temacie {i}." for i in range(60))
    start = text.index("numer 30 ")
    a, b = trim_around(text, start, start + 8, max_words=40)
    assert a <= start and start + 8 <= b
    assert n_words(text[a:b]) <= 40
    assert text[a:b].startswith("Zdanie") and text[a:b].endswith(".")
    assert trim_around("krótki tekst", 0, 3, 40) == (0, len("krótki tekst"))


def test_answer_clause_sentence_or_clause():
    s = CTX.index("Leon")
    assert answer_clause(CTX, s, s + 11) == "Tam wypatrzył go Leon Schiller."
    long = "On " + ", ".join(f"potem robił rzecz {i}" for i in range(30)) + ", a w końcu zdobył Oscara w 1990, i tyle."
    s = long.index("Oscara")
    clause = answer_clause(long, s, s + 6)
    assert "Oscara" in clause and n_words(clause) <= 40 and clause in long


def _qa(ctx, q, ans, **kw):
    r = {
        "lang": "pl",
        "title": "Wacław_Kowalski",
        "context": ctx,
        "question": q,
        "answerable": ans is not None,
        "answers": [] if ans is None else [{"text": ans, "answer_start": ctx.index(ans)}],
    }
    return {**r, **kw}


def test_convert_extractive_single_and_multi_turn():
    recs = [
        _qa(CTX, "Kiedy urodził się Kowalski?", "2 maja 1916"),
        _qa(CTX, "Gdzie studiował?", "w Łodzi"),
        _qa(CTX, "Ile filmów nakręcił?", None),
    ]
    single = convert_extractive(recs, "poquad", "poquad", random.Random(0), multi_turn=0)
    assert len(single) == 3 and all(len(e.qas) == 1 for e in single)
    una = [e for e in single if e.qas[0].anchor is None]
    assert len(una) == 1 and una[0].qas[0].span == ""
    ans = [e for e in single if e.qas[0].anchor == 0]
    for e in ans:
        qa = e.qas[0]
        assert e.anchors[0].text[qa.start : qa.start + len(qa.span)] == qa.span
    assert single[0].anchors[0].title == "Wacław Kowalski" and single[0].anchors[0].file.startswith("wacław-kowalski.")
    multi = convert_extractive(recs, "poquad", "poquad", random.Random(0), multi_turn=1.0)
    assert sum(len(e.qas) for e in multi) == 3 and any(len(e.qas) > 1 for e in multi)
    assert len({e.anchors[0].key for e in multi}) == 1  # one paragraph -> one split key


def test_convert_other_sources():
    b = convert_boolq(
        [{"title": "T", "context": CTX, "question": "Is it?", "answers": [{"text": "no", "answer_start": -1}]}],
        "boolq",
        "boolq",
        random.Random(0),
    )
    assert b[0].qas[0].style == "boolean" and b[0].qas[0].answer == "no"
    neg = convert_negatives(
        [{"lang": "en", "title": "Other", "context": "Some other text here.", "question": "Q?"}],
        {"Q?": {"context": CTX, "title": "Wacław_Kowalski"}},
        "xquad_neg",
        "xquad",
        random.Random(0),
    )
    assert neg[0].qas[0].anchor is None and neg[0].banned_titles == ["Wacław Kowalski"] and len(neg[0].keys) == 2
    ins = convert_instructions(
        [
            {"instruction": "Say hi.", "input": "", "output": "Hi."},
            {"instruction": "Essay.", "input": "", "output": "word " * 100},
        ],
        "instructions",
    )
    assert len(ins) == 1 and ins[0].task == "instruct" and ins[0].qas[0].answer == "Hi."
    tr = convert_translation(
        [{"en": "I like green tea very much.", "pl": "Bardzo lubię zieloną herbatę."}, {"en": "Go.", "pl": "Idź."}],
        "tatoeba",
        random.Random(0),
    )
    assert len(tr) == 1
    q = tr[0].qas[0]
    assert (q.answer == "Bardzo lubię zieloną herbatę.") == (tr[0].lang == "en")


# ---- end-to-end build on a tiny kit written to a tmp dir --------------------------------------


@pytest.fixture(scope="module")
def tiny_kit(tmp_path_factory):
    return write_kit(tmp_path_factory.mktemp("kit"))


@pytest.fixture(scope="module")
def tok():
    texts = [c for _, c in TOPICS + EN_TOPICS] + [ABSTAIN["pl"], ABSTAIN["en"]]
    return train_tokenizer(iter(texts * 5), vocab_size=600)


@pytest.fixture(scope="module")
def built(tiny_kit, tok):
    mix = {k: 1.0 for k in DEFAULT_MIX}
    cfg = BuildConfig(
        data_dir=tiny_kit,
        seed=3,
        mix=mix,
        val_frac=0.3,
        gen_files=("pl_test", "en_test"),
        drop_gold_rate=0.3,
        max_tokens=400,
    )
    return build_sft(cfg, tok)


def test_build_records_are_consistent(built, tok):
    recs = built.train + built.val
    assert built.train and built.val
    sources = {r["source"] for r in recs}
    assert {"xquad", "poquad", "squad2", "boolq", "instructions", "tatoeba", "gen_pl", "gen_en"} <= sources
    for r in recs:
        conv = Conversation.from_dict(r)
        ids, mask = render(conv, tok)
        assert len(ids) == r["n_tokens"] <= 400
        assert parse(ids, tok) == conv
        answers = [t.content for t in conv.turns if t.role == "assistant"]
        assert len(answers) == len(r["golds"]) and r["gold_passage"] == r["golds"][-1]["passage"]
        for ans, g in zip(answers, r["golds"]):
            if r["task"] != "qa":
                assert not conv.passages and not extract_citations(ans)
            elif g["passage"] is None:
                assert ans == ABSTAIN[r["lang"]] and is_abstention(ans)
            else:
                assert extract_citations(ans) == [g["passage"]]
                body = ans.rsplit(" [", 1)[0].removeprefix("Yes — ").removeprefix("No — ")
                if r["source"] != "ropes":  # ROPES answers are reasoned, not copied
                    assert body in conv.passages[g["passage"] - 1].text
        if r["task"] == "qa":
            assert 1 <= len(conv.passages) <= 5


def test_no_gold_passage_crosses_splits(built):
    def golds(recs):
        return {r["passages"][g["passage"] - 1]["text"] for r in recs for g in r["golds"] if g["passage"]}

    train_texts = {p["text"] for r in built.train for p in r["passages"]}
    for text in golds(built.val):
        assert text not in train_texts


def test_unanswerables_present_and_summary(built):
    s = summary(built.train)
    assert 0 < s["unanswerable"] < 1 and 0 < s["polish"] < 1
    assert s["tokens_max"] <= 400
