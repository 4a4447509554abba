"""Optimizers and their state: AdamW, or Muon for the block matrices (train/muon.py), the
warmup-stable-decay learning-rate schedule, and optimizer state as safetensors for checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import unwrap
from notes_rag.train.muon import MuonAdamW

if TYPE_CHECKING:  # train/loop.py imports this module
    from notes_rag.train.loop import TrainConfig

OPTIMIZERS = ("adamw", "muon")


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Warmup by steps, flat, then linear decay over the last `decay_frac` of progress."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress < 1 - cfg.decay_frac:
        return warm
    frac = (1 - progress) / max(cfg.decay_frac, 1e-9)
    return warm * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * max(0.0, frac))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Each group carries its peak `base_lr`; the schedule scales all of them by one factor."""
    if cfg.optimizer not in OPTIMIZERS:
        raise NotesRagError(f"unknown optimizer {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    matrices, other = [], []
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:  # frozen (train-generator --learn)
            continue
        (matrices if p.dim() >= 2 and "wte" not in name else other).append(p)
    if cfg.optimizer == "muon":
        groups = [
            {"params": matrices, "muon": True, "lr": cfg.muon_lr, "base_lr": cfg.muon_lr, "weight_decay": 0.0},
            {"params": other, "muon": False, "lr": cfg.lr, "base_lr": cfg.lr, "weight_decay": 0.0},
        ]
        return MuonAdamW(groups)
    groups = [
        {"params": matrices, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
        {"params": other, "weight_decay": 0.0, "base_lr": cfg.lr},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def optimizer_name(opt: torch.optim.Optimizer) -> str:
    """The `TrainConfig.optimizer` that made `opt`."""
    return "muon" if isinstance(opt, MuonAdamW) else "adamw"


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors (safetensors) + JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})
