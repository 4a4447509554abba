"""The copy head: its distribution, loss, cached decode, constrained decoding and save/load."""

import pytest
import torch

from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.constants import AFTER_SHIFT, COS_SHIFT, RANK_SHIFT
from notes_rag.model.constraint import WordConstraint
from notes_rag.model.copy_head import FEATURES, features
from notes_rag.model.engine import CopyDecoder, SamplingConfig, generate, generate_copy
from notes_rag.model.gpt import GPT, GPTConfig
from notes_rag.text import lowercase_words

V = 60


def copy_model(seed: int = 0, feats=FEATURES, vocab: int = V) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=vocab,
        seq_len=96,
        n_layer=2,
        n_head=2,
        n_kv_head=1,
        n_embd=32,
        copy_head=True,
        relevance=True,
        structure=True,
    )
    model = GPT(GPTConfig.from_dict({**cfg.to_dict(), "copy_features": list(feats)}))
    for p in model.parameters():  # random everywhere, so every path carries signal
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def batch(seed: int = 0, B: int = 3, T: int = 30):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, T), generator=g)
    x[:, 18:24] = x[:, 4:10]  # the answer copies a source span, so the run features fire
    y = torch.full_like(x, -1)
    y[:, 16 : T - 1] = x[:, 17:T]
    copy_mask = torch.zeros(B, T, dtype=torch.bool)
    copy_mask[:, 1:14] = True
    match = torch.randint(0, 4, (B, T), generator=g) * (torch.rand(B, T, generator=g) < 0.3)
    # the retrieval encoder's rank and cosine bin of each source token's unit (reader.py)
    rank = torch.randint(0, 8, (B, T), generator=g)
    match = match + (rank << RANK_SHIFT) + (torch.randint(0, 8, (B, T), generator=g) << COS_SHIFT) * (rank > 0)
    match = match + (torch.randint(0, 5, (B, T), generator=g) << AFTER_SHIFT) * (rank > 0)
    return x, y, copy_mask, match


def full_logprobs(model, x, copy_mask, match, b, t):
    """The next-token distribution at (b, t) through the inference path, from the full sequence."""
    h = model.hidden(x, match=match)[b]
    src = copy_mask[b, :t].nonzero()[:, 0]
    valid = copy_mask[b : b + 1] & (torch.arange(x.size(1)) < t)[None]
    f = features(model.copy.features, x[b : b + 1], torch.tensor([t]), valid, match[b : b + 1])
    return model.copy_logprobs(h[t], model.copy.key(h[src]), x[b, src], None if f is None else f[0, src])


def test_distribution_sums_to_one_and_loss_agrees():
    model = copy_model()
    x, y, cm, match = batch()
    with torch.no_grad():
        nll = []
        for b, t in (y != -1).nonzero().tolist():
            logp = full_logprobs(model, x, cm, match, b, t)
            torch.testing.assert_close(logp.exp().sum(), torch.tensor(1.0))
            nll.append(-logp[y[b, t]])
        torch.testing.assert_close(model.copy_loss(x, y, cm, match), torch.stack(nll).mean())


def test_copy_mass_only_on_unmasked_tokens():
    model = copy_model()
    with torch.no_grad():
        model.copy.gate.bias.fill_(-40.0)  # p_gen ≈ 0: the mixture is the copy distribution
        model.copy.gate.weight.zero_()
    x, _, cm, match = batch()
    x[0, 1:14] = torch.arange(1, 14)  # source tokens 1..13
    x[0, 14:] = torch.arange(30, 46)  # every later token differs
    with torch.no_grad():
        p = full_logprobs(model, x, cm, match, 0, 25).exp()
    assert p[1:14].sum() > 0.999
    assert p[30:46].max() < 1e-6 and p[0] < 1e-6


def test_gradient_reaches_gate_and_feature_weights():
    model = copy_model().train()
    x, y, cm, match = batch()
    model.copy_loss(x, y, cm, match).backward()
    assert model.copy.gate.weight.grad.abs().sum() > 0 and model.copy.gate.bias.grad.abs() > 0
    assert (model.copy.feature_weight.grad != 0).all()
    assert model.copy.key.weight.grad.abs().sum() > 0


def test_no_source_rows_fall_back_to_the_vocabulary():
    model = copy_model()
    x, y, cm, match = batch()
    with torch.no_grad():
        lm = torch.nn.functional.cross_entropy(
            model.lm_head(model.hidden(x, match=match)).transpose(1, 2), y, ignore_index=-1
        )
        torch.testing.assert_close(model.copy_loss(x, y, torch.zeros_like(cm), match), lm)


def test_old_configs_load_without_copy_head():
    cfg = GPTConfig.from_dict({"vocab_size": 50, "n_layer": 1, "n_embd": 32, "n_head": 2, "n_kv_head": 2})
    assert not cfg.copy_head and not hasattr(GPT(cfg), "copy")
    with pytest.raises(ValueError, match="copy features"):
        GPT(GPTConfig(vocab_size=50, n_layer=1, n_embd=32, n_head=2, n_kv_head=2, copy_head=True, copy_features=("x",)))


def test_cached_decode_equals_uncached():
    model = copy_model(seed=1)
    x, _, cm, match = batch(seed=1, B=1, T=24)
    prompt, mask, flags = x[0].tolist(), cm[0].tolist(), match[0].tolist()
    decoder = CopyDecoder(model, prompt, mask, flags)
    logp, seq = decoder.prefill(), list(prompt)
    with torch.no_grad():
        for _ in range(12):
            full = torch.tensor([seq])
            full_mask = torch.tensor([mask + [False] * (len(seq) - len(prompt))])
            full_match = torch.tensor([flags + [0] * (len(seq) - len(prompt))])
            ref = full_logprobs(model, full, full_mask, full_match, 0, len(seq) - 1)
            torch.testing.assert_close(logp, ref, atol=1e-5, rtol=1e-5)
            nxt = int(ref.argmax())
            seq.append(nxt)
            logp = decoder.step(nxt)
    greedy = list(generate_copy(model, prompt, mask, flags, SamplingConfig(max_new_tokens=12)))
    assert greedy == seq[len(prompt) :]


def test_plain_model_decodes_like_generate(tiny_model):
    prompt = [5, 17, 33, 2, 9]
    out = list(generate_copy(tiny_model, prompt, cfg=SamplingConfig(max_new_tokens=15)))
    assert out == list(generate(tiny_model, prompt, SamplingConfig(max_new_tokens=15)))


def test_save_load_gives_identical_generations(tok, tmp_path):
    model = copy_model(seed=2, vocab=tok.vocab_size)
    write_checkpoint(tmp_path / "ck", model, tok)
    loaded, _, config = load_model(tmp_path / "ck")
    assert config["model"]["copy_head"] and tuple(config["model"]["copy_features"]) == FEATURES
    prompt = tok.encode("Mechanizm uwagi liczy podobieństwo zapytania do klucza.")
    mask, flags = [True] * len(prompt), [1 if i % 3 == 0 else 0 for i in range(len(prompt))]
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=20, seed=5)
    assert list(generate_copy(loaded, prompt, mask, flags, cfg)) == list(generate_copy(model, prompt, mask, flags, cfg))


# -- constrained decoding ----------------------------------------------------------------------


def constraint_for(words, stop=99):
    """A constraint over single-byte tokens (id = byte value) plus a stop id."""
    return WordConstraint(lambda i: bytes([i]), [stop], words, [stop])


def feed(c: WordConstraint, text: str) -> bool:
    for b in text.encode("utf-8"):
        if not c.allows(b):
            return False
        c.push(b)
    return True


def test_constraint_words_prefixes_citations_and_utf8():
    assert feed(constraint_for({"transformer", "uses"}), "Transformer uses, [12] transformer.")
    assert not feed(constraint_for({"transformer"}), "transformers")
    assert not feed(constraint_for({"transformer"}), "trans former")  # "trans" is not a word
    c = constraint_for({"transformer"})
    assert feed(c, "trans") and not c.allows(99)  # the answer cannot stop inside a word
    assert feed(c, "former") and c.allows(99)
    c = constraint_for({"łódź"})
    assert feed(c, "Łódź") and not feed(constraint_for({"łódź"}), "łódka")
    assert not constraint_for({"łódź"}).allows(0xFF)  # never valid UTF-8


def test_constrained_generation_never_writes_an_absent_content_word(tok):
    import random

    from conftest import SAMPLE_TEXT

    vocab = sorted({w for t in SAMPLE_TEXT for w in lowercase_words(t)})
    model = copy_model(seed=3, vocab=tok.vocab_size)
    end = tok.special("end")
    escaped = written = 0
    for trial in range(12):
        rng = random.Random(trial)
        passages = [" ".join(rng.sample(vocab, 6)) + "." for _ in range(2)]
        question = " ".join(rng.sample(vocab, 3)) + "?"
        prompt = tok.encode(question + " " + " ".join(passages))
        mask, cfg = [True] * len(prompt), SamplingConfig(temperature=1.0, top_k=100, max_new_tokens=30, seed=trial)
        constraint = WordConstraint.for_sources(tok, [question, *passages], stop_ids=[end])
        ids = list(generate_copy(model, prompt, mask, None, cfg, stop_ids=[end], constraint=constraint))
        out = tok.decode(ids)
        found = lowercase_words(out)
        if len(ids) == cfg.max_new_tokens and out[-1:].isalnum():  # cut inside a word by the limit
            last = found.pop()
            assert any(w.startswith(last) for w in constraint.word_set) or last.isdigit(), (last, out)
        for w in found:
            assert w in constraint.word_set or f"[{w}" in out, (w, out)
        written += len(found)
        free = tok.decode(generate_copy(model, prompt, mask, None, cfg, stop_ids=[end]))
        escaped += any(w not in constraint.word_set for w in lowercase_words(free))
    assert written >= 30  # the constraint does not just stop the answers
    assert escaped >= 3  # unconstrained, the same model does write absent words


def test_tiny_model_learns_the_synthetic_copy_task():
    from notes_rag.model.copy_task import CopyTask, TrainSetup, train

    task = CopyTask(n_content=24, sentences=4, min_len=3, max_len=5)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=task.vocab_size, seq_len=64, n_layer=2, n_head=2, n_kv_head=2, n_embd=48, copy_head=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as in the benchmark (and faster for a model this small)
    try:
        setup = TrainSetup(steps=120, batch=16, lr=1e-2, warmup=20, eval_every=120, eval_examples=60)
        rows = train(GPT(cfg), task, setup)
    finally:
        torch.set_num_threads(threads)
    assert rows[-1]["exact_match"] >= 0.9, rows
