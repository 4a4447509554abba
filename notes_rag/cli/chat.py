"""`notes-rag chat` (the terminal REPL, cli/repl.py) and `notes-rag ask` (one exchange, for
scripts): thin layers over `chat.assistant.Assistant`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.text import Text

from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.format import Turn
from notes_rag.chat.question_text import clean_question, decode_question
from notes_rag.chat.sessions import load_session, read_session_file
from notes_rag.cli import options
from notes_rag.cli.app import app, err_console
from notes_rag.cli.markup import note_text
from notes_rag.cli.open_source import notes_root, supports_links
from notes_rag.cli.repl import (
    ChatState,
    cmd_load_session,
    console,
    debug_report,
    read_system,
    repl,
    sources_table,
)
from notes_rag.errors import NotesRagError
from notes_rag.fileio import read_json


def _config(k: int, mode: str, temp: float, system: str | None) -> AnswerConfig:
    return AnswerConfig(k=k, mode=mode, temperature=temp, system=read_system(system))


def _check_temp(value: float) -> float:
    if not math.isfinite(value):  # min=0.0 lets nan through
        raise typer.BadParameter(f"{value} is not a temperature; give a number >= 0 (0 = greedy)")
    return value


_TEMP = typer.Option(
    AnswerConfig.temperature, "--temp", min=0.0, callback=_check_temp, help="Sampling temperature (0 = greedy)."
)
_SYSTEM = typer.Option(None, "--system", help="System prompt: text, or a file holding it.")


@app.command("chat")
def chat_cmd(
    index: Path = options.INDEX,
    model: Path = options.MODEL,
    k: int = options.K,
    mode: str = options.MODE,
    temp: float = _TEMP,
    system: str = _SYSTEM,
    resume: str = typer.Option(
        None,
        "--resume",
        help="Continue a saved session (see /save); alone, or 'last': the last conversation (autosaved).",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="After each answer: prompt budget and timings."),
) -> None:
    """Chat with your notes in the terminal.

    Every exchange is autosaved; after a crash or a closed terminal, `notes-rag chat --resume`
    continues the last conversation.

    Example: notes-rag chat --resume exam-prep
    """
    cfg = _config(k, mode, temp, system)
    session = load_session(resume) if resume else None
    with console.status("loading the model and the index…"):
        assistant = _open(index, model, cfg)
    console.print(f"[dim]model {assistant.model_id} · index {assistant.index_id}[/]")
    state = ChatState(assistant, verbose=verbose)
    if session is not None:
        cmd_load_session(state, session)
        console.print(Text(f"resumed {session.name}: {len(session.history) // 2} exchanges", style="dim"))
    repl(state)


def _open(index: Path | None, model: Path | None, cfg: AnswerConfig) -> Assistant:
    """The assistant, with the index's encoder loading on the second core while the model loads."""
    from notes_rag.index.encoder import preload_query_encoder
    from notes_rag.index.search import resolve_index
    from notes_rag.index.store import encoder_path

    index_dir = resolve_index(index)
    preload_query_encoder(encoder_path(index_dir))
    return Assistant.open(index_dir, model, cfg)


def read_turns(path: Path) -> list[str]:
    """`--turns FILE`: a JSON list of the user's questions, oldest first."""
    data = read_json(path, "turns file")
    if not isinstance(data, list) or not data or not all(isinstance(q, str) and q.strip() for q in data):
        raise NotesRagError(f"{path} must hold a JSON list of questions (non-empty strings)")
    return data


@app.command("ask")
def ask_cmd(
    question: str = typer.Argument(None, help="The question (optional with --turns)."),
    json_out: bool = typer.Option(False, "--json", help="Print the exchange as JSON."),
    history_file: Path = typer.Option(None, "--history", help="Earlier turns: a saved session file."),
    turns_file: Path = typer.Option(None, "--turns", help="JSON list of questions answered in turn."),
    index: Path = options.INDEX,
    model: Path = options.MODEL,
    k: int = options.K,
    mode: str = options.MODE,
    temp: float = _TEMP,
    system: str = _SYSTEM,
    verbose: bool = typer.Option(False, "--verbose", help="Also show the prompt budget and timings."),
) -> None:
    """Answer one question (or a conversation given with --turns) and report the last exchange.

    Example: notes-rag ask "Kto zaproponował model neuronu?" --json
    """
    questions = read_turns(turns_file) if turns_file else []
    if question:
        questions.append(question)
    if not questions:
        raise NotesRagError('give a question: notes-rag ask "your question" (or --turns FILE)')
    questions = [_typed(q) for q in questions]
    history = read_session_file(history_file).history.turns if history_file else []
    assistant = _open(index, model, _config(k, mode, temp, system))
    turns, answer = assistant.ask_turns(questions, history)
    if json_out:
        out = answer.to_dict()
        out["turns"] = [{"role": t.role, "content": t.content} for t in turns]
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for earlier in _exchanges_text(turns[len(history) : -2]):
        console.print(earlier, style="dim")
    console.print(note_text(answer.text), soft_wrap=True)
    links = notes_root(assistant.retriever.index_dir, assistant.retriever.meta) if supports_links(console) else None
    console.print(sources_table(answer, links))
    for note in answer.notes:
        console.print(Text(f"({note})", style="dim"))
    if verbose:
        console.print(debug_report(answer))


def _typed(raw: str) -> str:
    """A question from the command line as text (a one-line warning when its bytes were not
    UTF-8); a question with no word is an error before anything loads."""
    text, warning = decode_question(raw)
    if warning:
        err_console.print(Text(f"warning: {warning}", style="yellow"))
    return clean_question(text)


def _exchanges_text(turns: list[Turn]) -> list[Text]:
    """The earlier exchanges of `--turns`: questions as typed, answers with markdown rendered."""
    return [Text("» " + t.content) if t.role == "user" else Text("  ").append_text(note_text(t.content)) for t in turns]
