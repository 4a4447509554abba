"""The in-context copying probe: does the model copy what it has already seen in its context?

A random token sequence cannot be predicted, so the loss on its first half stays near
ln(vocabulary); repeated once, its second half can be predicted perfectly by looking back. The
gap between the two losses shows when the model has learned to copy (induction heads), the
skill a reader of retrieved notes depends on. Pretraining logs it at every evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def copy_probe(model: torch.nn.Module, n_ids: int, length: int, batch: int = 8, seed: int = 0) -> dict:
    """Mean loss (nats/token) on the first and the second copy of `batch` random sequences of
    `length // 2` ids drawn from [0, n_ids), and their difference.

    The same seed gives the same sequences at every evaluation, so the curve is comparable."""
    half = length // 2
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, n_ids, (batch, half), generator=g)
    x = torch.cat([seq, seq], dim=1).to(device)  # (B, 2 * half)
    logits = model(x[:, :-1])
    loss = F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")  # (B, 2 * half - 1)
    # position i predicts token i + 1: the first half-1 targets are in the first copy, the rest in the second
    first, second = float(loss[:, : half - 1].mean()), float(loss[:, half - 1 :].mean())
    return {"copy_first": first, "copy_second": second, "copy_gain": first - second}
