"""The speedrun end to end on a tiny synthetic kit: the smoke profile through the CLI with a
Ctrl-C and a resume, the report, the GPU profile's paths at tiny size on CPU."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
import torch
from tiny_kit import EN_TOPICS, TOPICS, write_kit

from notes_rag.eval.backends import Backends
from notes_rag.eval.runner import AnswerRecord, Retrieval, RetrievedChunk
from notes_rag.model.checkpoint import load_model
from notes_rag.model.sharding import INDEX_FILE
from notes_rag.sft.config import DEFAULT_MIX
from notes_rag.speedrun import profiles, stages
from notes_rag.speedrun.pipeline import speedrun

PRETRAIN_FILES = ("pl_wikipedia_paragraphs", "en_d2l")  # the files the smoke profile reads
NOTES = [(f"{t}.md", c) for t, c in TOPICS + EN_TOPICS]
DEV = [
    {
        "id": "d1",
        "lang": "pl",
        "question": "Nad jaką rzeką leży Kraków?",
        "must": [["Wisłą"]],
        "evidence": TOPICS[1][1],
    },
    {"id": "d2", "lang": "en", "question": "When did the Berlin Wall fall?", "must": [["1989"]], "evidence": "fell"},
    {"id": "d3", "lang": "en", "question": "How to bake a cheesecake?", "answerable": False},
]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = write_kit(
        tmp_path_factory.mktemp("kit"), pretrain_names=("pl_wikipedia_paragraphs", "en_d2l"), filler_docs=60
    )
    (root / "eval").mkdir()
    (root / "eval" / "dev.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DEV) + "\n")
    return root


def tiny_kit_profile(base: profiles.Profile, kit) -> profiles.Profile:
    """`base` on the tiny kit: its few QA items each used once (the real mix samples a share)."""
    sft = replace(base.sft, mix=dict.fromkeys(DEFAULT_MIX, 1.0), val_frac=0.3, gen_files=PRETRAIN_FILES)
    return replace(base, kit=kit, sft=sft)


@pytest.fixture()
def fake_eval(monkeypatch):
    """The dev evaluation's index and assistant, faked: retrieval finds the note of the
    question's topic, the 'model' answers with its first sentence."""
    opened = {}

    def answer(turns):
        hits = retrieve(turns).chunks
        return AnswerRecord(hits[0].text.split(". ")[0] + " [1]", False, [1], [hits[0].text], ttft_s=0.01)

    def retrieve(turns):
        q = turns[-1].lower()
        ranked = sorted(NOTES, key=lambda n: -sum(w in n[1].lower() for w in q.split()))
        return Retrieval([RetrievedChunk(text, f) for f, text in ranked[:5]], 0.9)

    def open_backends(index, model, k, mode, answers, overrides=None):
        opened.update(model=model, k=k)
        return Backends(retrieve, answer, NOTES, {f: "pl" for f, _ in NOTES[:6]} | {f: "en" for f, _ in NOTES[6:]}, 0.8)

    monkeypatch.setattr(stages, "open_backends", open_backends)
    return opened


def run_cli(monkeypatch, *args) -> int:
    from notes_rag.cli.main import main

    monkeypatch.setattr(sys, "argv", ["notes-rag", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code


def test_smoke_speedrun_ctrl_c_resume_report(kit, tmp_path, monkeypatch, interrupt_at, fake_eval):
    monkeypatch.setitem(profiles.PROFILES, "smoke", tiny_kit_profile(profiles.SMOKE, kit))
    out = tmp_path / "run"
    args = ["speedrun", "--profile", "smoke", "--kit", str(kit), "--out", str(out), "--models", str(tmp_path / "none")]
    steps = profiles.SMOKE.pretrain.train.max_steps
    interrupt_at(steps + 5)  # Ctrl-C during the 5th finetuning step
    assert run_cli(monkeypatch, *args) == 130
    state = json.loads((out / "speedrun.json").read_text())
    assert set(state["stages"]) == {"tokenizer", "pretrain", "sft-data"}
    assert json.loads((out / "finetune" / "last" / "train_state.json").read_text())["reason"] == "interrupted"
    assert not (out / "report.md").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # nothing half-written

    assert run_cli(monkeypatch, *args) == 0  # resumes the finetuning, then the rest
    state = json.loads((out / "speedrun.json").read_text())
    assert list(state["stages"]) == [s.name for s in stages.STAGES]
    assert state["precision"]["precision"] in ("bf16", "fp32") and state["precision"]["fp32_gflops"] > 0
    assert state["stages"]["finetune"]["steps"] == profiles.SMOKE.finetune.train.max_steps
    assert state["stages"]["eval"]["items"] == 3 and fake_eval["model"] == out / "release"
    model, _, config = load_model(out / "release")
    assert model.config.copy_head and config["meta"]["stage"] == "generator" and config["meta"]["speedrun"] == "smoke"
    assert "answer_hit" in state["stages"]["generator"] and "| generator |" in (out / "report.md").read_text()
    probes = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in probes if "copy_gain" in p] == [steps // 2, steps]
    report = (out / "report.md").read_text()
    for text in ("## Stages", "tok/s", "MFU", "pretrain/loss.png", "copying probe", "| this run |", "Precision"):
        assert text in report

    before = (out / "speedrun.json").read_text()
    assert run_cli(monkeypatch, *args) == 0  # everything done: every stage skipped
    after = json.loads((out / "speedrun.json").read_text())
    assert after["stages"] == json.loads(before)["stages"] and len(after["runs"]) == 2


@pytest.mark.slow
def test_gpu_profile_paths_at_tiny_size_on_cpu(kit, tmp_path, fake_eval):
    """bf16 autocast, torch.compile, fused AdamW and the fp16 sharded release of the GPU
    profile, on CPU at tiny shapes (steps instead of time budgets)."""
    gpu = tiny_kit_profile(profiles.GPU, kit)

    def tiny(cfg, steps, **train):
        return replace(cfg, train=replace(cfg.train, time_budget=None, max_steps=steps, eval_every=steps, **train))

    data = replace(gpu.pretrain.data, val_fraction=0.1, workers=1)
    pre = replace(gpu.pretrain, model="tiny", context=256, seq_len=128, vocab_size=600, tokenizer_chars=9**5, data=data)
    prof = replace(
        gpu,
        pretrain_files=("*.jsonl.xz",),
        precision="bf16",
        pretrain=tiny(pre, 3, batch_tokens=1024, device_batch=8),
        sft=replace(gpu.sft, max_tokens=256),
        finetune=tiny(replace(gpu.finetune, seq_len=256, micro_tokens=1024), 2, batch_tokens=1024),
        generator=tiny(
            replace(gpu.generator, seq_len=256, micro_tokens=1024, val_items=10, val_generate=4), 2, batch_tokens=1024
        ),
        release_shards=("float16", 100_000),  # several shards even at this size
    )
    assert profiles.GPU.pretrain.train.compile and profiles.GPU.release_shards[0] == "float16"
    state = speedrun(prof, tmp_path / "gpu", dev=kit / "eval" / "dev.jsonl")
    assert state["precision"]["precision"] == "bf16"
    release = tmp_path / "gpu" / "release"
    shards = sorted(release.glob("model-*.safetensors"))
    assert 1 < len(shards) <= 8 and (release / INDEX_FILE).is_file()
    assert all(f.stat().st_size <= 100_000 for f in shards)
    fp16, _, _ = load_model(release)
    trained, _, _ = load_model(tmp_path / "gpu" / "generator" / "best")
    with torch.no_grad():
        for p in trained.parameters():
            p.copy_(p.half().float())  # what the fp16 release stores
        x = torch.randint(0, trained.config.vocab_size, (2, 40))
        assert torch.equal(fp16(x), trained(x))
