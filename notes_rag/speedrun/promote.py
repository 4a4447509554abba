"""`notes-rag promote RUN_DIR`: a speedrun's release into models/, only when it is better on dev.

Better means a higher key-fact recall than the current release on the same dev set without a
lower abstention accuracy, both read from `notes-rag eval` reports: RUN/eval.json against
models/eval.json. The new models/ is assembled beside the old one (its README and other files
kept, the weights, config, tokenizer, loss curves and eval report replaced, the README's
generated numbers rewritten) and swapped in by rename, so a crash leaves one whole release.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text, read_json
from notes_rag.model.checkpoint import CONFIG_FILE, read_config, swap_folder
from notes_rag.model.gpt import GPT, GPTConfig
from notes_rag.model.manifest import write_manifest
from notes_rag.model.sharding import weight_files
from notes_rag.model.tokenizer import TOKENIZER_FILE
from notes_rag.speedrun.stages import EVAL_FILE

KEY, GUARD = "key_fact_recall", "abstention_accuracy"
LOSS_CURVES = {"pretrain": "pretrain_loss.png", "finetune": "finetune_loss.png", "generator": "generator_loss.png"}
BEGIN, END = "<!-- release-numbers:begin -->", "<!-- release-numbers:end -->"
# README rows: label -> (answer metric or latency key, format)
DEV_ROWS = {
    "key-fact recall": ("key_fact_recall", "{:.2f}"),
    "abstention accuracy": ("abstention_accuracy", "{:.2f}"),
    "false abstention": ("false_abstention", "{:.2f}"),
    "citation precision": ("citation_precision", "{:.2f}"),
    "answers by the model": ("answered_by_model", "{:.2f}"),
    "answer time p50 (s)": ("total_s_p50", "{:.3f}"),
}


@dataclass
class Verdict:
    promote: bool
    reason: str


def answers(rep: dict, what: str) -> dict:
    """The model's overall answer metrics (and latency) of an eval report."""
    overall = rep.get("overall", {})
    if not overall.get("answer"):
        raise NotesRagError(f"{what} has no model answers (it was made with --no-answers or without a model)")
    return {**overall["answer"], **overall.get("latency", {})}


def compare(run: dict, release: dict) -> Verdict:
    """Whether the run's report beats the release's: more key facts, abstention no worse."""
    if {i["id"] for i in run["items"]} != {i["id"] for i in release["items"]}:
        raise NotesRagError("the run and the release were evaluated on different QA items: use one dev set for both")
    a, b = answers(run, "the run's eval report"), answers(release, "the release's eval report")
    key = f"key-fact recall {a[KEY] or 0:.2f} vs {b[KEY] or 0:.2f}"
    guard = f"abstention accuracy {a[GUARD] or 0:.2f} vs {b[GUARD] or 0:.2f}"
    if (a[KEY] or 0) <= (b[KEY] or 0):
        return Verdict(False, f"{key}: not better than the release")
    if (a[GUARD] or 0) < (b[GUARD] or 0):
        return Verdict(False, f"{key}, but {guard}: abstains worse than the release")
    return Verdict(True, f"{key}, {guard}")


def _stage_rows(meta: dict) -> list[str]:
    """One table row per training stage, oldest first, from a checkpoint's meta chain."""
    rows = []
    while meta:
        val = meta.get("val_loss")
        bpb = f", {meta['val_bpb']:.3f} bits/byte" if "val_bpb" in meta else ""
        rows.append(
            f"| {meta.get('stage', '?')} | {meta.get('step', '–')} | {meta.get('tokens', 0) / 1e6:.1f}M | "
            f"{meta.get('train_seconds', 0) / 60:.1f} min | "
            + (f"val loss {val:.3f}{bpb} |" if val is not None else "– |")
        )
        meta = meta.get("base_meta") or {}
    return rows[::-1]


def release_numbers(models: Path, rep: dict, previous: dict | None, source: str) -> str:
    """The README block of generated numbers for the release in `models`."""
    config = read_config(models)
    params = GPT(GPTConfig.from_dict(config["model"])).num_params()
    files = weight_files(models)
    meta = config.get("meta", {})
    now, prev = answers(rep, "the eval report"), answers(previous, "the previous eval report") if previous else {}
    dev = rep.get("meta", {})
    lines = [
        BEGIN,
        "## Release numbers (written by `notes-rag promote`)",
        "",
        f"Promoted {dt.date.today().isoformat()} from `{source}` (speedrun profile {meta.get('speedrun', '–')}, "
        f"precision {meta.get('precision', '–')}): {params / 1e6:.2f}M parameters, weights in {len(files)} "
        f"file(s), {sum(f.stat().st_size for f in files) / 1e6:.1f} MB.",
        "",
        "| stage | steps | tokens | training time | validation |",
        "|---|---:|---:|---:|---|",
        *_stage_rows(meta),
        "",
        f"Dev set `{Path(dev.get('qa_file', '?')).name}` ({len(rep['items'])} items, {dev.get('date', '?')[:10]}):",
        "",
        "| metric | previous release | this release |",
        "|---|---:|---:|",
    ]
    for label, (key, spec) in DEV_ROWS.items():
        cells = [spec.format(m[key]) if m.get(key) is not None else "–" for m in (prev, now)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join([*lines, END]) + "\n"


def with_numbers(readme: str, block: str) -> str:
    """`readme` with its generated block replaced (or appended when it has none)."""
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        return head + block.rstrip("\n") + rest.split(END, 1)[1]
    return readme.rstrip("\n") + "\n\n" + block


def _assemble(run: Path, models: Path, tmp: Path) -> None:
    """The new release folder in `tmp`: a copy of `models` with the run's release files in."""
    if models.is_dir():
        shutil.copytree(models, tmp)
        for old in weight_files(tmp):
            old.unlink()
    else:
        tmp.mkdir(parents=True)
    release = run / "release"
    for f in [*weight_files(release), release / CONFIG_FILE, release / TOKENIZER_FILE]:
        shutil.copy2(f, tmp / f.name)
    for stage, name in LOSS_CURVES.items():
        if (run / stage / "loss.png").is_file():
            shutil.copy2(run / stage / "loss.png", tmp / name)
    shutil.copy2(run / EVAL_FILE, tmp / EVAL_FILE)


def promote(run: Path, models: Path, force: str | None = None) -> Verdict:
    """Install RUN/release into `models` when its dev eval beats the release's; else raise.
    `force` (a reason, written into the model card) installs it whatever the comparison says:
    for a release the current code can no longer run, whose report cannot be remade."""
    run, models = Path(run), Path(models)
    if not (run / "release" / CONFIG_FILE).is_file():
        raise NotesRagError(f"{run} has no release/ yet: finish its speedrun first")
    if not (run / EVAL_FILE).is_file():
        raise NotesRagError(f"{run} has no {EVAL_FILE}: rerun its speedrun with --dev FILE")
    rep = read_json(run / EVAL_FILE, "eval report")
    previous = None
    if (models / CONFIG_FILE).is_file():
        if not (models / EVAL_FILE).is_file():
            raise NotesRagError(
                f"{models} has no {EVAL_FILE} to compare with: make it with "
                f"notes-rag eval DEV --model {models} --json {models / EVAL_FILE}"
            )
        previous = read_json(models / EVAL_FILE, "eval report")
        verdict = compare(rep, previous)
        if force:
            verdict = Verdict(True, f"forced ({force}); the comparison said: {verdict.reason}")
        elif not verdict.promote:
            raise NotesRagError(f"not promoted: {verdict.reason}")
    else:
        verdict = Verdict(True, f"{models} holds no release yet")
    tmp = models.with_name(f".{models.name}.promote-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _assemble(run, models, tmp)
        readme = tmp / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Model card\n"
        source = f"{run}; {verdict.reason}" if force else str(run)
        atomic_write_text(readme, with_numbers(text, release_numbers(tmp, rep, previous, source)))
        write_manifest(tmp)  # the new weights' sha256 (and the kept encoder delta's)
        swap_folder(tmp, models)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return verdict
