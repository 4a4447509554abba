"""RUN/report.md of a speedrun: machine and precision, each stage's wall time, tokens/s, MFU and
result, the loss curves, the in-context copying probe and the dev evaluation (against the
current release when it has an eval report). Paths in it are relative to the run folder."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from notes_rag.errors import NotesRagError
from notes_rag.eval.summary import ANSWER_COLUMNS
from notes_rag.fileio import atomic_write_text, read_json
from notes_rag.speedrun.profiles import Profile
from notes_rag.speedrun.promote import answers, compare
from notes_rag.speedrun.stages import EVAL_FILE, STAGES

REPORT_FILE = "report.md"


def machine() -> str:
    """CPU model and cores, and the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}"


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


# each stage's result in a few words, from its record in speedrun.json
RESULTS = {
    "tokenizer": lambda r: f"{r['vocab_size']:,} ids from {r['files']} files",
    "pretrain": lambda r: (
        f"val loss {r['best_val']:.3f}, {_fmt(r.get('val_bpb'), '.3f')} bits/byte, "
        f"copy gain {_fmt(r.get('copy_gain'), '.2f')} nats"
    ),
    "sft-data": lambda r: f"{r['train']:,} train / {r['val']:,} val conversations",
    "finetune": lambda r: f"answer-token val loss {r['best_val']:.3f}",
    "generator": lambda r: (
        f"val loss {r['best_val']:.3f}, answer hit {_fmt(r.get('answer_hit'), '.2f')}, "
        f"abstention {_fmt(r.get('abstain_acc'), '.2f')}, false abstention {_fmt(r.get('false_abstain'), '.2f')}"
    ),
    "release": lambda r: (
        f"{r['params'] / 1e6:.2f}M params, {r['dtype']}, {r['weight_files']} weight file(s), "
        f"largest {r['largest_file_mb']:.1f} MB"
    ),
    "eval": lambda r: (
        r.get("skipped")
        or f"{r['items']} items: key facts {_fmt(r['key_fact_recall'], '.2f')}, "
        f"abstention {_fmt(r['abstention_accuracy'], '.2f')}"
    ),
}


def _stages_table(state: dict) -> list[str]:
    lines = [
        "| stage | wall | steps | tokens | tok/s (median) | MFU (median) | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for stage in STAGES:
        r = state["stages"].get(stage.name)
        if r is None:
            lines.append(f"| {stage.name} | – | | | | | not run |")
            continue
        tokens = f"{r['tokens'] / 1e6:.2f}M" if "tokens" in r else ""
        lines.append(
            f"| {stage.name} | {r['wall_s']:.0f} s | {r.get('steps', '')} | {tokens} | "
            f"{_fmt(r.get('tok_per_s'), ',.0f') if 'tok_per_s' in r else ''} | "
            f"{_fmt(r.get('mfu'), '.0%') if 'mfu' in r else ''} | {RESULTS[stage.name](r)} |"
        )
    return lines


def _precision(p: dict) -> str:
    measured = ""
    if p.get("fp32_gflops") is not None:
        measured = f": matmul fp32 {p['fp32_gflops']:.0f} / bf16 {p['bf16_gflops']:.0f} GFLOP/s"
        if p.get("bf16_step_s") is not None:
            measured += f", training step fp32 {p['fp32_step_s']:.3f} s / bf16 {p['bf16_step_s']:.3f} s"
    return f"**{p['precision']}** on {p['device']} ({p['reason']}){measured}"


def _curves(out: Path) -> list[str]:
    return [
        f"![{stage} loss]({stage}/loss.png)"
        for stage in ("pretrain", "finetune", "generator")
        if (out / stage / "loss.png").is_file()
    ]


def _copy_probe(out: Path) -> list[str]:
    metrics = out / "pretrain" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    rows = [r for r in rows if "copy_first" in r]
    if not rows:
        return ["(no pretraining evaluations yet)"]
    lines = [
        "Loss (nats/token) on a random token sequence and on its repetition; the gap is what the model",
        "copies from its context.",
        "",
        "| step | tokens | first copy | second copy | gain |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['tokens'] / 1e6:.2f}M | {r['copy_first']:.3f} | {r['copy_second']:.3f} | "
            f"{r['copy_gain']:.3f} |"
        )
    return lines


def _eval(out: Path, models: Path | None) -> list[str]:
    if not (out / EVAL_FILE).is_file():
        return ["Not evaluated (no dev set given or found)."]
    rep = read_json(out / EVAL_FILE, "eval report")
    overall = rep["overall"]
    rows = [("extractive baseline", overall["baseline"]), ("this run", overall["answer"] or {})]
    release = models / EVAL_FILE if models else None
    if release is not None and release.is_file():
        rows.append(("current release", answers(read_json(release, "eval report"), str(release))))
    lines = [
        f"`{Path(rep['meta'].get('qa_file', '?')).name}`, {overall['n']} items ({overall['n_answerable']} answerable); "
        f"retrieval hit@1 {_fmt(overall['retrieval']['hit@1'], '.2f')}, "
        f"hit@5 {_fmt(overall['retrieval']['hit@5'], '.2f')}; answer time p50 "
        f"{_fmt(overall['latency']['total_s_p50'], '.3f')} s.",
        "",
        "| system | " + " | ".join(ANSWER_COLUMNS) + " |",
        "|---|" + "---:|" * len(ANSWER_COLUMNS),
    ]
    for label, m in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(m.get(k), ".2f") for k in ANSWER_COLUMNS.values()) + " |")
    if release is not None and release.is_file():
        try:
            verdict = compare(rep, read_json(release, "eval report"))
            lines += ["", f"`notes-rag promote {out}`: {'would promote' if verdict.promote else 'would not promote'} "]
            lines[-1] += f"({verdict.reason})."
        except NotesRagError as e:
            lines += ["", f"Not comparable with the current release: {e}."]
    return lines


def render(out: Path, state: dict, profile: Profile, models: Path | None) -> str:
    runs = state["runs"]
    resumed = f" over {len(runs)} invocations" if len(runs) > 1 else ""
    lines = [
        f"# Speedrun `{profile.name}`: {runs[0]['started'][:16].replace('T', ' ') if runs else ''}",
        "",
        f"- Machine: {machine()}",
        f"- Precision: {_precision(state['precision'])}",
        f"- Wall time: {sum(r['wall_s'] for r in runs) / 60:.1f} min{resumed}",
        f"- Data: `{profile.kit}`",
        "",
        "## Stages",
        "",
        *_stages_table(state),
        "",
        "MFU: training FLOP/s over the matmul rate measured at the stage's start, in its precision.",
        "",
        "## Loss curves",
        "",
        *_curves(out),
        "",
        "## In-context copying probe (pretraining)",
        "",
        *_copy_probe(out),
        "",
        "## Dev evaluation",
        "",
        *_eval(out, models),
    ]
    return "\n".join(lines) + "\n"


def write_report(out: Path, state: dict, profile: Profile, models: Path | None) -> Path:
    path = Path(out) / REPORT_FILE
    atomic_write_text(path, render(Path(out), state, profile, models))
    return path
