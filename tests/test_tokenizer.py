import random

import pytest

from notes_rag.model.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, TokenizerError, load_tokenizer, train_tokenizer


@pytest.mark.parametrize(
    "text",
    [
        "Zażółć gęślą jaźń — ŹDŹBŁO, łódź; 2024-11-23.",
        "Attention is all you need: softmax(QK^T / sqrt(d)) V",
        "emoji 🙂🚀 and CJK 漢字 mixed with tabs\tand\nnewlines\r\n",
        "",
    ],
)
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_random_unicode(tok):
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(chr(rng.choice([rng.randrange(32, 0x250), rng.randrange(0x1F300, 0x1F600)])) for _ in range(40))
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_special_spelling_in_text_is_plain_text(tok):
    text = "my note literally says <|user|> and <|end|> and <|bos|>"
    ids = tok.encode(text)
    assert not set(ids) & set(tok.special_ids.values())
    assert tok.decode(ids) == text


def test_special_tokens_have_ids(tok):
    ids = tok.special_ids
    assert list(ids) == list(SPECIAL_TOKENS)
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert all(i >= tok.vocab_size - len(SPECIAL_TOKENS) for i in ids.values())
    assert tok.special("user") == tok.special("<|user|>")


def test_split_pattern_keeps_polish_words_and_splits_digits():
    import regex

    pieces = regex.findall(SPLIT_PATTERN, "Zażółć gęślą jaźń 12345")
    assert pieces == ["Zażółć", " gęślą", " jaźń", " ", "12", "34", "5"]


def test_save_load_and_fingerprint(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert again.fingerprint == load_tokenizer(tmp_path).fingerprint
    text = "Czym jest tokenizacja? What is BPE?"
    assert again.encode(text) == tok.encode(text)


def test_corrupt_or_missing_file(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "notes-rag-bpe/1", "pattern": ')
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(bad)


def test_vocab_size_is_exact(tok):
    assert tok.vocab_size == 400  # conftest trains 400 = merges + 6 special tokens
    with pytest.raises(ValueError, match="at least"):
        train_tokenizer(iter(["abc"]), vocab_size=100)
