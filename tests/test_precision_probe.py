"""The bf16 decision and the MFU probe on CPUs without native bf16: the capability torch
dispatches to counts, the probe is time-boxed, and its result is cached per machine."""

from __future__ import annotations

import json
import time

import pytest
import torch

from notes_rag.train import precision

X86_BF16 = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16\n"


def test_bf16_flags_count_only_with_kernels_that_use_them():
    assert precision.cpu_has_native_bf16(X86_BF16, capability="AVX512")
    assert not precision.cpu_has_native_bf16(X86_BF16, capability="AVX2")  # e.g. ATEN_CPU_CAPABILITY=avx2
    assert not precision.cpu_has_native_bf16(X86_BF16, capability="DEFAULT")
    assert precision.cpu_has_native_bf16(X86_BF16)  # a given CPU: the best its flags allow
    assert precision.cpu_has_native_bf16("Features\t: fp asimd bf16\n", capability="DEFAULT")  # arm64
    assert precision.cpu_model(X86_BF16) == "Test CPU 9000"


def test_probe_keeps_to_its_budget():
    t = time.perf_counter()
    rate = precision.probe_matmul(torch.bfloat16, n=2048, budget_s=0.3)  # from 256², bf16 as a slow CPU runs it
    assert rate > 0 and time.perf_counter() - t < 3.0  # the budget, plus at most one size's overrun


def test_probe_of_the_smallest_shape_measures_that_shape():
    assert precision.probe_matmul(torch.bfloat16, n=64, budget_s=10.0, trials=1) > 0


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_CACHE", str(tmp_path))
    return tmp_path / precision.PEAK_FILE


def test_peak_is_measured_once_per_machine_then_read(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "probe_matmul", lambda dtype, n: calls.append(dtype) or 123e9)
    cpu = torch.device("cpu")
    assert precision.matmul_peak(cpu, torch.float32) == 123e9
    assert precision.matmul_peak(cpu, torch.float32) == 123e9 and calls == [torch.float32]
    assert precision.matmul_peak(cpu, torch.bfloat16) == 123e9 and len(calls) == 2  # its own key
    (key,) = [k for k in json.loads(cache.read_text()) if "float32" in k]
    assert precision.cpu_model() in key and torch.__version__ in key and "threads" in key


def test_a_damaged_cache_is_measured_again(cache, monkeypatch):
    cache.write_text("{not json")
    monkeypatch.setattr(precision, "probe_matmul", lambda dtype, n: 7e9)
    assert precision.matmul_peak(torch.device("cpu"), torch.float32) == 7e9
    assert list(json.loads(cache.read_text()).values())[0]["flops"] == 7e9


def test_training_commands_resolve_their_precision_option(monkeypatch):
    from notes_rag.cli import train as train_cli
    from notes_rag.errors import NotesRagError

    built = []
    assert train_cli.resolve_precision("fp32", lambda: built.append(1)) == "fp32" and not built  # no model built
    with pytest.raises(NotesRagError, match="--precision"):
        train_cli.resolve_precision("fp16", lambda: None)
    # "measure" times bf16 against fp32 on the run's own model and takes the measured choice
    timed = []

    def fake(model, device):
        timed.append(model)
        return precision.PrecisionChoice("bf16", str(device), reason="test")

    monkeypatch.setattr(train_cli, "measured_precision", fake)
    assert train_cli.resolve_precision("measure", lambda: "the model") == "bf16" and timed == ["the model"]


def test_measured_precision_times_the_model_it_is_given():
    from notes_rag.model.gpt import GPT, preset

    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=256, seq_len=64))
    choice = precision.measured_precision(model, torch.device("cpu"), batch=2, seq_len=32)
    assert choice.precision in ("fp32", "bf16") and model.training
    if choice.fp32_step_s is not None:  # a CPU with native bf16 whose matmul won: both steps were timed
        assert choice.bf16_step_s > 0
