"""Our GPT against Hugging Face GPT-2 of the same shape, in one process on this CPU.

    python benchmarks/bench_model.py --json runs/bench_model.json     # full run, a few minutes
    python benchmarks/bench_model.py --quick                          # tiny shapes, seconds

For each shape (default: the release shape "small" and the reference shape "base", vocab 8192,
context 1024) it builds our `GPT` and a randomly initialised `transformers.GPT2LMHeadModel`
with the same layers, width, heads, vocabulary and context, and measures:

- training tokens/s (forward + backward + grad clip + fused AdamW step, the step our trainer
  takes; the same optimizer for both models) at `--seq` × `--batch`, eager and under
  `torch.compile` (compile time reported apart). Steps are timed in alternating rounds (ours,
  HF, ours, ...) so a passing burst of load hits both; the median step counts.
- generation at batch 1: time to first token for a `--prompt`-token prompt and new tokens/s over
  `--new` greedy tokens (after the first), ours (`engine.generate`, KV cache) against HF
  `generate(use_cache=True, do_sample=False, min_new_tokens=max_new_tokens)`; plus our
  no-cache recompute (`engine.generate_no_cache`) for contrast.
- the machine's fp32 matmul GFLOP/s (2048² matmuls, best of several) and each model's training
  FLOP/s as a fraction of it (CPU MFU). FLOPs/token use one formula for both models:
  6 × matmul weights (blocks + output head) + causal attention scores (`GPT.flops_per_token`).
- bf16: whether the CPU has native bf16 (AVX512_BF16 / AMX), the bf16 matmul rate, and one
  bf16-autocast training step of our model at the first shape, for the record only (fp32 stays
  the CPU default).

HF GPT-2 runs with dropout 0 (ours has none) and its default SDPA attention. `--profile`
prints the top ops of one eager training step of each model at the first shape.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.model.engine import SamplingConfig, generate, generate_no_cache  # noqa: E402
from notes_rag.model.gpt import GPT, GPTConfig, preset  # noqa: E402
from notes_rag.train.loop import TrainConfig  # noqa: E402
from notes_rag.train.optim import make_optimizer  # noqa: E402

console = Console()


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support() -> dict:
    flags = cpu_flags()
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "native": native,
    }


def matmul_gflops(dtype: torch.dtype, n: int = 2048, trials: int = 5, reps: int = 2) -> float:
    """Best-of-`trials` rate of `reps` back-to-back n×n matmuls (the MFU denominator for fp32)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e9


# ---------------------------------------------------------------- models


def hf_model(cfg: GPTConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    hc = GPT2Config(
        n_layer=cfg.n_layer,
        n_embd=cfg.n_embd,
        n_head=cfg.n_head,
        vocab_size=cfg.vocab_size,
        n_positions=cfg.seq_len,
        tie_word_embeddings=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        # GPT-2's ids 50256 lie outside an 8k vocabulary; generate() indexes logits with them
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(hc)


def hf_flops_per_token(hf, seq: int) -> float:
    """Our formula on HF's parameters: 6 × (block weights + output head) + causal attention."""
    c = hf.config
    matmul = sum(p.numel() for p in hf.transformer.h.parameters()) + c.vocab_size * c.n_embd
    return 6 * matmul + 12 * c.n_layer * c.n_embd * seq / 2


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- training


def train_step(loss_of: Callable[[], torch.Tensor], model) -> Callable[[], None]:
    """One optimizer step as our trainer takes it (minus lr schedule and logging)."""
    opt = make_optimizer(model, TrainConfig())
    params = [p for p in model.parameters()]

    def step() -> None:
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the whole machine incl. steal, CPU seconds of this process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    t = os.times()
    return time.perf_counter(), (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), t.user + t.system


def foreign_cpu(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Share of the machine's cores that other processes (or the hypervisor) used from a to b:
    the numbers are only meaningful when this is near 0."""
    wall, others = b[0] - a[0], (b[1] - a[1]) - (b[2] - a[2])
    return max(0.0, others / (wall * (os.cpu_count() or 1)))


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def race(steps: dict[str, Callable[[], None]], warmup: int, rounds: int, per_round: int) -> dict[str, dict]:
    """Warm each step up (the first call's time is reported: it holds compilation), then time
    `rounds` × `per_round` steps of each, alternating between them; median step time."""
    out = {}
    for name, fn in steps.items():
        first = timed(fn)
        for _ in range(warmup - 1):
            fn()
        out[name] = {"first_step_s": first, "times": []}
    snap = cpu_snapshot()
    for _ in range(rounds):
        for name, fn in steps.items():
            out[name]["times"] += [timed(fn) for _ in range(per_round)]
    busy = foreign_cpu(snap, cpu_snapshot())
    for r in out.values():
        r["foreign_cpu"] = busy
        r["step_s"] = statistics.median(r["times"])
        r["compile_s"] = max(0.0, r["first_step_s"] - r["step_s"])
    return out


def bench_training(ours: GPT, hf, args, compile_: bool) -> dict[str, dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, ours.config.vocab_size, (args.batch, args.seq + 1), generator=g)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    ours.train()
    hf.train()
    o_fwd = torch.compile(ours, dynamic=False) if compile_ else ours
    h_fwd = torch.compile(hf, dynamic=False) if compile_ else hf
    steps = {
        "ours": train_step(lambda: o_fwd(inp, targets=tgt), ours),
        # HF shifts labels itself: same tokens in, T-1 predictions per row
        "hf": train_step(lambda: h_fwd(input_ids=inp, labels=inp).loss, hf),
    }
    res = race(steps, args.warmup, args.rounds, args.per_round)
    tokens = args.batch * args.seq
    for r in res.values():
        r["tok_s"] = tokens / r["step_s"]
        if not compile_:
            r["compile_s"] = None
    return res


def bench_bf16(ours: GPT, args) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, ours.config.vocab_size, (args.batch, args.seq + 1), generator=g)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    ours.train()

    def loss_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours(inp, targets=tgt)

    step = train_step(loss_bf16, ours)
    step()  # warm-up: oneDNN picks its bf16 kernels on first use
    s = timed(step)
    return {"step_s": s, "tok_s": args.batch * args.seq / s}


# ---------------------------------------------------------------- generation


def _ours_stamps(model: GPT, prompt: list[int], n: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    stamps = [time.perf_counter() for _ in generate(model, prompt, SamplingConfig(max_new_tokens=n))]
    return t0, stamps


def _hf_stamps(hf, prompt: list[int], n: int) -> tuple[float, list[float]]:
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        """Timestamps each new token; generate() first puts the prompt, which is skipped."""

        def __init__(self):
            self.t: list[float] = []
            self.prompt_seen = False

        def put(self, value):
            if self.prompt_seen:
                self.t.append(time.perf_counter())
            self.prompt_seen = True

        def end(self):
            pass

    ids = torch.tensor([prompt])
    s = Stamps()
    t0 = time.perf_counter()
    with torch.inference_mode():
        hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            use_cache=True,
            do_sample=False,
            max_new_tokens=n,
            min_new_tokens=n,
            streamer=s,
        )
    return t0, s.t


def _rates(t0: float, stamps: list[float]) -> dict:
    return {
        "ttft_s": stamps[0] - t0,
        "new_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),  # decode rate after the first
        "total_s": stamps[-1] - t0,
        "n_new": len(stamps),
    }


def bench_generation(ours: GPT, hf, args) -> dict[str, dict]:
    ours.eval()
    hf.eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(1, ours.config.vocab_size, (args.prompt,), generator=g).tolist()
    runs = {"ours": lambda: _ours_stamps(ours, prompt, args.new), "hf": lambda: _hf_stamps(hf, prompt, args.new)}
    for fn in runs.values():  # warm-up (allocator, oneDNN primitives, HF's generation config)
        fn()
    got: dict[str, list[dict]] = {k: [] for k in runs}
    snap = cpu_snapshot()
    for _ in range(args.gen_reps):
        for name, fn in runs.items():
            t0, stamps = fn()
            if len(stamps) != args.new:
                raise RuntimeError(f"{name} produced {len(stamps)} tokens, expected {args.new}")
            got[name].append(_rates(t0, stamps))
    out = {}
    for name, rs in got.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        out[name]["foreign_cpu"] = foreign_cpu(snap, cpu_snapshot())
    t = time.perf_counter()
    n = len(generate_no_cache(ours, prompt, args.nocache_new))
    dt = time.perf_counter() - t
    out["ours_no_cache"] = {
        "ttft_s": None,
        "new_tok_s": n / dt,
        "total_s": dt,
        "n_new": n,
        "foreign_cpu": foreign_cpu(snap, cpu_snapshot()),
    }
    return out


# ---------------------------------------------------------------- profile


def profile_step(ours: GPT, hf, args) -> None:
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, ours.config.vocab_size, (args.batch, args.seq + 1), generator=g)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    ours.train()
    hf.train()
    for name, step in (
        ("ours", train_step(lambda: ours(inp, targets=tgt), ours)),
        ("hf", train_step(lambda: hf(input_ids=inp, labels=inp).loss, hf)),
    ):
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        ka = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ka)
        calls = sum(e.count for e in ka)
        console.print(f"\n[bold]{name}[/]: {calls} op calls, {total / 1e3:.0f} ms self CPU in one eager step")
        console.print(ka.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))


# ---------------------------------------------------------------- main


def shape_config(name: str, args) -> GPTConfig:
    if args.quick:
        return preset("tiny", vocab_size=1024)
    return preset(name, vocab_size=args.vocab)


def _busy(share: float) -> str:
    """Other processes' share of the cores while timing; red when it spoils the numbers."""
    return f"[red]{share:.0%}[/]" if share > 0.1 else f"{share:.0%}"


def render(result: dict) -> None:
    peak = result["matmul_gflops_fp32"]
    t = Table(
        title=f"Training, fp32, batch {result['args']['batch']} × seq {result['args']['seq']} "
        f"(matmul peak {peak:.0f} GFLOP/s)"
    )
    for col in ("shape", "model", "mode", "tok/s", "ms/step", "compile s", "MFU", "vs HF", "other CPU"):
        t.add_column(col, justify="left" if col in ("shape", "model", "mode") else "right")
    for sname, s in result["shapes"].items():
        for mode in ("eager", "compiled"):
            if mode not in s["train"]:
                continue
            r = s["train"][mode]
            for m in ("ours", "hf"):
                x = r[m]
                ratio = f"{r['ours']['tok_s'] / r['hf']['tok_s']:.2f}×" if m == "ours" else ""
                cs = f"{x['compile_s']:.1f}" if x["compile_s"] is not None else ""
                t.add_row(
                    sname,
                    m,
                    mode,
                    f"{x['tok_s']:,.0f}",
                    f"{x['step_s'] * 1e3:,.0f}",
                    cs,
                    f"{x['mfu']:.0%}",
                    ratio,
                    _busy(x["foreign_cpu"]),
                )
    console.print(t)
    g = Table(
        title=f"Generation, batch 1, greedy: {result['args']['prompt']}-token prompt, "
        f"{result['args']['new']} new tokens (no-cache: {result['args']['nocache_new']})"
    )
    for col in ("shape", "model", "TTFT ms", "new tok/s", "vs HF", "other CPU"):
        g.add_column(col, justify="left" if col in ("shape", "model") else "right")
    for sname, s in result["shapes"].items():
        r = s["generation"]
        for m in ("ours", "hf", "ours_no_cache"):
            x = r[m]
            ttft = f"{x['ttft_s'] * 1e3:,.0f}" if x["ttft_s"] is not None else ""
            g.add_row(
                sname,
                m,
                ttft,
                f"{x['new_tok_s']:,.0f}",
                f"{x['new_tok_s'] / r['hf']['new_tok_s']:.2f}×",
                _busy(x["foreign_cpu"]),
            )
    console.print(g)
    if any(
        x["foreign_cpu"] > 0.1
        for s in result["shapes"].values()
        for x in [*s["generation"].values(), *(y for r in s["train"].values() for y in r.values())]
    ):
        console.print("[red]other processes used the CPU while timing (red 'other CPU'): those rows are not valid[/]")
    b = result["bf16"]
    console.print(
        f"bf16: native={b['native']} (avx512_bf16={b['avx512_bf16']}, amx_bf16={b['amx_bf16']}, "
        f"capability {b['cpu_capability']}); bf16 matmul {b['matmul_gflops']:.0f} GFLOP/s; "
        f"one bf16-autocast training step: {b['train']['tok_s']:,.0f} tok/s "
        f"({b['train']['tok_s'] / b['fp32_eager_tok_s']:.2f}× fp32 eager)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,base", help="model presets to compare (first = release shape)")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per model and mode (the first holds compilation)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    ap.add_argument("--per-round", type=int, default=2, help="timed steps per model per round")
    ap.add_argument("--prompt", type=int, default=500)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--nocache-new", type=int, default=50, help="new tokens for the no-cache contrast")
    ap.add_argument("--gen-reps", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    ap.add_argument("--quick", action="store_true", help="tiny shape, 2 timed steps: a smoke test")
    ap.add_argument("--profile", action="store_true", help="profile one eager step of each model at the first shape")
    ap.add_argument("--json", type=Path, help="write all numbers to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.shapes, args.seq, args.batch = "tiny", 64, 2
        args.warmup, args.rounds, args.per_round = 1, 1, 2
        args.prompt, args.new, args.nocache_new, args.gen_reps = 32, 8, 8, 1

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    import transformers

    transformers.logging.set_verbosity_error()  # e.g. "loss_type=None ... unrecognized": noise here

    result: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "loadavg_start": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "matmul_gflops_fp32": matmul_gflops(torch.float32),
        "shapes": {},
    }
    peak = result["matmul_gflops_fp32"] * 1e9
    console.print(
        f"{result['machine']['cpu']}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; fp32 matmul {peak / 1e9:.0f} GFLOP/s"
    )

    for i, name in enumerate(args.shapes.split(",")):
        cfg = shape_config(name, args)
        torch.manual_seed(0)
        ours, hf = GPT(cfg), hf_model(cfg)
        if args.profile and i == 0:
            profile_step(ours, hf, args)
        flops = {"ours": ours.flops_per_token(args.seq), "hf": hf_flops_per_token(hf, args.seq)}
        s = {
            "config": cfg.to_dict(),
            "params": {"ours": n_params(ours), "hf": n_params(hf)},
            "flops_per_token": flops,
            "train": {},
        }
        modes = ["eager"] + ([] if args.no_compile else ["compiled"])
        for mode in modes:
            console.print(f"[dim]{name}: training, {mode} ...[/]")
            r = bench_training(ours, hf, args, compile_=mode == "compiled")
            for m, x in r.items():
                x["mfu"] = x["tok_s"] * flops[m] / peak
                x.pop("times")
            s["train"][mode] = r
        console.print(f"[dim]{name}: generation ...[/]")
        s["generation"] = bench_generation(ours, hf, args)
        if i == 0:
            console.print(f"[dim]{name}: bf16 autocast step ...[/]")
            result["bf16"] = {
                **bf16_support(),
                "matmul_gflops": matmul_gflops(torch.bfloat16),
                "train": bench_bf16(ours, args),
                "fp32_eager_tok_s": s["train"]["eager"]["ours"]["tok_s"],
            }
        result["shapes"][name if not args.quick else "tiny"] = s
        del ours, hf
        torch._dynamo.reset()  # compiled graphs of this shape are not needed again

    result["machine"]["loadavg_end"] = os.getloadavg()
    render(result)
    if args.json:
        atomic_write_json(args.json, result)
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
