"""Training precision: fp32, or bf16 autocast over fp32 master weights, chosen by measuring.

Whether bf16 pays depends on the machine, not the device type: on one of our 2-core CPUs (AMD,
native bf16) a bf16 matmul ran at twice the fp32 rate, on another (Intel) at half of it. So
`choose_precision` times a bf16 and an fp32 matmul on the device, and when bf16 wins also a few
training steps of the model under both, and picks bf16 only when both say it is faster.
On a CPU without bf16 instructions (no AVX512_BF16 / AMX-BF16 flag) torch emulates a bf16 matmul
one element at a time: the probe alone stalled every training start for minutes (the test suite
ran > 26 min on such a CPU). There bf16 can only lose, so `choose_precision` reads the CPU's flags
and the instruction set torch's kernels dispatch to (`torch.backends.cpu.get_cpu_capability()`:
AVX2 kernels do not use AVX512_BF16 even where the CPU has it) first, and measures nothing.

The MFU denominator of every training start (`matmul_peak`) is a matmul rate too. On a CPU it is
measured once per machine and kept in the user cache (`matmul-peak.json`, keyed by CPU model,
torch version, dtype and threads; delete it to measure again), and the probe is time-boxed: it
grows the matmul from 256² towards 2048² only while the next size fits `PROBE_BUDGET_S`, so an
emulated bf16 matmul (about 1 GFLOP/s) costs about a second instead of minutes.
Autocast keeps the weights, gradients and optimizer state in fp32; only the matmuls run in bf16,
and the loop's non-finite-loss check still guards every step.
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass

import torch

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json
from notes_rag.train.speed import measure_matmul_flops

PRECISIONS = ("auto", "fp32", "bf16")
MEASURE = "measure"  # not a precision: a request to time bf16 against fp32 at start and take the faster


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a training step runs in: bf16 autocast, or nothing (fp32).

    "auto" keeps the long-standing default: bf16 on a GPU, fp32 on a CPU."""
    if precision not in PRECISIONS:
        raise NotesRagError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def uses_bf16(device: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


@dataclass
class PrecisionChoice:
    """What was measured at start and what was chosen ("bf16" or "fp32"), for the report."""

    precision: str
    device: str
    reason: str = ""
    fp32_gflops: float | None = None
    bf16_gflops: float | None = None
    fp32_step_s: float | None = None  # only measured when the bf16 matmul was faster
    bf16_step_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic: x86 AVX512_BF16 / AMX-BF16, ARM BF16.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# torch CPU capabilities whose kernels cannot use x86 bf16 instructions (torch.backends.cpu)
_NO_BF16_CAPABILITIES = frozenset({"NO AVX", "DEFAULT", "AVX2"})


def _cpuinfo() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_has_native_bf16(cpuinfo: str | None = None, capability: str | None = None) -> bool:
    """Whether bf16 matmuls run on bf16 instructions here: the CPU has them (the flags line of
    /proc/cpuinfo) and, on x86, torch dispatches to AVX-512 kernels (`capability`; for this
    machine `torch.backends.cpu.get_cpu_capability()`, which ATEN_CPU_CAPABILITY=avx2 lowers; for
    a given `cpuinfo` the best its flags allow).

    Where the flags cannot be read (not Linux) we assume yes only on arm64 macOS (Apple M2 and
    later have BF16), so the probe then runs as before rather than being skipped blind."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
        if cpuinfo is None:
            return platform.system() == "Darwin" and platform.machine() == "arm64"
        capability = capability or torch.backends.cpu.get_cpu_capability()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            if _BF16_FLAGS.isdisjoint(flags):
                return False
            if "avx2" in flags or "avx512f" in flags:  # x86: the kernels torch picked must use them
                capability = capability or ("AVX512" if flags & {"avx512f", "amx_bf16"} else "AVX2")
                return capability.upper() not in _NO_BF16_CAPABILITIES
            return True
    return False


PROBE_BUDGET_S = 2.0  # at most this long for a CPU matmul probe (once per machine: it is cached)
PROBE_START = 256  # the probe's first size; it doubles while the next one fits the budget
PEAK_FILE = "matmul-peak.json"


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo or _cpuinfo() or "", re.M)
    return m.group(1).strip() if m else platform.processor() or platform.machine()


def probe_matmul(dtype: torch.dtype, n: int = 2048, budget_s: float = PROBE_BUDGET_S, trials: int = 3) -> float:
    """Best FLOP/s of square CPU matmuls, from PROBE_START² doubling towards n² while the next
    size (8× the work, `trials` + 1 runs) still fits in what is left of `budget_s`."""
    deadline = time.perf_counter() + budget_s
    size, best = min(n, PROBE_START), 0.0
    while True:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # warm-up: first-call allocation and kernel selection
        for _ in range(trials):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / max(time.perf_counter() - t, 1e-9))
        next_cost = (trials + 1) * 2 * (2 * size) ** 3 / best
        if size >= n or time.perf_counter() + next_cost > deadline:
            return best
        size *= 2


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """The MFU denominator: the matmul FLOP/s of `device` in `dtype`. A GPU is measured each time
    (well under a second); a CPU once per machine, time-boxed (`probe_matmul`), then read from
    the user cache."""
    if device.type != "cpu":
        return measure_matmul_flops(device, dtype=dtype)
    from notes_rag.index.encoder_cache import cache_root  # the one user cache folder of notes-rag

    path = cache_root() / PEAK_FILE
    key = f"{cpu_model()} | torch {torch.__version__} | {dtype} | {torch.get_num_threads()} threads | n {n}"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("flops"), int | float) and entry["flops"] > 0:
        return float(entry["flops"])
    flops = probe_matmul(dtype, n)
    cached[key] = {"flops": flops, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    except OSError:  # a read-only cache only costs the probe next time
        pass
    return flops


def time_step(step: Callable[[], None], trials: int = 3) -> float:
    """Best-of-`trials` seconds of one call of `step`, after one warm-up call."""
    step()
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def choose_precision(
    device: torch.device, train_step: Callable[[str], Callable[[], None]] | None = None, n: int = 1024
) -> PrecisionChoice:
    """Measure bf16 against fp32 on `device` and pick the faster.

    `train_step(precision)` returns a function running one training step under that precision;
    it breaks the tie only when the bf16 matmul is faster (a matmul alone flattered bf16 on
    CPUs where whole steps were slower). On a CPU without bf16 instructions nothing is timed."""
    if device.type == "cpu" and not cpu_has_native_bf16():
        return PrecisionChoice("fp32", str(device), reason="this CPU has no bf16 instructions (AVX512_BF16/AMX)")
    fp32 = measure_matmul_flops(device, n=n, dtype=torch.float32)
    try:
        bf16 = measure_matmul_flops(device, n=n, dtype=torch.bfloat16)
    except RuntimeError:  # a device without bf16 kernels
        bf16 = 0.0
    choice = PrecisionChoice("fp32", str(device), fp32_gflops=fp32 / 1e9, bf16_gflops=bf16 / 1e9)
    if bf16 <= fp32:
        choice.reason = f"bf16 matmul {bf16 / 1e9:.0f} GFLOP/s is not faster than fp32 {fp32 / 1e9:.0f}"
        return choice
    if train_step is None:
        choice.precision, choice.reason = "bf16", "bf16 matmul faster"
        return choice
    choice.fp32_step_s = time_step(train_step("fp32"))
    choice.bf16_step_s = time_step(train_step("bf16"))
    faster = choice.bf16_step_s < choice.fp32_step_s
    choice.precision = "bf16" if faster else "fp32"
    choice.reason = (
        f"bf16 matmul {bf16 / fp32:.2f}× fp32; a training step {choice.fp32_step_s / choice.bf16_step_s:.2f}× fp32"
    )
    return choice


def measured_precision(
    model: torch.nn.Module, device: torch.device, batch: int = 4, seq_len: int = 512
) -> PrecisionChoice:
    """`choose_precision` timed on `model` itself (a training command's `--precision measure`)."""
    return choose_precision(device, model_step(model.train().to(device), batch, seq_len, device))


def model_step(model: torch.nn.Module, batch: int, seq_len: int, device: torch.device):
    """`train_step` for `choose_precision`: forward + backward of `model` on random ids."""
    vocab = model.config.vocab_size
    x = torch.randint(0, vocab, (batch, seq_len), device=device)

    def make(precision: str) -> Callable[[], None]:
        def step() -> None:
            with autocast(device, precision):
                loss = model(x, targets=x)
            loss.backward()
            model.zero_grad(set_to_none=True)

        return step

    return make
