"""The copy head: its distribution, loss, cached decode, constrained decoding and save/load."""

import pytest
import torch

from notes_rag.model.copy_head import FEATURES, features
from notes_rag.model.gpt import GPT, GPTConfig

V = 60


def copy_model(seed: int = 0, feats=FEATURES, vocab: int = V) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, seq_len=96, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, copy_head=True)
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
