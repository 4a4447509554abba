"""Chat inference cost of every model preset on this machine: time to first token and tokens/s.

    python benchmarks/bench_presets.py [--presets tiny,small,base,medium,large] [--json out.json]

For each preset (`notes_rag.model.gpt.PRESETS`, vocabulary 8,192, context 1,024) a randomly
initialised GPT answers a chat-sized prompt of `--prompt` tokens (904: the typical turn of
benchmarks/bench_chat.py, system + 4 passages + 2 earlier exchanges + the question) through the
chat's own decoder (`engine.generate`, KV cache, greedy):

- first token: prefill of the prompt + the first new token (what the chat adds to retrieval,
  ~20-45 ms, before the first word shows); for a reader model it is also the whole answer, which
  is one forward pass over the same prompt;
- tokens/s: decode speed of tokens 2..`--new`.

Weights are random (speed does not depend on them) and the prompt is random ids; stop tokens are
ignored so every preset decodes the same number of tokens. Median of `--runs` after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.model.engine import SamplingConfig, generate  # noqa: E402
from notes_rag.model.gpt import GPT, PRESETS, preset  # noqa: E402
from notes_rag.speedrun.report import machine  # noqa: E402


def time_turn(model: GPT, prompt: list[int], new: int) -> tuple[float, float]:
    """(seconds to the first new token, decode tokens/s after it) of one greedy answer."""
    t0 = time.perf_counter()
    stamps = [time.perf_counter() for _ in generate(model, prompt, SamplingConfig(max_new_tokens=new))]
    first = stamps[0] - t0
    return first, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def bench(name: str, prompt_len: int, new: int, runs: int) -> dict:
    torch.manual_seed(0)
    model = GPT(preset(name, vocab_size=8192, seq_len=1024)).eval()
    for p in model.parameters():  # random, not zero, output projections: every op does real work
        torch.nn.init.normal_(p, std=0.02)
    prompt = torch.randint(0, 8192, (prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()
    time_turn(model, prompt, new)  # warm-up
    results = [time_turn(model, prompt, new) for _ in range(runs)]
    return {
        "preset": name,
        "params_m": round(model.num_params() / 1e6, 2),
        "ttft_s": statistics.median(r[0] for r in results),
        "tokens_per_s": statistics.median(r[1] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    ap.add_argument("--prompt", type=int, default=904, help="prompt tokens")
    ap.add_argument("--new", type=int, default=120, help="new tokens per answer")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench(name, args.prompt, args.new, args.runs) for name in args.presets.split(",")]
    table = Table(title=f"chat decoding per preset: {args.prompt}-token prompt, {args.new} new tokens, median")
    for col in ("preset", "params", "first token s", "tokens/s"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        table.add_row(r["preset"], f"{r['params_m']:.2f}M", f"{r['ttft_s']:.3f}", f"{r['tokens_per_s']:.0f}")
    Console().print(table)
    if args.json:
        meta = {
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "threads": torch.get_num_threads(),
            "prompt_tokens": args.prompt,
            "new_tokens": args.new,
            "runs": args.runs,
        }
        atomic_write_json(args.json, {"meta": meta, "presets": rows})


if __name__ == "__main__":
    main()
