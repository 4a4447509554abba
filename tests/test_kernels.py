"""The hand-written autograd functions equal the plain PyTorch compositions they replace."""

import torch
import torch.nn.functional as F

from notes_rag.model import kernels
from notes_rag.model.gpt import GPT, GPTConfig, rotary_tables

EPS = torch.finfo(torch.float32).eps


def _grads(fn, *inputs, seed=0):
    torch.manual_seed(seed)
    out = fn(*inputs)
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), [t for t in inputs if t.requires_grad])
    return out, grads


def _leaf(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_rms_norm_matches_torch():
    x = _leaf(3, 7, 64)
    out, (g,) = _grads(kernels.rms_norm, x)
    ref, (g_ref,) = _grads(lambda t: F.rms_norm(t, (64,), eps=EPS), x)
    assert torch.allclose(out, ref) and torch.allclose(g, g_ref)


def test_rope_rms_norm_matches_rotation_then_norm():
    cos, sin = (t.double() for t in rotary_tables(GPTConfig(seq_len=16, n_embd=128, n_head=4)))

    def reference(x):
        d = x.size(-1) // 2
        x1, x2 = x[..., :d], x[..., d:]
        return F.rms_norm(torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), -1), (2 * d,), eps=EPS)

    x = _leaf(2, 16, 4, 32)
    out, (g,) = _grads(lambda t: kernels.rope_rms_norm(t, cos, sin), x)
    ref, (g_ref,) = _grads(reference, x)
    assert torch.allclose(out, ref) and torch.allclose(g, g_ref)
    with torch.no_grad():  # the inference path (no autograd function) agrees too
        assert torch.allclose(kernels.rope_rms_norm(x, cos, sin), ref)


def test_relu_squared_matches_torch():
    h = _leaf(40, 30)
    out, (g,) = _grads(kernels.relu_squared, h)
    ref, (g_ref,) = _grads(lambda t: torch.relu(t).square(), h)
    assert torch.allclose(out, ref) and torch.allclose(g, g_ref)


def test_linear_cross_entropy_matches_torch_across_chunks_and_ignored_targets():
    n = kernels._LinearCrossEntropy.CHUNK * 2 + 37  # a partial last chunk
    x, w = _leaf(n, 16), _leaf(100, 16)
    targets = torch.randint(0, 100, (n,))
    targets[::7] = -1
    loss = kernels.linear_cross_entropy(x, w, targets)
    gx, gw = torch.autograd.grad(loss * 3.0, [x, w])
    ref = F.cross_entropy(x @ w.t(), targets, ignore_index=-1)
    gx_ref, gw_ref = torch.autograd.grad(ref * 3.0, [x, w])
    assert torch.allclose(loss, ref)
    assert torch.allclose(gx, gx_ref) and torch.allclose(gw, gw_ref)


def test_model_training_loss_and_grads_match_the_unfused_path():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, seq_len=32, n_layer=2, n_head=2, n_kv_head=1, n_embd=32))
    idx = torch.randint(0, 64, (2, 32))
    targets = torch.randint(0, 64, (2, 32))
    targets[:, :5] = -1
    loss = model(idx, targets=targets)
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(idx)  # no targets: the plain head, then torch's cross-entropy
    ref = F.cross_entropy(logits.view(-1, 64), targets.view(-1), ignore_index=-1)
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    for n, p in model.named_parameters():
        assert torch.allclose(fused[n], p.grad, atol=1e-6), n
