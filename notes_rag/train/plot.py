"""The loss-curve PNG of a run, drawn from its metrics.jsonl (written atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def plot_losses(metrics_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = [], []
    for line in metrics_path.read_text().splitlines():
        m = json.loads(line)
        if "loss" in m:
            train.append((m["tokens"], m["loss"]))
        if "val_loss" in m:
            val.append((m["tokens"], m["val_loss"]))
    if not train:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss", alpha=0.7)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("tokens")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png_path)
