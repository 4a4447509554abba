"""`notes-rag speedrun` and `notes-rag promote`: parse options, call notes_rag.speedrun."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from notes_rag.cli import options
from notes_rag.cli.app import app
from notes_rag.errors import NotesRagError
from notes_rag.model.release import default_model_dir
from notes_rag.speedrun.pipeline import speedrun
from notes_rag.speedrun.profiles import PROFILES, get_profile
from notes_rag.speedrun.promote import promote


def find_dev(kit: Path) -> Path | None:
    """The dev QA set shipped with a kit: KIT/eval/dev.jsonl, or eval/dev.jsonl beside KIT."""
    for candidate in (kit / "eval" / "dev.jsonl", kit.parent / "eval" / "dev.jsonl"):
        if candidate.is_file():
            return candidate
    return None


@app.command("speedrun")
def speedrun_cmd(
    profile: str = typer.Option(..., "--profile", help=f"Budget and shapes: {', '.join(PROFILES)}."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/speedrun-PROFILE); rerun to resume."),
    kit: Path = typer.Option(None, "--kit", help="Data kit with pretrain/ and sft/ (default: the profile's)."),
    dev: Path = typer.Option(
        None, "--dev", help="Dev QA file to evaluate the release on (default: eval/dev.jsonl in or beside the kit)."
    ),
    index: Path = options.INDEX,
    models: Path = typer.Option(
        None, "--models", help="Release to compare with in the report (default: the repository's models/)."
    ),
) -> None:
    """Tokenizer, pretraining, SFT data, finetuning, generator, release and dev eval in one run folder.

    Example: notes-rag speedrun --profile smoke
    """
    prof = get_profile(profile)
    if kit is not None:
        prof = replace(prof, kit=kit)
    if dev is not None and not dev.is_file():
        raise NotesRagError(f"dev QA file not found: {dev}")
    out = out or Path("runs") / f"speedrun-{prof.name}"
    speedrun(prof, out, dev or find_dev(prof.kit), index, models or default_model_dir())


@app.command("promote")
def promote_cmd(
    run: Path = typer.Argument(..., help="Speedrun folder with release/ and eval.json."),
    models: Path = typer.Option(
        None, "--models", help="Release folder to replace (default: the repository's models/)."
    ),
    force: str = typer.Option(
        None, "--force", help="Install whatever dev says, for this reason (written into the model card)."
    ),
) -> None:
    """Copy a speedrun's model into models/ if it beats the release on dev key facts without abstaining worse.

    Example: notes-rag promote runs/speedrun-cpu
    """
    models = models or default_model_dir()
    verdict = promote(run, models, force)
    typer.echo(f"promoted {run / 'release'} to {models}: {verdict.reason}")
