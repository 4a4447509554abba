"""Length-bucketed micro-batches: seeded, resumable, the same plan on every rank.

Finetuning conversations and generator items vary from ~100 to ~1,000 tokens. Each epoch the
items are shuffled, sorted by length within chunks of 512, and cut into micro-batches whose
padded size (longest × count) stays within `micro_tokens`; the batches are then shuffled. So
little compute goes to padding and none to attention across unrelated items. A source subclass
turns a list of item indices into tensors (`collate`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 512  # items sorted by length together


class LengthBatches:
    """The batch plan and the position in it; `state_dict` is all a resumed run needs."""

    def __init__(self, lengths: list[int], micro_tokens: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.lengths, self.micro_tokens = lengths, micro_tokens
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.cursor = 0, 0
        self._batches = self._plan()

    def _plan(self) -> list[list[int]]:
        """This epoch's micro-batches: shuffle, sort within chunks by length, cut by token budget."""
        rng = np.random.default_rng(self.seed + 7919 * self.epoch)
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), CHUNK):
            chunk = sorted(order[start : start + CHUNK], key=lambda i: self.lengths[i])
            cur: list[int] = []
            for i in chunk:
                longest = max([self.lengths[j] for j in cur] + [self.lengths[i]])
                if cur and longest * (len(cur) + 1) > self.micro_tokens:
                    batches.append(cur)
                    cur = []
                cur.append(int(i))
            if cur:
                batches.append(cur)
        rng.shuffle(batches)
        return batches[self.rank :: self.world]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._batches = self._plan()

    def next_indices(self) -> list[int]:
        """The next micro-batch's items; a new epoch (a new plan) when this one is used up."""
        if self.cursor >= len(self._batches):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._batches = self._plan()
        idx = self._batches[self.cursor]
        self.cursor += 1
        return idx

    def all_indices(self) -> Iterator[list[int]]:
        """Every micro-batch of the current epoch's plan (validation), without moving the cursor."""
        yield from self._plan()
