"""The speedrun's profiles: every setting of every stage, per machine budget, in one place.

    smoke  two cores, ≤ 5 minutes (about 2): tiny shapes on a slice of the kit; the whole
           pipeline end to end, run by the test suite on a synthetic kit
    cpu    two cores, ≤ 2.5 hours: the release recipe (docs/TRAINING.md) in fitted time budgets,
           Muon for pretraining (the sweep's winner at equal tokens)
    gpu    one H100/H200, ≤ 10 minutes wall: the `large` preset (29M parameters), torch.compile
           for pretraining, fused AdamW, bf16 autocast when measured faster (it is, on Hopper),
           data from `data/kit/` inside the checkout, release weights as fp16 shards ≤ 16 MB

Each stage's settings are the library's own config dataclasses (`PretrainConfig`,
`BuildConfig`, `FinetuneConfig`, `GeneratorTrainConfig`); a profile only says where they differ
from the defaults, so a default is still written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.sft.config import DEFAULT_MIX, BuildConfig
from notes_rag.train.finetune import FinetuneConfig
from notes_rag.train.generator import GeneratorTrainConfig
from notes_rag.train.loop import TrainConfig
from notes_rag.train.precision import MEASURE
from notes_rag.train.pretrain import PretrainConfig
from notes_rag.train.pretrain_data import DataConfig


@dataclass(frozen=True)
class Profile:
    name: str
    kit: Path  # holds pretrain/ and sft/ (and eval/dev.jsonl, inside or beside it)
    pretrain_files: tuple[str, ...] = ()  # file-name globs inside kit/pretrain; () = every file
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: BuildConfig = field(default_factory=BuildConfig)  # its data_dir is replaced by `kit`
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    precision: str = MEASURE  # or "fp32" / "bf16" to skip the measurement
    release_shards: tuple[str, int] | None = None  # (dtype, max bytes a file); None = one fp32 file


def _train(base: TrainConfig, **changes) -> TrainConfig:
    return replace(base, **changes)


_SMOKE_FILES = ("pl_wikipedia_paragraphs", "en_d2l")  # one modern Polish and one English source

SMOKE = Profile(
    name="smoke",
    kit=Path("../shared/data"),
    pretrain_files=tuple(f"{name}.*" for name in _SMOKE_FILES),
    pretrain=PretrainConfig(
        model="tiny",
        context=256,
        seq_len=256,
        vocab_size=2048,
        tokenizer_chars=3_000_000,
        data=DataConfig(val_fraction=0.02),
        train=TrainConfig(
            lr=3e-3, max_steps=40, batch_tokens=2048, device_batch=8, warmup_steps=10, eval_every=20, eval_batches=4
        ),
    ),
    sft=BuildConfig(
        mix={name: weight * 0.03 for name, weight in DEFAULT_MIX.items()},
        gen_files=_SMOKE_FILES,
        gen_max_per_file=60,
        gen_max_per_file_wiki=60,
        val_max_per_source=10,
        k_range=(1, 2),
        chunk_words=(30, 50),
        max_tokens=256,
    ),
    finetune=FinetuneConfig(
        seq_len=256,
        micro_tokens=2048,
        train=_train(FinetuneConfig().train, lr=2e-3, max_steps=20, batch_tokens=2048, warmup_steps=5, eval_every=10),
    ),
    generator=GeneratorTrainConfig(
        seq_len=256,
        micro_tokens=2048,
        val_items=30,
        val_generate=10,
        train=_train(
            GeneratorTrainConfig().train, lr=2e-3, max_steps=20, batch_tokens=2048, warmup_steps=5, eval_every=10
        ),
    ),
)

# The release recipe (README "Retraining the model"): pretrain 65 + finetune 42 + reader 110 min
# took 3.6 h; here 55 + 25 + 50 min of training (the generator in the reader's place) leave ~20 min
# for the tokenizer, the token shards, the SFT data, the generator items and the dev evaluation
# within 2.5 h.
CPU = Profile(
    name="cpu",
    kit=Path("../shared/data"),
    pretrain=PretrainConfig(model="small", train=_train(PretrainConfig().train, optimizer="muon", time_budget=55 * 60)),
    finetune=FinetuneConfig(train=_train(FinetuneConfig().train, lr=1e-3, time_budget=25 * 60)),
    # evaluations (greedy answers) are outside the time budget: every 250 steps keeps them to minutes
    generator=GeneratorTrainConfig(train=_train(GeneratorTrainConfig().train, time_budget=50 * 60, eval_every=250)),
)

# Ten minutes on one Hopper GPU, start-up and compilation included: ~4 min of pretraining at
# 256k-token steps (~100M tokens, ~3 epochs of the kit), 1 + 1.5 min of finetuning and generator
# training, the rest for the tokenizer, data, compilation and the dev evaluation.
GPU = Profile(
    name="gpu",
    kit=Path("data/kit"),
    pretrain=PretrainConfig(
        model="large",
        seq_len=1024,
        tokenizer_chars=100_000_000,
        data=DataConfig(workers=8),
        train=TrainConfig(
            lr=1.5e-3,
            batch_tokens=262_144,
            device_batch=64,
            warmup_steps=60,
            time_budget=210,
            eval_every=200,
            log_every=20,
            compile=True,
        ),
    ),
    finetune=FinetuneConfig(
        micro_tokens=32_768,
        train=_train(FinetuneConfig().train, lr=1e-3, batch_tokens=65_536, time_budget=60, log_every=20),
    ),
    generator=GeneratorTrainConfig(
        micro_tokens=32_768,
        val_generate=30,  # greedy answers decode token by token: few, and rarely, in a 10-minute run
        train=_train(GeneratorTrainConfig().train, batch_tokens=65_536, time_budget=90, eval_every=500, log_every=20),
    ),
    release_shards=("float16", 16_000_000),
)

PROFILES = {p.name: p for p in (SMOKE, CPU, GPU)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise NotesRagError(f"unknown speedrun profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]
