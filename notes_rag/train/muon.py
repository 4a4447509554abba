"""Muon for the transformer's 2-D weight matrices, AdamW for everything else, as one optimizer.

Muon (Keller Jordan, used by modded-nanogpt and nanochat) takes SGD-momentum's update for a
weight matrix and replaces it by the nearest semi-orthogonal matrix, computed with a few
Newton-Schulz iterations; every direction of the matrix then learns at the same rate. It is
meant for hidden matrices only: the token embedding (tied to the output head here) stays on
AdamW. One optimizer object with a `muon` flag per parameter group keeps the training loop's
checkpointing, resume and learning-rate schedule unchanged.
"""

from __future__ import annotations

import torch

# quintic Newton-Schulz coefficients tuned for fast convergence of the singular values towards 1
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T for g = U S V^T (singular values pushed into roughly [0.7, 1.2])."""
    a, b, c = NS_COEFFS
    x = g.float()
    wide = x.size(0) <= x.size(1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.t()
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.t()
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.t()).to(g.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Groups with `muon=True` get Muon (lr, momentum, weight_decay, ns_steps); the others get
    AdamW (lr, betas, eps, weight_decay)."""

    def __init__(
        self,
        groups: list[dict],
        lr: float = 0.02,
        momentum: float = 0.95,
        betas=(0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
    ):
        for g in groups:
            if g.get("muon") and any(p.dim() != 2 for p in g["params"]):
                raise ValueError("Muon groups hold 2-D weight matrices only")
        defaults = dict(
            lr=lr, momentum=momentum, betas=betas, eps=eps, weight_decay=weight_decay, ns_steps=ns_steps, muon=False
        )
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["muon"]:
                self._muon(group)
            else:
                self._adamw(group)

    def _muon(self, group: dict) -> None:
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mom)
            update = orthogonalize(p.grad.lerp(buf, mom), group["ns_steps"])  # Nesterov momentum
            # orthogonal updates have RMS ~ 1/sqrt(max dim); tall matrices get the larger step
            scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(update, alpha=-lr * scale)

    def _adamw(self, group: dict) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt_().add_(eps)
            if wd:
                p.mul_(1 - lr * wd)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1**t))
