"""`notes-rag quiz` (study mode) and `notes-rag train-qg` (the question-writing fine-tune).

Thin: options into configs, then notes_rag/study; `quiz_loop` is the interactive session, shared
with the chat's `/quiz`. Top-level imports stay light (no torch, no FAISS): the heavy modules
load inside the commands, so `notes-rag --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from notes_rag.cli import options
from notes_rag.cli.app import app
from notes_rag.study.config import QGTrainConfig, QuizConfig

_QG, _QUIZ = QGTrainConfig(), QuizConfig()
_RATING_KEYS = "[dim]Enter = {suggested} · 1 again · 2 hard · 3 good · 4 easy[/]"


def _show_card(console: Console, card, i: int, n: int) -> None:
    kind = "cloze" if card.kind == "cloze" else "question"
    console.print(Text(f"\n[{i}/{n}] {kind} · {card.file}", style="dim"))
    console.print(Text(card.question, style="bold"))


def _show_grade(console: Console, card, graded) -> None:
    mark = "[green]✓ correct[/]" if graded.accepted else "[red]✗ not quite[/]"
    if graded.accepted and graded.rating == "hard":
        mark = "[yellow]✓ partly[/]"
    console.print(mark)
    console.print(Text.assemble(("expected: ", "dim"), (card.answer, "bold")))
    console.print(Text.assemble(("from ", "dim"), (f"{card.place}", "cyan"), (f" · {card.heading or '–'}", "dim")))
    if card.line_text != card.answer:
        console.print(Text(f"  {card.line_text}", style="dim"))


def quiz_loop(session, console: Console, read=None) -> dict:
    """Ask the session's cards until it has no more, Ctrl-C or Ctrl-D; every review is saved as
    it is made. `read(prompt)` reads a line (default: input). Returns the session's counts."""
    from notes_rag.study.grading import parse_override
    from notes_rag.study.schedule import until

    read = read or input
    counts = {"asked": 0, "answered": 0, "correct": 0, "reviews": 0, "retired": session.retired}
    if session.store.recovered:
        console.print(Text(session.store.recovered, style="yellow"))
    if session.retired:
        console.print(f"[dim]{session.retired} card(s) retired: their note line changed or is gone[/]")
    try:
        while True:
            with console.status("writing and checking the next card", spinner="dots"):
                card = session.next_card()
            if card is None:
                break
            counts["asked"] += 1
            _show_card(console, card, counts["asked"], getattr(session, "planned", session.cfg.n))
            typed = read("answer> ")
            graded = session.grade(card, typed)
            counts["answered"] += 1
            counts["correct"] += graded.accepted
            _show_grade(console, card, graded)
            console.print(_RATING_KEYS.format(suggested=graded.rating))
            choice = read("rating> ")
            rating = parse_override(choice) or graded.rating
            due = session.record(card, rating, graded, typed).due
            counts["reviews"] += 1
            console.print(f"[dim]{rating} · next review {until(due)}[/]")
    except (KeyboardInterrupt, EOFError):
        console.print()
    if not counts["asked"]:
        console.print(
            "nothing is due for review now" if session.due_only else "no card passed the checks for these notes"
        )
    console.print(
        f"[bold]{counts['reviews']} review(s) saved[/] · {counts['correct']}/{counts['answered']} answered correctly"
    )
    return counts


def chat_quiz(assistant, topic: str, console: Console) -> str:
    """`/quiz [TOPIC]` inside the chat: a quiz session on the chat's index, reusing its loaded
    model and retriever."""
    from notes_rag.study.session import QuizSession

    session = QuizSession.open(assistant.retriever.index_dir, topic=topic or None, assistant=assistant)
    try:
        quiz_loop(session, console)
    finally:
        session.close()
    return ""


def _cards_json(session, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        card = session.next_card()
        if card is None:
            break
        out.append(card.to_dict())
    return out


@app.command()
def quiz(
    topic: str = typer.Argument(None, help="Quiz on what retrieval finds for this topic (default: across the notes)."),
    n: int = typer.Option(_QUIZ.n, "-n", min=1, help="Cards in this session."),
    due: bool = typer.Option(False, "--due", help="Review only the cards due (spaced repetition)."),
    export: Path = typer.Option(None, "--export", help="Write the cards to an Anki deck (.apkg) instead of quizzing."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the session's checked cards as JSON (no questions asked)."
    ),
    writer: str = typer.Option(
        _QUIZ.writer, "--writer", help="Who writes questions: gpt (our GPT, template fallback) or template."
    ),
    index: Path = options.INDEX,
    model: Path = options.MODEL,
) -> None:
    """Study mode: questions and cloze cards from your notes, graded, with spaced repetition.

    Examples: notes-rag quiz · notes-rag quiz attention -n 5 · notes-rag quiz --due ·
    notes-rag quiz --export deck.apkg tokenizacja
    """
    from notes_rag.errors import NotesRagError
    from notes_rag.study.session import QuizSession

    if writer not in ("gpt", "template"):
        raise NotesRagError(f"--writer must be gpt or template, not {writer!r}")
    if export is not None:
        _check_export_path(export)
    cfg = replace(_QUIZ, n=n if export is None else sys.maxsize, writer=writer)
    console = Console(highlight=False)
    session = QuizSession.open(index, model, topic, due_only=due, cfg=cfg)
    if session.store.recovered and (export is not None or as_json):  # the session loop says it itself
        Console(stderr=True).print(Text(session.store.recovered, style="yellow"), soft_wrap=True)
    try:
        if export is not None:
            _export(session, export, console)
        elif as_json:
            typer.echo(json.dumps({"cards": _cards_json(session, n), "retired": session.retired}, ensure_ascii=False))
        else:
            quiz_loop(session, console)
    finally:
        session.close()


def _check_export_path(path: Path) -> None:
    """Fail before any work when the deck could not be written."""
    import os

    from notes_rag.errors import NotesRagError

    folder = path.parent if str(path.parent) else Path(".")
    if path.suffix != ".apkg":
        raise NotesRagError(f"the export path must end in .apkg, got {path}")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise NotesRagError(f"cannot write {path}: {folder} is not a writable folder")


def _export(session, path: Path, console: Console) -> None:
    from notes_rag.study.export import export_deck

    with console.status("writing and checking cards"):
        cards = session.deck()
    written = export_deck(cards, path, name=f"notes-rag · {session.topic}" if session.topic else "notes-rag")
    console.print(f"wrote {written} card(s) to {path}")


@app.command("train-qg")
def train_qg_cmd(
    base: Path = typer.Option(
        Path("models"), "--base", help="Generator checkpoint to fine-tune (default: the release)."
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="Conversation JSONL files, or folders with train.jsonl/val.jsonl."
    ),
    out: Path = typer.Option(Path("runs/qg"), "--out", help="Run folder of the candidate (never models/)."),
    time_budget: str = typer.Option(None, "--time-budget", help="Wall-clock budget, e.g. 40m."),
    steps: int = typer.Option(None, "--steps", help="Stop after this many optimizer steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    lr: float = typer.Option(_QG.lr, "--lr", help="Peak learning rate."),
    answer_share: float = typer.Option(_QG.answer_share, "--answer-share", help="Share of answer items in the mix."),
    eval_every: int = typer.Option(_QG.eval_every, "--eval-every", help="Validate every N steps."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Fine-tune the generator on a mix of question writing and answering (study mode's GPT questions).

    Example: notes-rag train-qg --base models/ --data data/sft --out runs/qg --time-budget 40m
    """
    from notes_rag.cli.train import parse_duration
    from notes_rag.errors import NotesRagError
    from notes_rag.study.qg_train import train_config, train_question_generator

    if steps is None and time_budget is None:
        raise NotesRagError("give --steps or --time-budget")
    cfg = replace(_QG, lr=lr, answer_share=answer_share, eval_every=eval_every)
    tc = train_config(cfg, max_steps=steps, time_budget=parse_duration(time_budget), threads=threads)
    result = train_question_generator(base, data, out, cfg, tc, resume)
    typer.echo(f"done: step {result['step']}, best val loss {result['best_val']:.4f}; candidate in {out / 'best'}")
