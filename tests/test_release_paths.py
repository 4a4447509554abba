"""The GPU profile's paths, exercised on CPU: sharded fp16/fp32 release weights, the measured
precision choice with bf16 autocast, and the in-context copying probe."""

from __future__ import annotations

import pytest
import torch

from notes_rag.model.checkpoint import CheckpointError, load_model, write_checkpoint
from notes_rag.model.gpt import GPT, preset
from notes_rag.model.sharding import INDEX_FILE, MAX_SHARDS, weight_files
from notes_rag.train import precision
from notes_rag.train.copy_probe import copy_probe
from notes_rag.train.loop import TrainConfig, train


def _logits(model, vocab):
    x = torch.randint(0, vocab, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_sharded_save_load_identical_logits(tiny_model, tok, tmp_path, dtype):
    write_checkpoint(tmp_path / "rel", tiny_model, tok, meta={"stage": "reader"}, shards=(dtype, 110_000))
    files = weight_files(tmp_path / "rel")
    shards = [f for f in files if f.name != INDEX_FILE]
    assert 1 < len(shards) <= MAX_SHARDS and all(f.stat().st_size <= 110_000 for f in shards)
    assert not (tmp_path / "rel" / "model.safetensors").exists()
    loaded, _, config = load_model(tmp_path / "rel")
    assert config["meta"]["stage"] == "reader"
    expected = tiny_model
    if dtype == "float16":  # the release stores fp16: same logits as the model rounded to it
        with torch.no_grad():
            for p in tiny_model.parameters():
                p.copy_(p.half().float())
    assert torch.equal(_logits(loaded, tok.vocab_size), _logits(expected, tok.vocab_size))


def test_shard_limits_and_damaged_shards(tiny_model, tok, tmp_path):
    with pytest.raises(Exception, match="does not fit"):
        write_checkpoint(tmp_path / "a", tiny_model, tok, shards=("float16", 1_000))
    deeper = GPT(preset("tiny", vocab_size=tok.vocab_size, n_layer=6))  # ~1.4 MB in fp32
    with pytest.raises(Exception, match="at most 8"):
        write_checkpoint(tmp_path / "b", deeper, tok, shards=("float32", 4 * 64 * tok.vocab_size + 1_000))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    write_checkpoint(tmp_path / "c", tiny_model, tok, shards=("float16", 110_000))
    shard = sorted((tmp_path / "c").glob("model-*"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(tmp_path / "c")


def test_precision_is_bf16_only_when_measured_faster(monkeypatch):
    rates = {torch.float32: 300e9, torch.bfloat16: 150e9}
    monkeypatch.setattr(precision, "measure_matmul_flops", lambda device, n, dtype: rates[dtype])
    steps = {"fp32": 1.0, "bf16": 0.5}
    monkeypatch.setattr(precision, "time_step", lambda step: steps[step()])

    def step_of(p):
        return lambda: p

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert precision.choose_precision(cpu, step_of).precision == "fp32"  # slower matmul: no step timed
    rates[torch.bfloat16] = 600e9
    choice = precision.choose_precision(cpu, step_of)
    assert choice.precision == "bf16" and choice.bf16_step_s == 0.5 and "2.00×" in choice.reason
    steps["bf16"] = 1.5  # a faster matmul but a slower step: fp32
    assert precision.choose_precision(cpu, step_of).precision == "fp32"


def test_no_bf16_probe_on_a_cpu_without_bf16(monkeypatch):
    def probe(*a, **k):
        raise AssertionError("a bf16 matmul was timed on a CPU without bf16")

    monkeypatch.setattr(precision, "measure_matmul_flops", probe)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    choice = precision.choose_precision(torch.device("cpu"), lambda p: lambda: None)
    assert choice.precision == "fp32" and "no bf16" in choice.reason
    monkeypatch.undo()
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert not precision.cpu_has_native_bf16(avx2)
    assert precision.cpu_has_native_bf16(avx2.replace("fma", "fma avx512f avx512_bf16"))
    assert precision.cpu_has_native_bf16(avx2.replace("fma", "amx_bf16 amx_tile"))
    assert precision.cpu_has_native_bf16("Features\t: fp asimd bf16 i8mm\n")  # arm64


def test_bf16_autocast_training_on_cpu(tok, tmp_path):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size))
    ids = torch.tensor(tok.encode("Sieć neuronowa uczy się wag na podstawie danych. " * 40)[: 65 * 4]).view(4, 65)

    class Source:
        def next_batch(self):
            return ids[:, :-1], ids[:, 1:]

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    def val_loss(m):
        with torch.no_grad():
            return {"val_loss": float(m(ids[:, :-1], targets=ids[:, 1:]))}

    before = val_loss(model)["val_loss"]
    # one micro-batch a step: bf16 is emulated (slow) on CPUs without bf16 instructions
    cfg = TrainConfig(max_steps=8, batch_tokens=256, eval_every=8, warmup_steps=1, lr=3e-3, precision="bf16")
    result = train(model, tok, Source(), cfg, tmp_path / "run", val_loss)
    assert result["val_loss"] < before
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    with precision.autocast(torch.device("cpu"), "bf16"):
        assert model(ids[:, :8]).dtype == torch.float32  # logits come back in fp32
    with pytest.raises(Exception, match="unknown precision"):
        precision.autocast(torch.device("cpu"), "fp8")


class _Copier(torch.nn.Module):
    """Predicts the token `lag` positions back: a perfect copier of a sequence repeated at `lag`."""

    def __init__(self, vocab: int, lag: int):
        super().__init__()
        self.vocab, self.lag = vocab, lag
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(*x.shape, self.vocab)
        nxt = torch.roll(x, self.lag - 1, dims=1)  # position i gets token i - lag + 1
        logits.scatter_(2, nxt.unsqueeze(-1), 50.0)
        return logits


def test_copy_probe_separates_the_two_halves():
    n, length = 200, 64
    copier = copy_probe(_Copier(n, length // 2), n, length)
    assert copier["copy_second"] < 1e-3 and copier["copy_first"] > 5
    torch.manual_seed(0)
    fresh = GPT(preset("tiny", vocab_size=n))  # blocks start as the identity: it cannot copy
    untrained = copy_probe(fresh, n, length)
    assert abs(untrained["copy_gain"]) < 0.05
    assert copy_probe(fresh, n, length) == untrained  # the same sequences at every evaluation
