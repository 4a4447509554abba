"""Which line answers: a learned scorer over the retrieval encoder's unit vectors and note structure.

Ranked by the encoder's cosine alone, the first unit is often a heading or lead-in that restates
the question, and the answer is in the lines after it (issue 29: on notes_qa's train notes the
top cosine unit holds the answer for 0.28 of the questions). This scorer ranks units by how
likely they hold the answer, from what the encoder sees of each unit *and of its neighbours*:

- scalar features (`FEATURES`): the unit's cosine, its neighbours' and its title line's, its and
  its neighbours' cosine ranks, whether it looks like a title, its place and length, the share of
  the question's words it and the unit before it hold, the passage it is in;
- two learned linear terms over the vectors: `a · (q ∘ u)` (which dimensions of agreement mean
  "answers", not only "is about") and `b · u` (what an answer line looks like).

score = w2 · gelu(W1 · features + b1) + b2 + a · (q ∘ u) + b · u

It is computed once per turn in numpy (no torch in the chat), from the vectors retrieval already
has (the question's, and the units' stored with the index). Its weights (`unit-scorer.json`
beside this module) are fitted by `benchmarks/unit_scorer_fit.py` with a listwise softmax over
the units read, on notes_qa's train notes only (never its val/test notes, never dev).

The chat weighs our GPT's choice of the first unit an answer copies with it (chat/turn_input.py
`unit_prior`, model/unit_copy.py): the model knows note structure, the scorer what the encoder
sees of each line. The model reads the cosine's relevance codes, not these scores, so a refit
scorer needs no retrained model (docs/GENERATOR.md, "The unit scorer as the first unit's prior").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.text import looks_like_title, words

PACKAGED = Path(__file__).with_name("unit-scorer.json")
FEATURES = (
    "cos", "cos_gap", "cos_prev", "cos_next", "cos_prev2", "cos_next2", "cos_title",
    "rank1", "rank3", "rank5", "log_rank", "prev_rank1", "prev2_rank1", "prev_rank3", "prev2_rank3",
    "next_rank1", "is_title", "first", "pos", "log_words", "colon", "digit",
    "passage1", "passage2", "passage3", "lexical", "lexical_prev", "short", "after_title",
)  # fmt: skip


def _gelu(x: np.ndarray) -> np.ndarray:
    """tanh GELU, as the fit's torch.nn.GELU(approximate="tanh")."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _prefixes(text: str) -> set[str]:
    return {w[:5] for w in words(text) if len(w) > 3}


def unit_features(query: str, units: list[list[str]], cosines: list[list[float]]) -> np.ndarray:
    """(n units, len(FEATURES)) float32, units of all passages in reading order."""
    flat = [(p, i, u, c) for p, (us, cs) in enumerate(zip(units, cosines)) for i, (u, c) in enumerate(zip(us, cs))]
    n = len(flat)
    if not n:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    c = np.array([x[3] for x in flat], dtype=np.float64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-c, kind="stable")] = np.arange(1, n + 1)
    lo, qw = float(c.min()), _prefixes(query)
    starts = np.cumsum([0] + [len(us) for us in units])

    def lexical(text: str) -> float:
        return len(qw & _prefixes(text)) / max(1, len(qw))

    rows = []
    for k, (p, i, u, ck) in enumerate(flat):
        base, size = starts[p], len(units[p])

        def cos_at(j: int, base: int = base, size: int = size) -> float:
            return c[base + j] if 0 <= j < size else lo

        def rank_at(j: int, base: int = base, size: int = size) -> int:
            return int(rank[base + j]) if 0 <= j < size else 99

        title = next((j for j in range(i - 1, -1, -1) if looks_like_title(units[p][j])), None)
        n_w = len(words(u))
        rows.append(
            [
                ck,
                ck - c.max(),
                cos_at(i - 1),
                cos_at(i + 1),
                cos_at(i - 2),
                cos_at(i + 2),
                cos_at(title) if title is not None else lo,
                rank[k] == 1,
                rank[k] <= 3,
                rank[k] <= 5,
                math.log(rank[k]),
                rank_at(i - 1) == 1,
                rank_at(i - 2) == 1,
                rank_at(i - 1) <= 3,
                rank_at(i - 2) <= 3,
                rank_at(i + 1) == 1,
                looks_like_title(u),
                i == 0,
                min(i, 10) / 10,
                math.log1p(n_w),
                u.rstrip().endswith(":"),
                any(ch.isdigit() for ch in u),
                p == 0,
                p == 1,
                p == 2,
                lexical(u),
                lexical(units[p][i - 1]) if i > 0 else 0.0,
                n_w <= 2,
                title is not None and title == i - 1,
            ]  # fmt: skip
        )
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class UnitScorer:
    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H,)
    b2: float
    agree: np.ndarray | None  # (d,): weights of q ∘ u; None: no vector terms
    looks: np.ndarray | None  # (d,): weights of u

    @classmethod
    def load(cls, path: Path = PACKAGED) -> UnitScorer:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if tuple(data["features"]) != FEATURES:
                raise ValueError(f"fitted for features {data['features']}, not {list(FEATURES)}")
            arr = {k: np.asarray(data[k], dtype=np.float32) for k in ("w1", "b1", "w2")}
            vec = {k: None if data.get(k) is None else np.asarray(data[k], np.float32) for k in ("agree", "looks")}
            scorer = cls(arr["w1"], arr["b1"], arr["w2"], float(data["b2"]), vec["agree"], vec["looks"])
            if scorer.w1.shape != (len(FEATURES), len(scorer.b1)) or scorer.w2.shape != scorer.b1.shape:
                raise ValueError("weight shapes do not match")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise NotesRagError(f"cannot read the unit scorer weights {path}: {e}") from None
        return scorer

    @classmethod
    def by_cosine(cls) -> UnitScorer:
        """A scorer that orders units by their cosine alone (no vector terms): the ranking before
        this scorer, for encoders it was not fitted for (tests' tiny ones)."""
        w1 = np.zeros((len(FEATURES), 1), dtype=np.float32)
        w1[FEATURES.index("cos"), 0] = 1.0
        # +3 keeps cos (-1..1) where the GELU rises monotonically
        return cls(w1, np.array([3.0], np.float32), np.ones(1, np.float32), 0.0, None, None)

    def to_json(self, **about) -> dict:
        vec = {k: (None if v is None else v.tolist()) for k, v in (("agree", self.agree), ("looks", self.looks))}
        return {"features": list(FEATURES), **about, "w1": self.w1.tolist(), "b1": self.b1.tolist(),
                "w2": self.w2.tolist(), "b2": self.b2, **vec}  # fmt: skip

    def scores(self, features: np.ndarray, q: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(n,) scores of n units: `features` from `unit_features`, `q` the question's vector,
        `vectors` (n, d) the units'."""
        x = _gelu(features @ self.w1 + self.b1) @ self.w2 + self.b2
        if self.agree is not None:
            if vectors.shape[1] != len(self.agree):
                raise NotesRagError(
                    f"the unit scorer was fitted for {len(self.agree)}-d encoder vectors, the index's encoder gives "
                    f"{vectors.shape[1]}: refit it with benchmarks/unit_scorer_fit.py"
                )
            x = x + (vectors * q[None, :]) @ self.agree + vectors @ self.looks
        return x.astype(np.float32)


@lru_cache(maxsize=1)
def packaged() -> UnitScorer:
    """The scorer fitted for the product's encoder (`unit-scorer.json` beside this module)."""
    return UnitScorer.load()


def for_width(dim: int) -> UnitScorer:
    """The packaged scorer for vectors of its width (the product's encoder); for an encoder of
    another width (a custom one, tests' tiny ones) its vector terms mean nothing, and units are
    ranked by cosine, as before the scorer (the abstention threshold is likewise calibrated for
    the default encoder only, index/search.py)."""
    scorer = packaged()
    return scorer if scorer.agree is None or len(scorer.agree) == dim else UnitScorer.by_cosine()
