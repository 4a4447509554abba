"""Finetuning on tiny generated conversations: masked loss, loss falls, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from notes_rag.chat.format import Conversation, Passage, Turn
from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.gpt import GPT, preset
from notes_rag.train.finetune import ConversationBatches, FinetuneConfig, encode_all, finetune, load_sft_files
from notes_rag.train.loop import TrainConfig

FACTS = [
    ("Tokenizacja", "dzieli tekst na tokeny"),
    ("Attention", "mixes information between tokens"),
    ("Embedding", "maps token ids to vectors"),
    ("Softmax", "normalizuje wyniki do prawdopodobieństw"),
]


def conversations(n: int) -> list[dict]:
    out = []
    for i in range(n):
        term, fact = FACTS[i % len(FACTS)]
        gold = i % 3
        passages = [Passage(f"notes.md › {t}", f"{t} {f}.") for t, f in FACTS[:3]]
        passages[gold] = Passage(f"notes.md › {term}", f"{term} {fact}.")
        turns = [Turn("user", f"Czym jest {term}?"), Turn("assistant", f"{term} {fact}. [{gold + 1}]")]
        out.append({**Conversation("Odpowiadaj z notatek.", passages, turns).to_dict(), "source": "t", "lang": "pl"})
    return out


@pytest.fixture()
def setup(tmp_path, tok):
    data = tmp_path / "sft"
    data.mkdir()
    for split, n in (("train", 64), ("val", 8)):
        (data / f"{split}.jsonl").write_text("\n".join(json.dumps(c) for c in conversations(n)) + "\n")
    torch.manual_seed(0)
    base = tmp_path / "base"
    write_checkpoint(base, GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=256)), tok, meta={"stage": "pretrain"})
    return base, data


def cfg(steps: int) -> FinetuneConfig:
    return FinetuneConfig(
        seq_len=256,
        micro_tokens=1024,
        train=TrainConfig(
            lr=3e-3, max_steps=steps, batch_tokens=2048, eval_every=10, eval_batches=2, warmup_steps=2, log_every=2
        ),
    )


def test_batches_learn_only_answers(setup, tok):
    _, data = setup
    train, _ = load_sft_files([data])
    ex = encode_all(train, tok, 256)
    x, y = ConversationBatches(ex, 1024).next_batch()
    learned = y[y != -1].tolist()
    text = tok.decode([t for t in learned if t < tok.vocab_size - 6])
    assert "Czym jest" not in text and "Odpowiadaj" not in text
    assert tok.special("end") in learned and tok.special("assistant") not in learned
    assert x.numel() <= 1024


def test_finetune_lowers_loss_and_resumes_exactly(setup, tmp_path, interrupt_at):
    base, data = setup
    finetune(base, [data], tmp_path / "full", cfg(20))
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 0.5
    model, tok, config = load_model(tmp_path / "full" / "best")
    assert config["meta"]["stage"] == "finetune"

    interrupt_at(9)  # Ctrl-C during step 9: the loop finishes it, saves, stops
    with pytest.raises(KeyboardInterrupt):
        finetune(base, [data], tmp_path / "part", cfg(20))
    finetune(base, [data], tmp_path / "part", cfg(20), resume=True)
    a = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "last" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_bad_data(tmp_path, setup):
    base, _ = setup
    with pytest.raises(NotesRagError, match="not found"):
        load_sft_files([tmp_path / "nope"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"system": "x", "turns": [{"role": "robot", "content": "hi"}]}\n')
    with pytest.raises(NotesRagError, match="bad.jsonl:1"):
        load_sft_files([bad])
