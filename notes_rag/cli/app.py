"""The typer app every command module registers on, its lazily loaded command list, and the
error handling around it.

Each command group lives in its own module of this package that only parses options, calls
library functions and renders results; `main.py` names them (`command_modules`). A module is
imported only when one of its commands runs: several import torch (2-3 s on a slow CPU), so
`notes-rag --help`, `search` and `index` must not pay for `pretrain`. The command list of the
top-level `--help` is read from the modules' source instead (`scan_commands`: each
`@app.command` function's name and docstring), the student's commands first.

User errors (`NotesRagError`, and OSErrors such as a full disk) print as one line and exit 1,
Ctrl-C exits 130, anything else is one "internal error" line and exit 2; `--debug` shows
tracebacks.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_command_name

from notes_rag.errors import describe

# The top-level help lists these first, in this order, then the rest under TRAIN_PANEL.
STUDY_PANEL = "Study your notes"
STUDY_COMMANDS = ("index", "chat", "ask", "search", "quiz", "eval")
TRAIN_PANEL = "Train and build the model"
TRAIN_ORDER = ("speedrun", "pretrain", "finetune", "train-generator", "train-qg", "promote")
# Wide enough that a 160-column terminal shows every description whole (click's default is 80).
MAX_HELP_WIDTH = 200

_modules: list[str] = []


def command_modules(*names: str) -> None:
    """Name the modules of this package that define commands (main.py calls it once)."""
    _modules.extend(n for n in names if n not in _modules)


@dataclass(frozen=True)
class CommandEntry:
    name: str
    module: str
    help: str  # the first paragraph of the docstring (or of `help=`), on one line
    hidden: bool = False


def _command_call(fn: ast.FunctionDef) -> ast.Call | None:
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "command":
            if isinstance(dec.func.value, ast.Name) and dec.func.value.id == "app":
                return dec
    return None


def _entry(fn: ast.FunctionDef, call: ast.Call, module: str) -> CommandEntry:
    """Name and help as typer derives them: the first argument or `name=`, else the function
    name with dashes; `help=`, else the docstring."""
    kw = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
    name = kw.get("name")
    if call.args and isinstance(call.args[0], ast.Constant):
        name = call.args[0].value
    text = kw.get("help") or ast.get_docstring(fn) or ""
    first = " ".join(text.strip().split("\n\n")[0].split())
    return CommandEntry(name or get_command_name(fn.name), module, first, bool(kw.get("hidden", False)))


@cache
def scan_commands(modules: tuple[str, ...]) -> dict[str, CommandEntry]:
    """Every `@app.command` of these modules (of this package), read from their source without
    importing them."""
    out: dict[str, CommandEntry] = {}
    for module in modules:
        path = Path(__file__).with_name(f"{module}.py")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and (call := _command_call(fn)) is not None:
                entry = _entry(fn, call, module)
                out[entry.name] = entry
    return out


def ordered(names: list[str]) -> list[tuple[str, list[str]]]:
    """The help's panels: the student's commands in STUDY_COMMANDS order, then the rest (those in
    TRAIN_ORDER first, in its order, then the others as found)."""
    study = [n for n in STUDY_COMMANDS if n in names]
    rest = [n for n in names if n not in study]
    rest.sort(key=lambda n: TRAIN_ORDER.index(n) if n in TRAIN_ORDER else len(TRAIN_ORDER))
    return [(panel, cmds) for panel, cmds in ((STUDY_PANEL, study), (TRAIN_PANEL, rest)) if cmds]


class LazyGroup(TyperGroup):
    """The root command group: a command module is imported when one of its commands is looked
    up (to run it or show its own help), never to list them."""

    def _index(self) -> dict[str, CommandEntry]:
        return scan_commands(tuple(_modules))

    def list_commands(self, ctx) -> list[str]:
        names = [*self._index(), *(n for n in self.commands if n not in self._index())]
        return [n for _, cmds in ordered(names) for n in cmds]

    def get_command(self, ctx, cmd_name: str):
        if self.commands.get(cmd_name) is None and cmd_name in self._index():
            importlib.import_module(f"{__package__}.{self._index()[cmd_name].module}")
            for info in app.registered_commands:  # the module's decorators registered them
                name = info.name or get_command_name(info.callback.__name__)
                if self.commands.get(name) is None:
                    self.commands[name] = get_command_from_info(
                        info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
                    )
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx, args: list[str]):
        """As typer's, but a mistyped command is matched against every command, not only the
        modules imported so far."""
        # every name, unloaded ones as None (get_command loads them), for typer's suggestion
        self.commands = {**{n: None for n in self._index()}, **self.commands}
        try:
            return super().resolve_command(ctx, args)
        finally:
            self.commands = {n: c for n, c in self.commands.items() if c is not None}

    def _listed(self, name: str) -> tuple[str, bool]:
        """(help line, hidden) of a command, from its source, or from typer for one registered
        some other way."""
        entry = self._index().get(name)
        if entry is not None:
            return entry.help, entry.hidden
        return self.commands[name].get_short_help_str(10_000), self.commands[name].hidden

    def format_commands(self, ctx, formatter) -> None:
        """One section per panel; each description whole (wrapped to the terminal, not cut)."""
        listed = {n: self._listed(n) for n in self.list_commands(ctx)}
        visible = [n for n, (_, hidden) in listed.items() if not hidden]
        width = max(map(len, visible), default=0)  # names padded alike: both panels align
        for panel, names in ordered(visible):
            with formatter.section(panel):
                formatter.write_dl([(n.ljust(width), listed[n][0]) for n in names])


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: typer's rich help prints every flag as `--json <bool>`, as if it took a value.
    rich_markup_mode=None,
    context_settings={"max_content_width": MAX_HELP_WIDTH},
    help="Chat with your study notes, answered by a GPT trained by this project.",
)
err_console = Console(stderr=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """notes-rag: index your notes, then chat with them."""


# Commands whose `--json` is a flag printing JSON to stdout: their errors are JSON there too.
JSON_COMMANDS = ("ask", "search", "quiz")


def _wants_json(argv: list[str]) -> bool:
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in JSON_COMMANDS and "--json" in argv


def report_error(e: BaseException, as_json: bool) -> int:
    """Print `e` as one line (stderr), or as `{"error", "kind"}` on stdout for `--json`; the exit
    code."""
    message, kind, code = describe(e)
    if as_json:
        print(json.dumps({"error": message, "kind": kind}, ensure_ascii=False), flush=True)
    elif kind == "interrupted":
        err_console.print(Text(message, style="yellow"))
    else:
        label = "internal error" if kind == "internal" else "error"
        hint = " (run again with --debug for the traceback)" if kind == "internal" else ""
        err_console.print(f"[bold red]{label}:[/] {escape(message)}{hint}", highlight=False, soft_wrap=True)
    return code


# Options whose value may be left out, and what it then is: `chat --resume` continues the last
# conversation (click has no optional option values that typer passes on).
OPTIONAL_VALUES = {("chat", "--resume"): "last"}


def optional_values(argv: list[str]) -> list[str]:
    """`argv` with the default value put after an option of OPTIONAL_VALUES given without one."""
    command = next((a for a in argv if not a.startswith("-")), None)
    out = list(argv)
    for (cmd, option), value in OPTIONAL_VALUES.items():
        if command != cmd or option not in out:
            continue
        i = out.index(option)
        if i + 1 == len(out) or out[i + 1].startswith("-"):
            out.insert(i + 1, value)
    return out


def main() -> None:
    """Run the app: user errors (`NotesRagError`, OSErrors such as a full disk) exit 1 with one
    line, Ctrl-C 130, anything else 2; with `--json` the line is JSON on stdout. A closed pipe
    (`notes-rag ask … | head -1`) ends quietly with 0."""
    debug = "--debug" in sys.argv
    sys.argv[1:] = optional_values(sys.argv[1:])
    Console.on_broken_pipe = _closed_pipe  # rich's default exits 1
    try:
        app()
    except BrokenPipeError:
        _quiet_pipe()
    except SystemExit as e:  # typer's own exits: Ctrl-C (130, silent there) and a closed pipe (1)
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":  # typer saw EPIPE: not an error
            _quiet_pipe()
        if e.code == 130 and not debug:
            report_error(KeyboardInterrupt(), _wants_json(sys.argv[1:]))
        raise
    except Exception as e:
        if debug:
            raise
        sys.exit(report_error(e, _wants_json(sys.argv[1:])))
    except KeyboardInterrupt as e:
        if debug:
            raise
        sys.exit(report_error(e, _wants_json(sys.argv[1:])))
    finally:
        _flush_quietly()


def _closed_pipe(console: Console) -> None:
    console.quiet = True
    _quiet_pipe()


def _quiet_pipe() -> None:
    """The reader of stdout went away: nothing more can be shown, and that is not an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(0)


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()
    except (OSError, ValueError):
        pass
