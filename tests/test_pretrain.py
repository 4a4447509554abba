"""Pretraining on a tiny generated corpus: loss falls, resume is exact, bad input is clear."""

from __future__ import annotations

import json
import lzma
import os
import random

import pytest
import torch
from safetensors.torch import load_file

from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import CheckpointError, load_model
from notes_rag.train.loop import TrainConfig
from notes_rag.train.pretrain import PretrainConfig, pretrain
from notes_rag.train.pretrain_data import DataConfig, find_data_files, iter_documents

WORDS_EN = "the model learns attention weights from data and predicts the next token in a sequence".split()
WORDS_PL = "model uczy się wag uwagi z danych i przewiduje następny token w sekwencji zdań".split()


def make_corpus(folder, n_docs=60, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with lzma.open(folder / "mix.jsonl.xz", "wt", encoding="utf-8") as f:
        for i in range(n_docs):
            words = WORDS_PL if i % 2 else WORDS_EN
            text = " ".join(rng.choice(words) for _ in range(150)) + "."
            f.write(json.dumps({"text": text, "lang": "pl" if i % 2 else "en"}) + "\n")
    (folder / "notes.md").write_text("# Uwaga\n\n" + " ".join(WORDS_PL * 10), encoding="utf-8")
    return folder


def tiny_cfg(steps=12, **kw) -> PretrainConfig:
    train = TrainConfig(
        max_steps=steps,
        batch_tokens=1024,
        device_batch=4,
        eval_every=6,
        eval_batches=2,
        warmup_steps=2,
        lr=3e-3,
        log_every=2,
        **kw,
    )
    return PretrainConfig(
        model="tiny", seq_len=64, vocab_size=320, data=DataConfig(val_fraction=0.1, workers=1), train=train
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_loss_falls_and_outputs(corpus, tmp_path):
    out = tmp_path / "run"
    result = pretrain([corpus], out, tiny_cfg(steps=30))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert "val_bpb" in result and result["val_bpb"] > 0
    assert (out / "loss.png").stat().st_size > 1000
    model, tok, cfg = load_model(out / "best")
    assert cfg["meta"]["stage"] == "pretrain"


def test_resume_is_exact(corpus, tmp_path, interrupt_at):
    full, part = tmp_path / "full", tmp_path / "part"
    pretrain([corpus], full, tiny_cfg(steps=12))
    interrupt_at(7)  # Ctrl-C during step 7: the loop finishes it, saves, stops
    with pytest.raises(KeyboardInterrupt):
        pretrain([corpus], part, tiny_cfg(steps=12))
    pretrain([corpus], part, tiny_cfg(steps=12), resume=True)
    a = load_file(str(full / "last" / "model.safetensors"))
    b = load_file(str(part / "last" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_resume_with_its_budget_used_says_so(corpus, tmp_path):
    from rich.console import Console

    out = tmp_path / "run"
    pretrain([corpus], out, tiny_cfg(steps=2))
    console = Console(record=True, width=300)
    pretrain([corpus], out, tiny_cfg(steps=4, time_budget=1e-3), resume=True, console=console)
    assert "nothing to train" in console.export_text()


def test_shards_are_cached(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    pretrain([corpus], out, tiny_cfg(steps=2))
    import notes_rag.train.shards as pd

    def boom(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(pd, "_encode_docs", boom)
    monkeypatch.setattr(pd.mp, "get_context", boom)
    pretrain([corpus], tmp_path / "run", tiny_cfg(steps=4), resume=True)


def test_ctrl_c_leaves_loadable_checkpoint(corpus, tmp_path, interrupt_at):
    out = tmp_path / "run"
    interrupt_at(3)
    with pytest.raises(KeyboardInterrupt):
        pretrain([corpus], out, tiny_cfg(steps=20))
    model, tok, cfg = load_model(out / "last")
    state = json.loads((out / "last" / "train_state.json").read_text())
    assert state["reason"] == "interrupted" and state["step"] == 3


def test_corrupt_checkpoint_is_an_error(corpus, tmp_path):
    out = tmp_path / "run"
    pretrain([corpus], out, tiny_cfg(steps=2))
    opt = out / "last" / "optimizer.safetensors"
    opt.write_bytes(opt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrain([corpus], out, tiny_cfg(steps=4), resume=True)


def test_existing_run_needs_resume(corpus, tmp_path):
    out = tmp_path / "run"
    pretrain([corpus], out, tiny_cfg(steps=2))
    with pytest.raises(NotesRagError, match="--resume"):
        pretrain([corpus], out, tiny_cfg(steps=2))


def test_bad_inputs(tmp_path):
    with pytest.raises(NotesRagError, match="not found"):
        find_data_files([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotesRagError, match="no .txt"):
        find_data_files([empty])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    (bad / "broken.jsonl").write_text("not json\n")
    with pytest.raises(NotesRagError, match="no usable text"):
        pretrain([bad], tmp_path / "run", tiny_cfg(steps=2))


def test_legacy_encoding_and_compressed_text(tmp_path):
    (tmp_path / "a.txt").write_bytes("Zażółć gęślą jaźń".encode("cp1250"))
    docs = list(iter_documents(tmp_path / "a.txt"))
    assert docs == [("Zażółć gęślą jaźń", "en")]


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_in_sync_and_learn(corpus, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "notes_rag",
        "pretrain",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--config",
        "tiny",
        "--vocab-size",
        "320",
        "--seq-len",
        "64",
        "--steps",
        "20",
        "--batch-tokens",
        "1024",
        "--device-batch",
        "4",
        "--eval-every",
        "10",
        "--warmup",
        "2",
        "--lr",
        "3e-3",
    ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ranks in sync: 2 ranks" in proc.stderr  # the loop all-gathers a weight checksum at the end
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert len([r for r in rows if "val_loss" in r]) == 2  # only rank 0 writes


def test_default_window_follows_the_preset(corpus, tmp_path):
    from dataclasses import replace

    out = tmp_path / "run"
    pretrain([corpus], out, replace(tiny_cfg(steps=2), seq_len=None))  # tiny's context is 128 < 512
    _, _, cfg = load_model(out / "best")
    assert cfg["meta"]["seq_len"] == 128
