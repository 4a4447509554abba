"""`notes-rag pretrain`: tokenizer + shards + GPT pretraining on raw text.

    notes-rag pretrain --data ../shared/data/pretrain --out runs/base --config small --time-budget 1h

Trains the tokenizer when the output folder has none, tokenizes the data into cached shards
(train/shards.py), builds the GPT (model/gpt.py) and runs the shared training loop (train/loop.py),
reporting validation loss, tokenizer-independent bits per byte and the in-context copying probe
(train/copy_probe.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from notes_rag.errors import NotesRagError
from notes_rag.model.engine import SamplingConfig, generate
from notes_rag.model.gpt import GPT, preset
from notes_rag.model.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer, train_tokenizer
from notes_rag.train.copy_probe import copy_probe
from notes_rag.train.distributed import setup_distributed
from notes_rag.train.loop import TrainConfig, train
from notes_rag.train.pretrain_data import DataConfig, find_data_files, tokenizer_texts
from notes_rag.train.shards import TokenWindows, prepare_shards, read_shards

DEFAULT_WINDOW = 512  # training window when none is given and the preset's context allows it
SAMPLE_PROMPTS = ("Sieć neuronowa to", "A neural network is")


@dataclass
class PretrainConfig:
    model: str = "small"  # preset name from model.PRESETS
    # training window; None = 512 or the preset's context when shorter (tiny: 128)
    seq_len: int | None = None
    context: int | None = None  # the model's context (RoPE table); None = the preset's
    vocab_size: int = 8192
    tokenizer_chars: int = 200_000_000  # characters of text used to train the tokenizer
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class WindowSource:
    """Adapts TokenWindows (numpy) to the training loop's BatchSource (torch x, y)."""

    def __init__(self, windows: TokenWindows):
        self.windows = windows

    def next_batch(self):
        w = torch.from_numpy(self.windows.next_batch())
        return w[:, :-1], w[:, 1:]

    def state_dict(self):
        return self.windows.state_dict()

    def load_state_dict(self, state):
        self.windows.load_state_dict(state)


def token_byte_lengths(tok: Tokenizer) -> torch.Tensor:
    """Bytes each token id stands for (0 for special tokens), for bits-per-byte."""
    special = set(tok.special_ids.values())
    return torch.tensor([0 if i in special else len(tok.token_bytes(i)) for i in range(tok.vocab_size)])


@torch.no_grad()
def evaluate_bpb(model, windows: TokenWindows, byte_lengths: torch.Tensor, max_batches: int, device) -> dict:
    """Mean validation loss (nats/token) and bits per byte over up to `max_batches` batches."""
    nats, tokens, nbytes = 0.0, 0, 0
    for arr in windows.all_batches(max_batches):
        w = torch.from_numpy(arr).to(device)
        x, y = w[:, :-1], w[:, 1:]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        nb = byte_lengths.to(device)[y.reshape(-1)]
        nats += float(loss.sum())
        tokens += y.numel()
        nbytes += int(nb.sum())
    if torch.distributed.is_initialized():
        t = torch.tensor([nats, tokens, nbytes], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        nats, tokens, nbytes = t.tolist()
    return {"val_loss": nats / tokens, "val_bpb": nats / math.log(2) / max(nbytes, 1)}


def sample_text(model, tok: Tokenizer, prompts=SAMPLE_PROMPTS, n: int = 24) -> str:
    out = []
    for p in prompts:
        ids = [tok.special("bos")] + tok.encode(p)
        new = list(generate(model, ids, SamplingConfig(max_new_tokens=n), stop_ids=[tok.special("bos")]))
        out.append(p + tok.decode(new))
    return " || ".join(out)


def get_tokenizer(out: Path, files: list[Path], cfg: PretrainConfig, console) -> Tokenizer:
    path = out / TOKENIZER_FILE
    if path.exists():
        return load_tokenizer(path)
    console.print(
        f"training a {cfg.vocab_size}-token BPE tokenizer on up to {cfg.tokenizer_chars / 1e6:.0f}M characters"
    )
    tok = train_tokenizer(tokenizer_texts(files, cfg.tokenizer_chars, cfg.data.upsample), cfg.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return load_tokenizer(path)


def pretrain(data: list[Path], out: Path, cfg: PretrainConfig, resume: bool = False, console=None) -> dict:
    from rich.console import Console

    console = console or Console(stderr=True)
    out = Path(out)
    files = find_data_files(data)
    d, device = setup_distributed()
    if d.master:
        tok = get_tokenizer(out, files, cfg, console)
    if d.world > 1:
        torch.distributed.barrier()
    tok = load_tokenizer(out / TOKENIZER_FILE)
    if d.master:
        _prepare(files, tok, out, cfg, console)
    if d.world > 1:
        torch.distributed.barrier()
    folder = prepare_shards(files, tok, out / TOKENIZER_FILE, out, cfg.data)  # cached: returns at once
    model_cfg = preset(cfg.model, vocab_size=tok.vocab_size, **({"seq_len": cfg.context} if cfg.context else {}))
    seq_len = cfg.seq_len or min(DEFAULT_WINDOW, model_cfg.seq_len)
    if seq_len > model_cfg.seq_len:
        raise NotesRagError(f"--seq-len {seq_len} exceeds the {cfg.model} model's context of {model_cfg.seq_len}")
    tc = cfg.train
    torch.manual_seed(tc.seed)  # same seed, same initial weights
    model = GPT(model_cfg).to(device)
    train_windows = TokenWindows(read_shards(folder, "train"), seq_len, tc.device_batch, tc.seed, d.rank, d.world)
    # validation only needs one window somewhere (evaluate_bpb sums over ranks)
    val_windows = TokenWindows(read_shards(folder, "val"), seq_len, tc.device_batch, 0, d.rank, d.world, min_windows=1)
    lengths = token_byte_lengths(tok)
    n_ids = min(tok.special_ids.values())  # the probe's random sequences use ordinary tokens only

    def evaluate(m) -> dict:
        return {**evaluate_bpb(m, val_windows, lengths, tc.eval_batches, device), **copy_probe(m, n_ids, seq_len)}

    meta = {"stage": "pretrain", "data": [str(p) for p in data], "seq_len": seq_len, "shards": folder.name}
    return train(
        model,
        tok,
        WindowSource(train_windows),
        tc,
        out,
        evaluate=evaluate,
        sample=lambda m: sample_text(m, tok),
        meta=meta,
        resume=resume,
        dist_info=d,
        device=device,
        console=console,
    )


def _prepare(files, tok, out, cfg: PretrainConfig, console) -> Path:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    total = sum(f.stat().st_size for f in files)
    with Progress(
        TextColumn("tokenizing"), BarColumn(), TimeElapsedColumn(), console=console, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("tok", total=None)
        folder = prepare_shards(
            files, tok, out / TOKENIZER_FILE, out, cfg.data, progress=lambda n: bar.advance(task, n)
        )
    meta = json.loads((folder / "meta.json").read_text())
    ntrain = sum(s["tokens"] for s in meta["train"])
    nval = sum(s["tokens"] for s in meta["val"])
    console.print(
        f"data: {meta['docs']:,} documents from {len(files)} files ({total / 1e6:.1f} MB on disk) -> "
        f"{ntrain:,} train tokens, {nval:,} val tokens "
        f"({meta['train_bytes'] / max(ntrain, 1):.2f} bytes/token) in {folder}"
    )
    return folder
