"""Training speed: the matmul peak of the device (the MFU denominator), and the log lines that
report loss, tokens/s and MFU every `log_every` steps."""

from __future__ import annotations

import functools
import time

import torch

from notes_rag.train.state import Progress, Run


@functools.cache
def measure_matmul_flops(
    device: torch.device, n: int = 2048, trials: int = 5, dtype: torch.dtype | None = None
) -> float:
    """Best-of-`trials` FLOP/s of a square matmul on this device (the MFU denominator), in
    `dtype` (default: bf16 on a GPU, fp32 on a CPU).

    Best, not mean: a busy machine at start-up would otherwise understate the peak and
    overstate MFU for the whole run. Cached per process: every training start (the speedrun's
    stages, each test's tiny run) would otherwise pay the same seconds again.
    """
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


class StepLog:
    """Loss and speed since the last log line, to metrics.jsonl, the progress bar and (without a
    terminal, e.g. under nohup) the console; evaluation time is not counted."""

    def __init__(self, run: Run, console, flops_per_token: float, peak: float, world: int, log_every: int):
        self.run, self.console, self.log_every = run, console, log_every
        self.flops_per_token, self.peak, self.world = flops_per_token, peak, world
        self.interactive = console.is_terminal
        self.seconds, self.tokens, self.loss_ema = 0.0, 0, None
        self.bar, self.task = None, None

    def add(self, p: Progress, progress: float, lv: float, norm: float, lr: float, tokens: int, seconds: float) -> None:
        """Account one step (`p` already counts it); log every `log_every` steps and at the end."""
        self.seconds, self.tokens = self.seconds + seconds, self.tokens + tokens
        self.loss_ema = lv if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * lv
        if p.step % self.log_every != 0 and progress < 1.0:
            return
        tps = self.tokens / max(self.seconds, 1e-9)
        mfu = tps * self.flops_per_token / (self.peak * self.world)
        self.seconds, self.tokens = 0.0, 0
        self.run.log(
            {
                "step": p.step,
                "tokens": p.tokens,
                "loss": round(lv, 4),
                "lr": lr,
                "grad_norm": norm,
                "tok_per_s": round(tps),
                "mfu": round(mfu, 4),
                "elapsed": round(p.elapsed, 1),
            }
        )
        self.bar.update(
            self.task,
            completed=int(progress * 1000),
            description=f"step {p.step} | loss {self.loss_ema:.3f} | {tps:,.0f} tok/s | MFU {mfu:.0%}",
        )
        if self.run.master and not self.interactive:
            self.console.print(
                f"step {p.step} | loss {self.loss_ema:.3f} | lr {lr:.2e} | {tps:,.0f} tok/s | "
                f"MFU {mfu:.0%} | {p.elapsed / 60:.1f} min | {progress:.0%}"
            )
