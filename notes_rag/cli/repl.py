"""The `notes-rag chat` REPL: streamed answers, their sources, and the slash commands.

The slash commands are plain functions `(state, arg) -> output` in `COMMANDS`, so they are tested
without a terminal. Ctrl-C while an answer streams stops that answer (the unfinished exchange is
not kept); Ctrl-D at the prompt exits. Typed lines persist in the data directory's readline
history.

The REPL never loses a conversation: an error inside a turn or a slash command is one line and
the prompt comes back; every exchange is autosaved (atomically) to the session file
(`sessions/chat-<date>-<time>.json`, or the session resumed or loaded), so `chat --resume` or
`/load last` continues it after a crash, a kill or a closed terminal. Only `/exit` and Ctrl-D end
the loop. Typed bytes that are not UTF-8 are read leniently (chat/question_text.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.padding import Padding
from rich.styled import Styled
from rich.table import Table
from rich.text import Text

from notes_rag.chat.answer import Answer
from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.question_text import decode_question
from notes_rag.chat.sessions import History, Session, input_history_file, load_session, new_session_name, save_anywhere
from notes_rag.cli.markup import note_text
from notes_rag.cli.open_source import link_style, notes_root, open_source, supports_links
from notes_rag.errors import error_line
from notes_rag.index.config import MODES

console = Console(highlight=False)
# The default system prompts are 67 (pl) and 72 (en) tokens; the model's input is 904 tokens.
MAX_SYSTEM_TOKENS = 256


def read_system(value: str | None) -> str | None:
    """`--system TEXT|FILE`: the file's content when `value` names a file, else the text."""
    if not value:
        return None
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    except OSError:  # e.g. a long prompt text that is not a valid path
        pass
    return value.strip()


def settings(cfg: AnswerConfig) -> dict:
    return {"k": cfg.k, "mode": cfg.mode, "temperature": cfg.temperature, "system": cfg.system}


# -- rendering -----------------------------------------------------------------------------------


def _row_style(answer: Answer, rank: int) -> str:
    """Cited passages bold; passages that did not reach the prompt (or the reader) dim."""
    used = 0 if answer.abstain_reason == "retrieval" else len(answer.prompt_passages)
    return "bold" if rank in answer.cited else ("dim" if rank > used else "")


def sources_table(answer: Answer, root: Path | None = None) -> Table:
    """Compact panel: number, file:lines, heading; cited in bold. Number and file:lines are never
    cut (they are how a citation is found): their columns take their whole width, headings wrap.
    With the notes folder `root`, each file:lines links to its file (cli/open_source.py)."""
    title = "closest passages (not used)" if answer.abstain_reason == "retrieval" else "sources"
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, box=None)
    places = [s.citation for s in answer.sources]
    ranks = [str(s.rank) for s in answer.sources]
    table.add_column("#", justify="right", style="cyan", no_wrap=True, min_width=max(map(len, ranks), default=1))
    table.add_column("file:lines", no_wrap=True, min_width=max(map(len, places), default=10))
    table.add_column("heading", overflow="fold", ratio=1)
    for s, rank, place in zip(answer.sources, ranks, places):
        table.add_row(rank, Text(place, style=link_style(root, s)), s.heading or "–", style=_row_style(answer, s.rank))
    return table


def source_text(answer: Answer, rank: int, root: Path | None = None) -> Group:
    """One passage whole: its number, place (linked to its file under `root`), score and heading,
    then its text (markdown rendered)."""
    s = answer.sources[rank - 1]
    head = Text.assemble(f"[{s.rank}] ", (s.citation, link_style(root, s)), f" · {s.score:.3f} · {s.heading or '–'}")
    head.stylize("bold")
    return Group(head, Padding(note_text(s.text), (0, 0, 0, 4)))


def sources_text(answer: Answer, root: Path | None = None) -> Group:
    """`/sources`: every passage whole, one after another (a table would squeeze the text into a
    narrow column at 80 columns); cited ones bold, unused ones dim."""
    return Group(*(Styled(source_text(answer, s.rank, root), _row_style(answer, s.rank)) for s in answer.sources))


def debug_report(answer: Answer) -> Group | str:
    """What the model read, plus timings."""
    t = answer.timings
    tps = "–" if t.tokens_per_s is None else f"{t.tokens_per_s:.1f}"
    timing = (
        f"retrieval {t.retrieval_ms:.0f} ms · first token {t.ttft_s:.2f}s · {t.new_tokens} tokens at {tps} tok/s"
        f" · total {t.total_s:.2f}s · top cosine {answer.top_cosine:.3f}"
        + ("" if answer.threshold is None else f" (threshold {answer.threshold:.2f})")
    )
    if answer.abstain_reason == "retrieval":
        return Group(Text("retrieval abstained: the model did not run"), Text(timing, style="dim"))
    read = f"the model read the top {answer.read_passages} passage(s) of {len(answer.sources)} retrieved"
    return Group(Text(read), Text(timing, style="dim"))


# -- REPL state and slash commands ---------------------------------------------------------------


@dataclass
class ChatState:
    assistant: Assistant
    history: History = field(default_factory=History)
    last: Answer | None = None
    verbose: bool = False
    done: bool = False
    session: str = field(default_factory=new_session_name)  # the name every exchange is autosaved under
    saved_to: Path | None = None  # where the last autosave went
    save_problem: str | None = None  # why the last autosave did not go to the sessions folder

    @property
    def notes(self) -> Path:
        """The notes folder the cited files are in."""
        return notes_root(self.assistant.retriever.index_dir, self.assistant.retriever.meta)

    @property
    def link_root(self) -> Path | None:
        """The notes folder when the console shows hyperlinks, else None (no links)."""
        return self.notes if supports_links(console) else None


def cmd_help(state: ChatState, arg: str) -> str:
    return "\n".join(f"{usage:<16} {doc}" for usage, doc in HELP)


def cmd_sources(state: ChatState, arg: str):
    if state.last is None:
        return "no answer yet"
    if not arg:
        return sources_text(state.last, state.link_root)
    if not arg.isdigit() or not 1 <= int(arg) <= len(state.last.sources):
        return f"no passage {arg}; there are {len(state.last.sources)}"
    return source_text(state.last, int(arg), state.link_root)


def cmd_open(state: ChatState, arg: str) -> str:
    if state.last is None:
        return "no answer yet"
    if not arg.isdigit() or not 1 <= int(arg) <= len(state.last.sources):
        return f"usage: /open N (1-{len(state.last.sources)}): passage N in $VISUAL or $EDITOR"
    return open_source(state.notes, state.last.sources[int(arg) - 1])


def cmd_k(state: ChatState, arg: str) -> str:
    if not arg.isdigit() or int(arg) < 1:
        return f"usage: /k N (N ≥ 1); now {state.assistant.cfg.k}"
    state.assistant.cfg.k = int(arg)
    return f"k = {arg}"


def cmd_mode(state: ChatState, arg: str) -> str:
    if arg not in MODES:
        return f"usage: /mode {'|'.join(MODES)}; now {state.assistant.cfg.mode}"
    state.assistant.cfg.mode = arg
    return f"mode = {arg}"


def cmd_temp(state: ChatState, arg: str) -> str:
    try:
        value = float(arg)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:  # "nan" and "inf" parse as floats
        return f"usage: /temp X (X ≥ 0; 0 = greedy); now {state.assistant.cfg.temperature}"
    state.assistant.cfg.temperature = value
    return f"temperature = {value}"


def cmd_system(state: ChatState, arg: str) -> str:
    cfg = state.assistant.cfg
    if not arg:
        return f"system prompt: {cfg.system or '(default for the question language)'}"
    text = None if arg == "default" else read_system(arg)
    size = len(state.assistant.tok.encode(text)) if text else 0
    if size > MAX_SYSTEM_TOKENS:  # it would leave the model no room for the passages
        return f"system prompt too long: {size} tokens, at most {MAX_SYSTEM_TOKENS}; not changed"
    cfg.system = text
    return "system prompt reset to the default" if cfg.system is None else "system prompt set"


def cmd_reset(state: ChatState, arg: str) -> str:
    kept = f" (the last one stays in {state.saved_to})" if state.history.turns and state.saved_to else ""
    state.history = History()
    state.last, state.session, state.saved_to = None, new_session_name(), None
    return "conversation cleared" + kept


def cmd_save(state: ChatState, arg: str) -> str:
    if not arg:
        return "usage: /save NAME"
    path, refused = save_anywhere(arg, state.history, settings(state.assistant.cfg))
    n = len(state.history) // 2
    if refused:
        return f"could not save to the sessions folder ({refused}); saved {n} exchanges to {path} instead"
    return f"saved {n} exchanges to {path}"


def cmd_load(state: ChatState, arg: str) -> str:
    if not arg:
        return "usage: /load NAME (or /load last)"
    session = load_session(arg)
    cmd_load_session(state, session)
    return f"loaded {session.name}: {len(session.history) // 2} exchanges"


def cmd_load_session(state: ChatState, session: Session) -> None:
    """Continue `session`: its turns, and its name for the autosaves (a file loaded by path
    that has no usable name gets a new one)."""
    state.history, state.last, state.saved_to = session.history, None, None
    state.session = session.name if _is_name(session.name) else new_session_name()


def _is_name(name: str) -> bool:
    from notes_rag.chat.sessions import _NAME

    return bool(_NAME.fullmatch(name))


def autosave(state: ChatState) -> str | None:
    """Save the conversation under its session name; a line to show when the save went
    elsewhere or failed (once per new problem), else None."""
    try:
        state.saved_to, problem = save_anywhere(state.session, state.history, settings(state.assistant.cfg))
    except Exception as e:  # nowhere took it: the conversation is still in memory
        problem, state.saved_to = error_line(e), None
        line = f"autosave failed: {problem}; /save NAME tries again"
    else:
        line = f"autosave: {problem}; saving to {state.saved_to} instead" if problem else None
    if problem == state.save_problem:
        return None
    state.save_problem = problem
    return line


def cmd_history(state: ChatState, arg: str):
    if not state.history.turns:
        return "no turns yet"
    table = Table(show_header=False, box=None)
    for t in state.history.turns:
        table.add_row(Text("you" if t.role == "user" else "notes", style="cyan"), t.content)
    return table


def cmd_debug(state: ChatState, arg: str):
    if arg in ("on", "off"):
        state.verbose = arg == "on"
        return f"verbose {'on' if state.verbose else 'off'}"
    return "no answer yet" if state.last is None else debug_report(state.last)


def cmd_quiz(state: ChatState, arg: str) -> str:
    from notes_rag.cli.quiz import chat_quiz  # study mode loads only when asked for

    return chat_quiz(state.assistant, arg, console)


def cmd_exit(state: ChatState, arg: str) -> str:
    state.done = True
    return ""


HELP = [
    ("/help", "this list"),
    ("/sources [N]", "passages of the last answer, whole (N: only that one)"),
    ("/open N", "open passage N in $VISUAL / $EDITOR at its line"),
    ("/k N", "number of passages to retrieve"),
    ("/mode M", "retrieval mode: hybrid, dense or bm25"),
    ("/temp X", "sampling temperature (0 = greedy)"),
    ("/system TEXT", "system prompt: text or a file; 'default' resets"),
    ("/reset", "start a new conversation"),
    ("/save NAME", "save the conversation"),
    ("/load NAME", "load a saved conversation ('last': the newest)"),
    ("/history", "show the conversation"),
    ("/debug [on|off]", "prompt budget of the last answer; on/off: after every answer"),
    ("/quiz [TOPIC]", "quiz yourself on the notes (or a topic); Ctrl-C ends it"),
    ("/exit", "quit (or Ctrl-D)"),
]

COMMANDS: dict[str, Callable[[ChatState, str], object]] = {
    "help": cmd_help,
    "sources": cmd_sources,
    "open": cmd_open,
    "k": cmd_k,
    "mode": cmd_mode,
    "temp": cmd_temp,
    "system": cmd_system,
    "reset": cmd_reset,
    "save": cmd_save,
    "load": cmd_load,
    "history": cmd_history,
    "debug": cmd_debug,
    "quiz": cmd_quiz,
    "exit": cmd_exit,
    "quit": cmd_exit,
}


def run_command(state: ChatState, line: str):
    """Run a `/command arg` line; returns what to print."""
    name, _, arg = line[1:].strip().partition(" ")
    fn = COMMANDS.get(name.lower())
    if fn is None:
        return f"unknown command /{name}; /help lists them"
    try:
        return fn(state, arg.strip())
    except KeyboardInterrupt:
        return Text("[stopped]")
    except Exception as e:  # whatever went wrong, one line: the conversation goes on
        return Text(error_line(e))


def answer_turn(state: ChatState, question: str) -> Answer | None:
    """Stream one answer to the console as the model writes it, then its sources; None when
    stopped with Ctrl-C. Every piece stands once shown (chat/writer.py)."""
    answer = None
    try:
        for item in state.assistant.stream(state.history.turns, question):
            if isinstance(item, Answer):
                answer = item
            else:  # markup split across two pieces stays as written
                console.print(note_text(item), end="", soft_wrap=True)
    except KeyboardInterrupt:
        console.print(" [yellow]\\[stopped][/]")
        return None
    console.print()
    state.history.add(answer.question, answer.text)
    state.last = answer
    problem = autosave(state)
    if problem:
        console.print(Text(problem, style="yellow"))
    for note in answer.notes:
        console.print(Text(f"({note})", style="dim"))
    if answer.abstained and answer.abstain_reason == "retrieval":
        console.print("[dim](no passage was close enough to answer from)[/]")
    console.print(sources_table(answer, state.link_root))
    if state.verbose:
        console.print(debug_report(answer))
    return answer


def _setup_readline():
    """Line editing and persistent input history; None where readline is unavailable."""
    try:
        import readline
    except ImportError:
        return None
    path = input_history_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(2000)
    return readline


def show(out) -> None:
    """Print a command's output; a plain string as it is (a typed `[x]` is not markup)."""
    if not out:
        return
    try:
        console.print(Text(out) if isinstance(out, str) else out)
    except Exception as e:
        console.print(Text(error_line(e), style="red"))


def read_line(prompt: str) -> str:
    """One typed line as text: bytes that are not UTF-8 are decoded leniently, with a warning."""
    text, warning = decode_question(input(prompt))
    if warning:
        console.print(Text(f"warning: {warning}", style="yellow"))
    return text.strip()


def _lenient_stdin() -> None:
    """Undecodable typed bytes reach us as surrogates, never as a UnicodeDecodeError."""
    import sys

    try:
        sys.stdin.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError, OSError):
        pass


def repl(state: ChatState, prompt: str = "» ") -> None:
    """The loop: only /exit and Ctrl-D end it; an error is one line and the next prompt."""
    rl = _setup_readline()
    _lenient_stdin()
    console.print("[dim]Ask about your notes. /help lists commands; Ctrl-C stops an answer, Ctrl-D exits.[/]")
    while not state.done:
        try:
            line = read_line(prompt)
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:  # at the prompt: drop the line, like a shell
            console.print()
            continue
        except Exception as e:  # an unreadable line: say so, ask again
            console.print(Text(error_line(e), style="red"))
            continue
        if not line:
            continue
        if rl is not None:
            try:
                rl.write_history_file(input_history_file())
            except Exception:  # the input history is a convenience: never a reason to stop
                pass
        if line.startswith("/"):
            show(run_command(state, line))
            continue
        try:
            answer_turn(state, line)
        except KeyboardInterrupt:
            console.print(" [yellow]\\[stopped][/]")
        except Exception as e:  # one line; the conversation so far is on disk and goes on
            console.print(Text(error_line(e), style="red"))
    if state.saved_to is not None:
        console.print(Text(f"conversation saved to {state.saved_to} (notes-rag chat --resume)", style="dim"))
