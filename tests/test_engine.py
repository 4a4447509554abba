import torch

from notes_rag.model.engine import SamplingConfig, generate, sample_next, stream_text


def test_stream_text_never_splits_characters(tok):
    text = "Zażółć gęślą jaźń 🙂 łódź"
    # feed one *byte* per step: the worst case for multi-byte characters
    raw = text.encode("utf-8")
    pieces = list(stream_text(lambda b: bytes([b]), list(raw)))
    assert "".join(pieces) == text
    for p in pieces:
        p.encode("utf-8")  # every piece is valid text on its own
        assert "\ufffd" not in p


def test_stream_text_with_tokenizer(tok):
    text = "Mechanizm uwagi 🙂 gęślą"
    assert "".join(stream_text(tok.token_bytes, tok.encode(text))) == text


def test_stream_text_invalid_bytes_become_replacement():
    assert "".join(stream_text(lambda b: b, [b"ok ", b"\xff", b"!"])) == "ok \ufffd!"


def test_sampling_seeded_and_filters():
    logits = torch.tensor([0.0, 5.0, 4.9, -2.0])
    assert sample_next(logits, SamplingConfig(temperature=0), None) == 1
    cfg = SamplingConfig(temperature=1.0, top_k=2)
    draws = {sample_next(logits, cfg, torch.Generator().manual_seed(i)) for i in range(50)}
    assert draws <= {1, 2}
    cfg = SamplingConfig(temperature=1.0, top_p=0.01)
    assert {sample_next(logits, cfg, torch.Generator().manual_seed(i)) for i in range(20)} == {1}


def test_generate_seed_reproducible_and_stops(tiny_model):
    cfg = SamplingConfig(temperature=1.0, top_k=50, max_new_tokens=20, seed=3)
    a = list(generate(tiny_model, [1, 2, 3], cfg))
    assert a == list(generate(tiny_model, [1, 2, 3], cfg))
    assert len(a) <= 20
    greedy = list(generate(tiny_model, [1, 2, 3], SamplingConfig(max_new_tokens=20)))
    stop = greedy[3]
    stopped = list(generate(tiny_model, [1, 2, 3], SamplingConfig(max_new_tokens=20), stop_ids=[stop]))
    assert stopped == greedy[: greedy.index(stop)]


def test_generate_respects_context(tiny_model):
    n = tiny_model.config.seq_len
    out = list(generate(tiny_model, [1] * (n - 4), SamplingConfig(max_new_tokens=100)))
    assert len(out) <= 4


def test_copy_bias_follows_the_longest_matching_span():
    from notes_rag.model.engine import CopyBias

    bias = CopyBias([5, 6, 7, 9, 6, 8], boost=2.0, ngram=2)
    logits = torch.zeros(10)
    assert bias(logits, []).equal(logits)  # nothing generated yet: no bias
    after_6 = bias(logits, [6])  # 6 is followed by 7 and by 8 in the source
    assert after_6[7] == after_6[8] == 2.0 and after_6.sum() == 4.0
    after_5_6 = bias(logits, [5, 6])  # the longer match wins: only 7 continues "5 6"
    assert after_5_6[7] == 2.0 and after_5_6.sum() == 2.0
    assert logits.sum() == 0  # input logits are not modified in place


def test_generate_applies_logit_bias(tiny_model):
    forced = 42

    def force(logits, generated):
        logits = logits.clone()
        logits[forced] = 1e4
        return logits

    out = list(generate(tiny_model, [1, 2, 3], SamplingConfig(max_new_tokens=5), logit_bias=force))
    assert out == [forced] * 5


def test_an_answer_cut_inside_a_character_ends_before_it():
    # the length limit can stop decoding after the first byte of "ł": no U+FFFD is shown
    assert "".join(stream_text(lambda b: b, [b"log ", "ł".encode()[:1]])) == "log "
