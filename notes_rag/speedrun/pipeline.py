"""`notes-rag speedrun`: every stage of a profile into one run folder, then its report.

    notes-rag speedrun --profile smoke --out runs/speedrun-smoke

RUN/speedrun.json keeps the profile's name, the precision measured at the first start (a
resumed run keeps it) and one record per finished stage (its numbers and wall time); the stages
themselves live in speedrun/stages.py, the report in speedrun/report.py. A rerun skips finished
stages and resumes an interrupted one; Ctrl-C propagates as KeyboardInterrupt (exit 130).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import torch

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json, read_json
from notes_rag.model.gpt import GPT, preset
from notes_rag.speedrun.profiles import Profile
from notes_rag.speedrun.report import write_report
from notes_rag.speedrun.stages import STAGES, Context, device
from notes_rag.train.precision import MEASURE, PrecisionChoice, measured_precision
from notes_rag.train.pretrain import DEFAULT_WINDOW

STATE_FILE = "speedrun.json"


def measure_precision(profile: Profile, dev: torch.device) -> PrecisionChoice:
    """bf16 or fp32 for this machine, timed on the profile's pretraining shape (unless it sets one)."""
    if profile.precision != MEASURE:
        return PrecisionChoice(profile.precision, str(dev), reason=f"set by the {profile.name} profile")
    cfg = profile.pretrain
    torch.manual_seed(0)
    model_cfg = preset(cfg.model, vocab_size=cfg.vocab_size, **({"seq_len": cfg.context} if cfg.context else {}))
    seq_len = cfg.seq_len or min(DEFAULT_WINDOW, model_cfg.seq_len)
    return measured_precision(GPT(model_cfg), dev, cfg.train.device_batch, seq_len)


def _load_state(out: Path, profile: Profile) -> dict:
    path = out / STATE_FILE
    if not path.is_file():
        return {"profile": profile.name, "stages": {}, "runs": []}
    state = read_json(path, "speedrun state")
    if state.get("profile") != profile.name:
        raise NotesRagError(f"{out} holds a {state.get('profile')} speedrun: continue it with that profile, or --out")
    return state


def speedrun(
    profile: Profile,
    out: Path,
    dev: Path | None = None,
    index: Path | None = None,
    models: Path | None = None,
    console=None,
) -> dict:
    """Run (or resume) every stage of `profile` in `out`; write `out/report.md`; return the state.

    `dev` is the QA file of the dev evaluation (None skips it), `index` the index it retrieves
    from, `models` the current release the report compares against."""
    from rich.console import Console

    console = console or Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(out, profile)
    started, t0 = dt.datetime.now().astimezone(), time.perf_counter()
    if "precision" not in state:
        state["precision"] = measure_precision(profile, device()).to_dict()
        atomic_write_json(out / STATE_FILE, state)
    choice = state["precision"]
    console.print(f"precision: [bold]{choice['precision']}[/] ({choice['reason']})")
    ctx = Context(profile, out, dev, index, choice["precision"], console)
    for stage in STAGES:
        if stage.done(ctx):
            console.print(f"[dim]{stage.name}: done ({stage.output(ctx)}), skipped[/]")
            continue
        console.rule(f"[bold]{stage.name}")
        t = time.perf_counter()
        record = stage.run(ctx)
        state["stages"][stage.name] = {**record, "wall_s": round(time.perf_counter() - t, 1)}
        atomic_write_json(out / STATE_FILE, state)
    wall = time.perf_counter() - t0
    state["runs"].append({"started": started.isoformat(timespec="seconds"), "wall_s": round(wall, 1)})
    atomic_write_json(out / STATE_FILE, state)
    write_report(out, state, profile, models)
    console.print(f"speedrun {profile.name} finished in {wall / 60:.1f} min; report: {out / 'report.md'}")
    return state
