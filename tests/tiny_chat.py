"""What the chat and quiz tests both build: a tiny random copy-head GPT checkpoint, a tiny index
of a few notes (tests/tiny_encoder.py), and reading a pty until some text appears.

A random tiny GPT writes random copies; tests that need the chat to answer (the quiz keeps only
cards our chat answers) use `use_top_line_writer`: the model's decode replaced by one that writes
the unit the retrieval encoder ranked first (relevance code rank 1), what a trained model copies
most often. Subprocesses get it through `TOP_LINE_WRITER_PATH` (a sitecustomize on PYTHONPATH)."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import torch
from tiny_encoder import build_tiny_encoder

from notes_rag.model.checkpoint import write_checkpoint
from notes_rag.model.gpt import GPT, preset

TOP_LINE_WRITER_PATH = Path(__file__).parent / "top_line_writer"


def top_line_writer(model, prompt, copy_mask=None, match=None, cfg=None, stop_ids=(), constraint=None, on_first=None):
    """A `generate_copy` that writes the prompt tokens of the top-ranked unit."""
    from notes_rag.model.constants import N_REL, RANK_SHIFT

    yield from [t for t, m in zip(prompt, match or []) if (m >> RANK_SHIFT) % N_REL == 1]


def use_top_line_writer(monkeypatch=None) -> None:
    """Both decode paths (numpy: the chat's; torch) write the top line from now on."""
    from notes_rag.model import engine, numpy_decode

    for mod in (numpy_decode, engine):
        if monkeypatch is not None:
            monkeypatch.setattr(mod, "generate_copy", top_line_writer)
        else:
            mod.generate_copy = top_line_writer


def with_top_line_writer(env: dict) -> dict:
    """`env` for a subprocess whose model writes the top line."""
    tests = str(Path(__file__).parent)
    path = os.pathsep.join([str(TOP_LINE_WRITER_PATH), tests, env.get("PYTHONPATH", "")])
    return {**env, "PYTHONPATH": path}


# The tiny notes the chat tests index (conftest.py `tiny_index`).
NOTES = {
    "neurony.md": "# Neurony\n\n## Historia\n\nW 1943 roku Warren McCulloch i Walter Pitts zaproponowali "
    "matematyczny model neuronu. Neuron sumuje wagi wejść i porównuje sumę z progiem.\n",
    "llm.md": "# Language models\n\n## Context\n\nGPT-4o has a context window of 128k tokens. Llama 3 has a "
    "context of 8.2k tokens. Attention mixes information between tokens.\n",
    "tokeny.md": "# Tokenizacja\n\nTokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory. "
    "Embeddings map token ids to vectors.\n",
}


def write_tiny_checkpoint(folder: Path, tok) -> Path:
    """A seeded, untrained tiny GPT with a copy head, saved as a release folder."""
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=512, copy_head=True, relevance=True, structure=True))
    write_checkpoint(folder, model, tok, meta={"stage": "test", "step": 1})
    return folder


def build_tiny_index(root: Path, notes: dict[str, str]) -> Path:
    """`notes` (file name -> text) written under root/notes and indexed with the tiny encoder;
    returns the index folder."""
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder

    enc = build_tiny_encoder(root / "enc")
    folder = root / "notes"
    folder.mkdir()
    for name, text in notes.items():
        (folder / name).write_text(text, encoding="utf-8")
    update_index(folder, folder / ".notes-rag", load_encoder(enc), encoder_path=str(enc))
    return folder / ".notes-rag"


def read_until(fd: int, needle: bytes, timeout: float, buf: bytearray) -> bool:
    """Read the pty `fd` into `buf` until `needle` is in it (True) or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf.extend(chunk)
    return needle in buf


class ChatProcess:
    """`notes-rag chat ARGS` under a pseudo-terminal: send lines, wait for the prompt, keep
    everything it shows in `screen`."""

    PROMPT = "\n» ".encode()  # after a newline: a redrawn input line does not count

    def __init__(self, args: list[str], env: dict[str, str]):
        import fcntl
        import pty
        import struct
        import subprocess
        import sys
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notes_rag", "chat", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "COLUMNS": "100", "TERM": "xterm", "LANG": "C.UTF-8"},
            close_fds=True,
            start_new_session=True,  # its own controlling terminal: Ctrl-C reaches it alone
        )
        os.close(slave)
        self.screen = bytearray()
        self.mark = 0

    def read_some(self, wait: float = 0.0) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            self.screen.extend(chunk)

    def send(self, data: bytes) -> None:
        """Write `data` (a line of any length) while reading what the terminal echoes, so
        neither side blocks; the next `prompt()` waits for what comes after it."""
        self.mark = len(self.screen)
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self.master], [], 0.2)
            if writable:  # whole characters at a time; a full terminal takes fewer bytes
                end = min(len(view), 512)
                while end < len(view) and 0x80 <= view[end] < 0xC0:
                    end += 1
                view = view[os.write(self.master, view[:end]) :]
            self.read_some()

    def prompt(self, timeout: float = 120) -> bool:
        """Wait for the next prompt after the last `send`; False when it does not come."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.PROMPT in self.screen[self.mark :]:
                self.mark = len(self.screen)
                return True
            if self.proc.poll() is not None:
                self.read_some()
                return self.PROMPT in self.screen[self.mark :]
            self.read_some(0.2)
        return False

    def text(self) -> str:
        return self.screen.decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
