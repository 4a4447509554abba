"""Hand-written autograd functions for the ops that dominate eager CPU training of a small GPT.

At our shapes (width 192-384, vocabulary 8k) the matmuls are only about half of a training
step; the rest is elementwise work that autograd spreads over many small kernels, each
allocating and re-reading whole activations. The profiler showed four culprits, and each
function here replaces one with a forward that saves only what its backward needs and a
backward written out by hand:

- `rms_norm`: `F.rms_norm` saves the input and recomputes; here forward saves the output and
  the per-row inverse RMS, and backward is one fused expression.
- `rope_rms_norm`: rotary embedding followed by QK-norm, as one function; the backward of a
  rotation is the inverse rotation, so nothing but the norm's output is saved.
- `relu_squared`: the MLP activation; autograd runs pow's backward and then relu's mask, while
  the gradient is simply 2·relu(h)·g.
- `linear_cross_entropy`: output head + cross-entropy. Autograd's path keeps the log-softmax,
  then fills a zero gradient the size of the logits and scatters into it; here backward turns
  the saved logits into softmax in place and subtracts one at the targets.

Each matches the plain PyTorch composition to float32 rounding (tests/test_kernels.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = torch.finfo(torch.float32).eps  # what F.rms_norm uses for float32 when eps is None


def _norm_forward(x):
    """y = x / rms(x) and the per-row 1 / rms, which is all the backward needs besides y."""
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    return x * r, r


def _norm_backward(g, y, r):
    # d/dx (x r) = r (g - y mean(g y)) for r = rsqrt(mean(x^2))
    return (g - y * (g * y).mean(-1, keepdim=True)) * r


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y, r = _norm_forward(x)
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, g):
        return _norm_backward(g, *ctx.saved_tensors)


def _rotate(x, cos, sin):
    # rotate the two halves of each head as complex pairs; (cos, -sin) is the inverse rotation
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class _RopeRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        y, r = _norm_forward(_rotate(x, cos, sin))
        ctx.save_for_backward(y, r, cos, sin)
        return y

    @staticmethod
    def backward(ctx, g):
        y, r, cos, sin = ctx.saved_tensors
        return _rotate(_norm_backward(g, y, r), cos, -sin), None, None


class _ReluSquared(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        r = torch.relu(h)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        # d/dh relu(h)^2 = 2 relu(h): zero where h <= 0, so no separate mask pass is needed
        return torch.mul(g, r).mul_(2.0)


class _LinearCrossEntropy(torch.autograd.Function):
    # Rows go through in chunks so each slice of logits is still in cache when the log-sum-exp
    # (forward) and the softmax gradient (backward) touch it again.
    CHUNK = 256

    @staticmethod
    def forward(ctx, x, weight, targets):
        n = x.size(0)
        logits = x.new_empty(n, weight.size(0))
        lse = x.new_empty(n)
        for i in range(0, n, _LinearCrossEntropy.CHUNK):
            rows = slice(i, i + _LinearCrossEntropy.CHUNK)
            torch.mm(x[rows], weight.t(), out=logits[rows])
            torch.logsumexp(logits[rows], dim=-1, out=lse[rows])
        valid = targets != -1
        safe = targets.clamp_min(0)
        picked = logits.gather(1, safe[:, None]).squeeze(1)
        count = valid.sum().clamp_min(1)
        loss = ((lse - picked) * valid).sum() / count
        ctx.save_for_backward(x, weight, logits, lse, safe, valid, count)
        return loss

    @staticmethod
    def backward(ctx, g):
        x, weight, logits, lse, safe, valid, count = ctx.saved_tensors
        scale = (valid * (g / count)).to(logits.dtype)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight)
        for i in range(0, x.size(0), _LinearCrossEntropy.CHUNK):
            rows = slice(i, i + _LinearCrossEntropy.CHUNK)
            # softmax - onehot, built in the saved logits' memory (they are not needed again)
            p = logits[rows].sub_(lse[rows, None]).exp_()
            p.scatter_add_(1, safe[rows, None], torch.full_like(lse[rows, None], -1.0))
            p.mul_(scale[rows, None])
            torch.mm(p, weight, out=grad_x[rows])
            grad_w.addmm_(p.t(), x[rows])
        return grad_x, grad_w, None


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return _RMSNorm.apply(x) if x.requires_grad else F.rms_norm(x, (x.size(-1),), eps=EPS)


def rope_rms_norm(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RMS-normalise x (B, T, H, D) after rotating it by the rotary tables (1, T, 1, D/2)."""
    if x.requires_grad:
        return _RopeRMSNorm.apply(x, cos, sin)
    return F.rms_norm(_rotate(x, cos, sin), (x.size(-1),), eps=EPS)


def relu_squared(h: torch.Tensor) -> torch.Tensor:
    return _ReluSquared.apply(h) if h.requires_grad else torch.relu(h).square()


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `x @ weight.T` against targets (-1 = ignored); x (N, C), targets (N,)."""
    return _LinearCrossEntropy.apply(x, weight, targets)
