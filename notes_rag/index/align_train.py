"""Fine-tune the retrieval encoder so a Polish text and its English original get the same vector.

    notes-rag align-train --data data/align --out runs/align --time-budget 40m

Multilingual knowledge distillation (Reimers & Gurevych 2020) with sentence-transformers' own
trainer and `MSELoss`: the frozen teacher (the encoder as shipped) embeds the English side; the
student learns to put both the Polish translation and the English original on that vector, so
Polish moves onto English and English stays where it was (the index of English notes keeps its
geometry). `loss="mnrl"` trains in-batch-negatives contrastive (`MultipleNegativesRankingLoss`,
English query ↔ Polish passage and the reverse) on the same pairs instead; `"both"` alternates.

Inputs carry e5's prompts as retrieval uses them: each pair is a "passage: " pair or a
"query: " pair (kit paragraphs are mostly passages, short messages and sentences half each).
The 96M-parameter word-embedding table and the other embeddings stay frozen; only the top
`layers` transformer layers train, and those layers are what `encoder_delta` ships.
A callback writes the delta every `save_every` steps and stops at the time budget.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.index.align_data import Pair
from notes_rag.index.encoder import encode_passages, encode_queries
from notes_rag.index.encoder_delta import layer_names, write_delta

log = logging.getLogger(__name__)

PROMPTS = {"query": "query: ", "passage": "passage: "}


@dataclass
class AlignTrainConfig:
    loss: str = "mse"  # mse (distillation) | mnrl (in-batch negatives) | both
    layers: int = 4  # the top N transformer layers train: a third of the backward pass, a 14 MB delta
    en_share: float = 0.2  # English texts (kept on their own vector) per Polish one: a regulariser
    lr: float = 2e-5
    batch_size: int = 32
    epochs: float = 1.0
    warmup_ratio: float = 0.05
    max_seq_length: int = 96  # align-data keeps paragraphs under 400 characters, ~96 tokens
    kit_repeat: int = 1  # >1 shows the technical paragraphs (the domain we need) more often
    kit_passage_share: float = 0.75  # kit paragraphs as passages; the rest as queries
    save_every: int = 100  # steps between delta snapshots
    time_budget_s: float = 40 * 60
    seed: int = 0


def training_rows(pairs: list[Pair], cfg: AlignTrainConfig) -> list[tuple[str, str, str]]:
    """(prompt name, English, Polish) per training example, shuffled, kit pairs repeated."""
    rng = random.Random(cfg.seed)
    rows = []
    for p in pairs:
        for _ in range(cfg.kit_repeat if p.kind == "kit" else 1):
            share = cfg.kit_passage_share if p.kind == "kit" else 0.5
            rows.append(("passage" if rng.random() < share else "query", p.en, p.pl))
    rng.shuffle(rows)
    return rows


def freeze_for_delta(model, layers: int) -> int:
    """Leave only the top `layers` transformer layers trainable; their parameter count."""
    bert = model[0].auto_model
    for p in bert.parameters():
        p.requires_grad = False
    n_layers = len(bert.encoder.layer)
    trainable = 0
    for layer in bert.encoder.layer[n_layers - layers :]:
        for p in layer.parameters():
            p.requires_grad = True
            trainable += p.numel()
    return trainable


def _datasets(model, rows, cfg: AlignTrainConfig):
    from datasets import Dataset

    en = [PROMPTS[k] + e for k, e, _ in rows]
    pl = [PROMPTS[k] + p for k, _, p in rows]
    data, losses = {}, {}
    from sentence_transformers.sentence_transformer.losses import MSELoss, MultipleNegativesRankingLoss

    if cfg.loss in ("mse", "both"):
        t0 = time.perf_counter()
        teacher = model.encode(en, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        log.info("teacher vectors of %d English texts in %.0f s", len(en), time.perf_counter() - t0)
        # one text per example: every Polish text, and a share of the English ones (cheaper than both columns)
        keep_en = [i for i in range(len(en)) if (i * 0.6180339887) % 1.0 < cfg.en_share]
        texts = pl + [en[i] for i in keep_en]
        labels = np.concatenate([teacher, teacher[keep_en]])
        data["mse"] = Dataset.from_dict({"text": texts, "label": labels.tolist()})
        losses["mse"] = MSELoss(model)
    if cfg.loss in ("mnrl", "both"):
        # English query ↔ Polish passage and Polish query ↔ English passage: the cross-lingual direction
        q = [PROMPTS["query"] + (e if i % 2 else p) for i, (_, e, p) in enumerate(rows)]
        d = [PROMPTS["passage"] + (p if i % 2 else e) for i, (_, e, p) in enumerate(rows)]
        data["mnrl"] = Dataset.from_dict({"anchor": q, "positive": d})
        losses["mnrl"] = MultipleNegativesRankingLoss(model)
    if not data:
        raise ValueError(f"unknown loss {cfg.loss!r} (mse, mnrl or both)")
    if len(data) == 1:
        (name,) = data
        return data[name], losses[name]
    from datasets import DatasetDict

    return DatasetDict(data), losses


def _length_batch_sampler():
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class LengthBatchSampler(DefaultBatchSampler):
        """Batches of similar length, in random order: a batch pads to its longest text, and the
        pairs run from 3-word messages to 128-token paragraphs."""

        def __init__(self, dataset, batch_size, drop_last, **kwargs):
            super().__init__(dataset, batch_size, drop_last, **kwargs)
            column = dataset.column_names[0]
            self.lengths = [len(t) for t in dataset[column]]

        def _batches(self) -> list[list[int]]:
            rng = random.Random(self.seed + getattr(self, "epoch", 0))
            order = list(range(len(self.lengths)))
            rng.shuffle(order)
            mega = 50 * self.batch_size  # sort within random windows, so batches still mix sources
            batches = []
            for a in range(0, len(order), mega):
                window = sorted(order[a : a + mega], key=self.lengths.__getitem__)
                batches += [window[b : b + self.batch_size] for b in range(0, len(window), self.batch_size)]
            if self.drop_last:
                batches = [b for b in batches if len(b) == self.batch_size]
            rng.shuffle(batches)
            return batches

        def __iter__(self):
            yield from self._batches()

        def __len__(self) -> int:
            return len(self._batches())

    return LengthBatchSampler


def _check_trainer_installed() -> None:
    import importlib.util

    missing = [m for m in ("datasets", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise NotesRagError(
            f"align-train needs {' and '.join(missing)}, which sentence-transformers' trainer uses: "
            "pip install 'notes-rag[align]'"
        )


def train_alignment(model, pairs: list[Pair], cfg: AlignTrainConfig, out: Path, base_id: str) -> Path:
    """Fine-tune `model` (a SentenceTransformer, changed in place) on `pairs`; write the delta
    of its trained layers to `out/encoder-delta.safetensors` (snapshots while it trains) and
    return that path."""
    import torch

    _check_trainer_installed()
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    model.max_seq_length = cfg.max_seq_length
    trainable = freeze_for_delta(model, cfg.layers)
    n_layers = len(model[0].auto_model.encoder.layer)
    names = layer_names(range(n_layers - cfg.layers, n_layers), model[0].auto_model.state_dict())
    rows = training_rows(pairs, cfg)
    dataset, loss = _datasets(model, rows, cfg)
    delta = out / "encoder-delta.safetensors"
    meta = {"training": asdict(cfg), "pairs": len(pairs), "examples": len(rows), "trainable": trainable}
    start = time.perf_counter()

    def save(step: int) -> None:
        state = model[0].auto_model.state_dict()
        minutes = (time.perf_counter() - start) / 60
        write_delta(delta, {n: state[n] for n in names}, base_id, {**meta, "step": step, "minutes": round(minutes, 1)})

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % cfg.save_every == 0:
                save(state.global_step)
            if time.perf_counter() - start > cfg.time_budget_s:
                log.info("time budget reached at step %d", state.global_step)
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            elapsed = time.perf_counter() - start
            print(json.dumps({"step": state.global_step, "s": round(elapsed), **(logs or {})}), flush=True)

    LengthBatchSampler = _length_batch_sampler()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,  # a float below 1: a share of the steps (transformers 5)
        logging_steps=10,
        save_strategy="no",  # the callback writes the (small) delta instead of full checkpoints
        report_to="none",
        seed=cfg.seed,
        dataloader_drop_last=True,
        batch_sampler=LengthBatchSampler,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[Snapshots()]
    )
    result = trainer.train()
    save(result.global_step)
    return delta


def heldout_scores(encoder, pairs: list[Pair]) -> dict:
    """Cross-lingual retrieval among held-out pairs: each text's translation among all the other
    language's texts (accuracy@1 both ways), and in a mixed pool of both languages with the
    text's own original removed (`mixed@1`: does the translation beat every same-language text,
    the bias that loses Polish notes to English ones)."""
    en_q, pl_q = encode_queries(encoder, [p.en for p in pairs]), encode_queries(encoder, [p.pl for p in pairs])
    en_d, pl_d = encode_passages(encoder, [p.en for p in pairs]), encode_passages(encoder, [p.pl for p in pairs])
    n = len(pairs)
    gold = np.arange(n)

    def acc(q, d):
        return float((np.argmax(q @ d.T, axis=1) == gold).mean())

    scores = {"pairs": n, "en_to_pl@1": acc(en_q, pl_d), "pl_to_en@1": acc(pl_q, en_d)}
    return scores | _mixed(en_q, pl_q, en_d, pl_d)


def _mixed(en_q, pl_q, en_d, pl_d) -> dict:
    out = {}
    for name, q, other, same in (("en_mixed@1", en_q, pl_d, en_d), ("pl_mixed@1", pl_q, en_d, pl_d)):
        scores = np.concatenate([q @ other.T, q @ same.T], axis=1)
        n = len(q)
        scores[np.arange(n), n + np.arange(n)] = -np.inf  # the query's own text is not a candidate
        out[name] = float((np.argmax(scores, axis=1) == np.arange(n)).mean())
    return out
