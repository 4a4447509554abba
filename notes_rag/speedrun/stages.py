"""The speedrun's stages, in order: each is a library call into a subfolder of the run folder,
and is done when its output exists, so a rerun skips it (and resumes a training stage that
an interruption left half-way: its `last/` checkpoint holds the exact state).

    RUN/pretrain/     tokenizer.json (tokenizer), token shards and the pretraining run (pretrain)
    RUN/sft/          train.jsonl, val.jsonl (sft-data)
    RUN/finetune/     RUN/generator/  the two training runs on those conversations (the generator
                      adds the copy head to the finetuned model: train/generator.py)
    RUN/release/      the generator's best checkpoint in the profile's release format (release)
    RUN/eval.json     `notes-rag eval` of the release on the dev set (eval)

Every output is written atomically by the library, so Ctrl-C leaves a stage either done or not.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from notes_rag.chat.assistant import AnswerConfig
from notes_rag.errors import NotesRagError
from notes_rag.eval.backends import eval_meta, open_backends, run_backends
from notes_rag.eval.qa_file import load_items
from notes_rag.eval.summary import report
from notes_rag.fileio import atomic_write_json
from notes_rag.model.checkpoint import load_model, resolve_folder, write_checkpoint
from notes_rag.model.sharding import weight_files
from notes_rag.model.tokenizer import TOKENIZER_FILE, load_tokenizer
from notes_rag.sft.build import build_sft, write_jsonl
from notes_rag.speedrun.profiles import Profile
from notes_rag.train.finetune import finetune
from notes_rag.train.generator import train_generator
from notes_rag.train.pretrain import get_tokenizer, pretrain
from notes_rag.train.pretrain_data import find_data_files

EVAL_FILE = "eval.json"


@dataclass
class Context:
    """What every stage reads: the profile, the run folder, the dev set, the measured precision."""

    profile: Profile
    out: Path
    dev: Path | None  # QA file of the dev evaluation; None skips it
    index: Path | None  # index for the dev evaluation (None: ./.notes-rag or ./corpus/.notes-rag)
    precision: str  # "bf16" or "fp32", for every training stage
    console: object

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)


@dataclass(frozen=True)
class Stage:
    name: str
    output: Callable[[Context], Path]  # what exists once the stage is done (a training stage: its run)
    run: Callable[[Context], dict]  # does the work; returns the numbers the report shows
    training: bool = False

    def done(self, ctx: Context) -> bool:
        out = self.output(ctx)
        if self.training:  # done when the run's last checkpoint says it finished
            state = resolve_folder(out / "last") / "train_state.json"
            return state.is_file() and json.loads(state.read_text()).get("reason") == "done"
        return out.exists()


def pretrain_files(ctx: Context) -> list[Path]:
    """The profile's slice of kit/pretrain (every file when it names none)."""
    folder = ctx.profile.kit / "pretrain"
    if not folder.is_dir():
        raise NotesRagError(f"no pretraining data in {folder}: pass --kit DIR (a folder with pretrain/ and sft/)")
    if not ctx.profile.pretrain_files:
        return find_data_files([folder])
    files = sorted({p for pattern in ctx.profile.pretrain_files for p in folder.glob(pattern)})
    if not files:
        raise NotesRagError(f"{folder} has no file matching {', '.join(ctx.profile.pretrain_files)}")
    return find_data_files(files)


def _with_precision(cfg, precision: str):
    """A stage config (with a `train` TrainConfig) running in `precision`."""
    return replace(cfg, train=replace(cfg.train, precision=precision))


def _resume(run: Path) -> bool:
    """A training stage continues its run when an interruption left a checkpoint."""
    return (resolve_folder(run / "last") / "config.json").is_file()


def speeds(metrics: Path) -> dict:
    """Median tokens/s and MFU over a run's log lines (evaluations excluded)."""
    lines = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    logs = [m for m in lines if "tok_per_s" in m]
    if not logs:
        return {}
    return {
        "tok_per_s": statistics.median(m["tok_per_s"] for m in logs),
        "mfu": statistics.median(m["mfu"] for m in logs),
    }


def _train_record(result: dict, run: Path) -> dict:
    numbers = {k: v for k, v in result.items() if isinstance(v, int | float) and k != "step"}
    return {"steps": result["step"], **numbers, **speeds(run / "metrics.jsonl")}


def _tokenizer(ctx: Context) -> dict:
    files = pretrain_files(ctx)
    tok = get_tokenizer(ctx.path("pretrain"), files, ctx.profile.pretrain, ctx.console)
    return {"vocab_size": tok.vocab_size, "files": len(files)}


def _pretrain(ctx: Context) -> dict:
    run = ctx.path("pretrain")
    cfg = _with_precision(ctx.profile.pretrain, ctx.precision)
    result = pretrain(pretrain_files(ctx), run, cfg, resume=_resume(run), console=ctx.console)
    return _train_record(result, run)


def _sft_data(ctx: Context) -> dict:
    tok = load_tokenizer(ctx.path("pretrain", TOKENIZER_FILE))
    built = build_sft(replace(ctx.profile.sft, data_dir=ctx.profile.kit), tok)
    write_jsonl(ctx.path("sft", "train.jsonl"), built.train)
    write_jsonl(ctx.path("sft", "val.jsonl"), built.val)  # last: its existence marks the stage done
    return {"train": len(built.train), "val": len(built.val)}


def _finetune(ctx: Context) -> dict:
    run = ctx.path("finetune")
    cfg = _with_precision(ctx.profile.finetune, ctx.precision)
    result = finetune(ctx.path("pretrain", "best"), [ctx.path("sft")], run, cfg, _resume(run), ctx.console)
    return _train_record(result, run)


def _generator(ctx: Context) -> dict:
    run = ctx.path("generator")
    cfg = _with_precision(ctx.profile.generator, ctx.precision)
    notes_qa = ctx.profile.kit / "notes_qa"  # student-style notes, when the kit has them (as the release)
    if cfg.notes_qa is None and notes_qa.is_dir():
        cfg = replace(cfg, notes_qa=notes_qa)
    result = train_generator(ctx.path("finetune", "best"), [ctx.path("sft")], run, cfg, _resume(run), ctx.console)
    return _train_record(result, run)


def _release(ctx: Context) -> dict:
    model, tok, config = load_model(ctx.path("generator", "best"))
    meta = {**config["meta"], "speedrun": ctx.profile.name, "precision": ctx.precision}
    folder = ctx.path("release")
    write_checkpoint(folder, model, tok, meta=meta, shards=ctx.profile.release_shards)
    files = weight_files(folder)
    return {
        "params": model.num_params(),
        "dtype": ctx.profile.release_shards[0] if ctx.profile.release_shards else "float32",
        "weight_files": len(files),
        "largest_file_mb": max(f.stat().st_size for f in files) / 1e6,
    }


def _eval(ctx: Context) -> dict:
    if ctx.dev is None:
        return {"skipped": "no dev set (pass --dev FILE)"}
    items = load_items(ctx.dev)
    cfg = AnswerConfig()
    backends = open_backends(ctx.index, ctx.path("release"), cfg.k, cfg.mode, answers=True)
    try:
        results = run_backends(items, backends)
    finally:
        backends.close()
    rep = report(results, eval_meta(ctx.dev, cfg.k, cfg.mode, backends))
    atomic_write_json(ctx.path(EVAL_FILE), rep)
    answer = rep["overall"]["answer"] or {}
    return {
        "items": len(items),
        "key_fact_recall": answer.get("key_fact_recall"),
        "abstention_accuracy": answer.get("abstention_accuracy"),
    }


STAGES = (
    Stage("tokenizer", lambda c: c.path("pretrain", TOKENIZER_FILE), _tokenizer),
    Stage("pretrain", lambda c: c.path("pretrain"), _pretrain, training=True),
    Stage("sft-data", lambda c: c.path("sft", "val.jsonl"), _sft_data),
    Stage("finetune", lambda c: c.path("finetune"), _finetune, training=True),
    Stage("generator", lambda c: c.path("generator"), _generator, training=True),
    Stage("release", lambda c: c.path("release", "config.json"), _release),
    Stage("eval", lambda c: c.path(EVAL_FILE), _eval),
)


def device() -> torch.device:
    """The device the training stages use (train/distributed.py picks it the same way)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
