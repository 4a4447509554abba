"""The model input (model/reader.py): match flags, sentence units, fitting into the context."""

import pytest

from notes_rag.model.reader import EXACT, LOWER, PREFIX, TRANSLATION, QuestionWords, can_answer, encode

PASSAGES = [
    (
        "neurony.md › Historia",
        "W 1943 roku McCulloch i Pitts zaproponowali matematyczny model neuronu.\n"
        "- perceptron: Rosenblatt, 1958\nPotem przyszła zima AI.",
    ),
    ("bpe.md › Tokenizacja", "BPE breaks unknown words into smaller subword units. It starts from bytes."),
]


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


def test_titles_and_fragments_are_context_not_answers(tok):
    slide = "Model matematyczny neuronu\n\n1943 McCulloch i Pitts proponują matematyczny model neuronu\n-----\nZadanie:"
    inp = encode(tok, "Kto zaproponował model neuronu?", [("s.txt › Model matematyczny neuronu", slide)])
    chosen = [slide[u.start : u.end].strip() for u in inp.units]
    assert chosen == ["1943 McCulloch i Pitts proponują matematyczny model neuronu"]
    assert "Zadanie" in tok.decode(inp.ids)  # still read as context
    assert not can_answer("## Wady modelu", set()) and can_answer("Wady modelu są trzy", set())
