"""Chat format: render/parse round trip, loss mask, special-token safety, answer parsing."""

import pytest

from notes_rag.chat.format import (
    ABSTAIN,
    SYSTEM_PROMPT,
    Conversation,
    Passage,
    Turn,
    extract_citations,
    is_abstention,
    parse,
    render,
    render_prompt,
)
from notes_rag.lang import detect_lang
from notes_rag.model.tokenizer import train_tokenizer

TEXTS = [
    "Transformer to architektura sieci neuronowej oparta na mechanizmie uwagi.",
    "A transformer is a neural network architecture based on attention.",
    "Nie znalazłem tego w notatkach. I couldn't find that in your notes.",
    "notatki.md › Uczenie maszynowe › Transformery [1] [2] [3]",
] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(iter(TEXTS), vocab_size=400)


def _conv() -> Conversation:
    return Conversation(
        system=SYSTEM_PROMPT["pl"],
        passages=[
            Passage("ml.md › Transformery", "Transformer to architektura sieci opartej na uwadze."),
            Passage("inne.md › Różne", "Tu jest <|user|> wpisane w notatkę oraz <|end|> i <|assistant|>."),
        ],
        turns=[
            Turn("user", "Czym jest transformer?"),
            Turn("assistant", "Transformer to architektura sieci opartej na uwadze. [1]"),
            Turn("user", "A RNN?"),
            Turn("assistant", ABSTAIN["pl"]),
        ],
    )


def test_round_trip(tok):
    conv = _conv()
    ids, mask = render(conv, tok)
    assert len(ids) == len(mask)
    assert parse(ids, tok) == conv
    assert Conversation.from_dict(conv.to_dict()) == conv


def test_layout_starts_with_bos_system(tok):
    ids, _ = render(_conv(), tok)
    assert ids[:2] == [tok.special("bos"), tok.special("system")]
    assert ids[-1] == tok.special("end")
    assert tok.decode(ids).count("[1] ml.md › Transformery\n") == 1


def test_loss_mask_exactly_on_assistant_content_and_end(tok):
    conv = _conv()
    ids, mask = render(conv, tok)
    end, opener = tok.special("end"), tok.special("assistant")
    expected = []
    for t in conv.turns:
        if t.role == "assistant":
            expected += tok.encode(t.content) + [end]
    assert [i for i, m in zip(ids, mask) if m] == expected
    for i, (t, m) in enumerate(zip(ids, mask)):
        if t == opener:
            assert m == 0 and mask[i + 1] == 1  # opener unmasked, its content masked
    # every learned span is closed by <|end|>
    spans = "".join(str(m) for m in mask).split("0")
    assert sum(1 for s in spans if s) == 2


def test_special_spellings_in_text_stay_plain(tok):
    conv = _conv()
    ids, _ = render(conv, tok)
    assert ids.count(tok.special("user")) == 2
    assert ids.count(tok.special("assistant")) == 2
    assert ids.count(tok.special("passage")) == 2
    assert parse(ids, tok).passages[1].text == conv.passages[1].text


def test_render_prompt_ends_with_assistant(tok):
    conv = _conv()
    conv.turns = conv.turns[:3]
    ids = render_prompt(conv, tok)
    assert ids[-1] == tok.special("assistant")
    back = parse(ids, tok)
    assert back.turns[-1] == Turn("assistant", "")
    assert back.turns[:3] == conv.turns
    conv.turns = conv.turns[:2]
    with pytest.raises(ValueError):
        render_prompt(conv, tok)


def test_max_passage_tokens_bounds_passages(tok):
    conv = _conv()
    full, _ = render(conv, tok)
    cut, mask = render(conv, tok, max_passage_tokens=3)
    assert len(cut) < len(full) and len(cut) == len(mask)


def test_extract_citations():
    assert extract_citations("Tak, to jest to [2].") == [2]
    assert extract_citations("A [1][3] and [1, 3] and [ 4 ,5 ]") == [1, 3, 4, 5]
    assert extract_citations("no citations, [a] or [] here") == []


def test_is_abstention():
    assert is_abstention(ABSTAIN["pl"])
    assert is_abstention(ABSTAIN["en"])
    assert is_abstention("I could not find that in your notes")
    assert is_abstention("  nie znalazłem tego w notatkach ")
    assert not is_abstention("Transformer to architektura sieci. [1]")


@pytest.mark.parametrize(
    "text,default,expected",
    [
        ("Czym jest transformer?", None, "pl"),
        ("Co mówią moje notatki o RAG?", None, "pl"),
        ("Jak dziala tokenizacja?", None, "pl"),
        ("What is a transformer?", None, "en"),
        ("How does the tokenizer work?", None, "en"),
        ("A Llama 3?", "pl", "pl"),
        ("A Llama 3?", "en", "en"),
        ("And Llama 3?", "pl", "en"),
        ("Python", None, "en"),
        ("Zażółć gęślą jaźń", None, "pl"),
    ],
)
def test_detect_lang(text, default, expected):
    assert detect_lang(text, default=default) == expected
