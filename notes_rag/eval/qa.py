"""Evaluation of retrieval and answers on a QA file: loading, scoring rules, the runner, summaries.

The QA format is JSON Lines, one item a line::

    {"id": "d01", "lang": "pl", "question": "...", "must": [["audio", "obraz"]], "evidence": "..."}
    {"id": "dm1", "lang": "en", "turns": ["first question", "follow-up"], "must": ..., "evidence": ...}
    {"id": "dx1", "lang": "en", "question": "...", "answerable": false}

`must` is a list of key-fact groups; an answer passes a group when it contains any of the group's
alternatives. `evidence` occurs verbatim in one of the notes. With `turns`, the last turn is the
one scored. Items are answerable unless `"answerable": false`.

Everything here works on plain data, so it can be tested without an index or a model: the runner
(`run_eval`) takes a `retrieve_fn(turns) -> Retrieval` and an optional
`answer_fn(turns) -> AnswerRecord`; the CLI (`cli_eval.py`) wires them to the real retriever and
answer pipeline. Next to the GPT's answers the runner scores an extractive baseline (the
best-matching sentence of the top retrieved chunk), so the value the model adds is visible.

Matching rules (documented for users in docs/EVAL.md):
- text is *folded* before any comparison: Unicode case folding, diacritics removed (ą→a, ł→l,
  ó→o, ...), whitespace runs collapsed. Key facts match as substrings of the folded answer.
- evidence is compared as a sequence of *words*: maximal runs of letters and digits of the folded
  text, so markdown, punctuation and line breaks between words do not matter. A chunk *contains*
  the evidence when the evidence's words occur in it contiguously. Evidence that straddles a chunk
  boundary leaves a prefix of its words at the end of one chunk and a suffix at the start of the
  next (after the heading path, when the chunk text opens with one). So a chunk also counts as a
  hit when it ends with a prefix, or has a line starting with a suffix, of the evidence's words
  covering at least 60% of them and at least `MIN_PARTIAL_WORDS` words. Runs elsewhere, or of one
  or two common words, would be coincidences (a book title repeated in another note), not the
  evidence.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from notes_rag.errors import NotesRagError

# Retrieval is scored to this depth (MRR@10); hit@k for k in HIT_AT.
RETRIEVAL_DEPTH = 10
HIT_AT = (1, 3, 5)
# A straddling evidence needs this share of its words in one chunk, as a prefix or a suffix ...
PARTIAL_SHARE = 0.6
# ... and at least this many words: "embedding vectors" alone occurs in half the notes.
MIN_PARTIAL_WORDS = 3

# Letters that Unicode does not decompose into base letter + combining mark.
_EXTRA_FOLD = str.maketrans({"ł": "l", "Ł": "l", "ø": "o", "đ": "d", "ß": "ss"})
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ---------------------------------------------------------------------------------------------
# QA file


@dataclass
class EvalItem:
    id: str
    lang: str
    turns: list[str]  # the user's questions, oldest first; the last one is scored
    must: list[list[str]]  # key-fact groups of alternatives (empty for unanswerable items)
    evidence: str | None  # None for unanswerable items
    answerable: bool = True
    line: int = 0  # 1-based line in the QA file, for messages

    @property
    def multi_turn(self) -> bool:
        return len(self.turns) > 1


def _str_list(value, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings")
    return value


def parse_item(obj, line: int = 0) -> EvalItem:
    """One QA record → `EvalItem`; raises ValueError with what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    for key in ("id", "lang"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ValueError(f'"{key}" must be a non-empty string')
    if ("question" in obj) == ("turns" in obj):
        raise ValueError('give exactly one of "question" or "turns"')
    if "question" in obj:
        if not isinstance(obj["question"], str) or not obj["question"].strip():
            raise ValueError('"question" must be a non-empty string')
        turns = [obj["question"]]
    else:
        turns = _str_list(obj["turns"], '"turns"')
    answerable = obj.get("answerable", True)
    if not isinstance(answerable, bool):
        raise ValueError('"answerable" must be true or false')
    must, evidence = [], None
    if answerable:
        if not isinstance(obj.get("must"), list) or not obj["must"]:
            raise ValueError('"must" must be a non-empty list of groups (lists of strings)')
        must = [_str_list(g, f'"must" group {i + 1}') for i, g in enumerate(obj["must"])]
        evidence = obj.get("evidence")
        if not isinstance(evidence, str) or not words(evidence):
            raise ValueError('"evidence" must be a string with at least one word')
    return EvalItem(obj["id"], obj["lang"], turns, must, evidence, answerable, line)


def load_items(path: Path) -> list[EvalItem]:
    """Read a QA JSONL file; a malformed line raises `NotesRagError` naming file and line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotesRagError(f"QA file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise NotesRagError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    items, seen = [], {}
    for n, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = parse_item(json.loads(text), n)
        except json.JSONDecodeError as e:
            raise NotesRagError(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None
        except ValueError as e:
            raise NotesRagError(f"{path}:{n}: {e}") from None
        if item.id in seen:
            raise NotesRagError(f'{path}:{n}: duplicate id "{item.id}" (first on line {seen[item.id]})')
        seen[item.id] = n
        items.append(item)
    if not items:
        raise NotesRagError(f"{path}: no QA items")
    return items


# ---------------------------------------------------------------------------------------------
# Matching rules


def fold(text: str) -> str:
    """Case-fold, strip diacritics (ą→a, ł→l) and collapse whitespace, for lenient matching."""
    text = unicodedata.normalize("NFKD", text.casefold().translate(_EXTRA_FOLD))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Folded words: maximal runs of letters and digits (markdown and punctuation drop out)."""
    return _WORD.findall(fold(text))


def group_passes(answer: str, group: list[str]) -> bool:
    folded = fold(answer)
    return any(fold(alt) in folded for alt in group)


def score_groups(answer: str, must: list[list[str]]) -> list[bool]:
    return [group_passes(answer, g) for g in must]


def _contains_run(hay: list[str], run: list[str]) -> bool:
    n = len(run)
    return any(hay[i : i + n] == run for i in range(len(hay) - n + 1))


def _line_starts(text: str) -> set[int]:
    """Word offsets at which the lines of `text` begin."""
    starts, offset = set(), 0
    for line in text.splitlines():
        starts.add(offset)
        offset += len(words(line))
    return starts


def evidence_coverage(evidence: str, chunk: str) -> float:
    """Share of the evidence's words that `chunk` holds: 1.0 when it contains them contiguously;
    else the longest run of at least `MIN_PARTIAL_WORDS` words that is a prefix of the evidence
    ending the chunk, or a suffix of the evidence starting one of its lines (the body may follow
    a heading path); else 0. Only such edge runs count: that is how a chunk boundary cuts it."""
    ev, hay = words(evidence), words(chunk)
    if not ev:
        return 0.0
    if _contains_run(hay, ev):
        return 1.0
    starts = _line_starts(chunk)
    for n in range(min(len(ev), len(hay) + 1) - 1, MIN_PARTIAL_WORDS - 1, -1):
        suffix = ev[-n:]
        if hay[-n:] == ev[:n] or any(hay[i : i + n] == suffix for i in starts):
            return n / len(ev)
    return 0.0


def is_hit(evidence: str, chunk: str) -> bool:
    """A retrieved chunk counts as a hit when it holds the evidence, or ≥60% of a straddling one."""
    # The epsilon keeps exact shares such as 3/5 from failing on float rounding.
    return evidence_coverage(evidence, chunk) >= PARTIAL_SHARE - 1e-9


def first_hit_rank(evidence: str, chunks: list[str], depth: int = RETRIEVAL_DEPTH) -> int | None:
    """1-based rank of the first chunk that is a hit, within `depth`; None if there is none."""
    for rank, chunk in enumerate(chunks[:depth], start=1):
        if is_hit(evidence, chunk):
            return rank
    return None


def _stems(text: str) -> set[str]:
    # A 5-letter prefix is a crude stem that survives Polish inflection (modelu/modele → model).
    return {w[:5] for w in words(text) if len(w) >= 3}


def sentences(text: str) -> list[str]:
    """Sentences of a chunk: its lines split after . ! ?; markdown heading lines are titles that
    echo the question's topic without answering it, so they are not candidates."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        out.extend(s.strip() for s in _SENTENCE_END.split(line) if words(s))
    return out


def best_sentence(question: str, chunk: str) -> str:
    """The sentence of `chunk` sharing the most word stems with the question (first on ties)."""
    q = _stems(question)
    best, best_score = "", -1
    for s in sentences(chunk):
        score = len(q & _stems(s))
        if score > best_score:
            best, best_score = s, score
    return best


def evidence_files(evidence: str, chunks: Iterable[tuple[str, str]]) -> list[str]:
    """Files (in first-seen order) whose chunks hold the evidence, by the same hit rule."""
    found: list[str] = []
    for file, text in chunks:
        if file not in found and is_hit(evidence, text):
            found.append(file)
    return found


def question_kind(item: EvalItem, files: list[str], file_lang: dict[str, str]) -> str:
    """same-language / cross-lingual by the question's language vs the evidence's note file(s)."""
    if not item.answerable:
        return "unanswerable"
    langs = {file_lang.get(f) for f in files} - {None}
    if not langs:
        return "evidence not found"
    return "same-language" if item.lang in langs else "cross-lingual"


# ---------------------------------------------------------------------------------------------
# Runner


@dataclass
class Passage:
    text: str
    file: str = ""


@dataclass
class Retrieval:
    """What `retrieve_fn` returns: passages best first (up to RETRIEVAL_DEPTH) and the dense
    top-1 cosine, the abstention signal (None when the retriever has no dense part)."""

    passages: list[Passage]
    top_cosine: float | None = None


@dataclass
class AnswerRecord:
    """What `answer_fn` returns for the last of the turns."""

    text: str
    abstained: bool
    cited: list[int]  # passage numbers cited in the answer, 1-based into `passages`
    passages: list[str]  # texts of the passages the model was given, in prompt order
    ttft_s: float | None = None  # time to first token
    total_s: float | None = None  # whole answer, retrieval included; measured here when None


@dataclass
class ScoredAnswer:
    text: str
    abstained: bool
    groups: list[bool]  # one per key-fact group (empty for unanswerable items)
    cited: list[int] = field(default_factory=list)
    cited_hits: list[bool] = field(default_factory=list)  # per cited number: holds the evidence
    ttft_s: float | None = None
    total_s: float | None = None
    key_facts: bool | None = field(init=False)  # all groups passed; None without groups

    def __post_init__(self):
        self.key_facts = all(self.groups) if self.groups else None


@dataclass
class ItemResult:
    id: str
    lang: str
    kind: str
    multi_turn: bool
    answerable: bool
    turns: list[str]
    evidence_files: list[str]
    retrieved_files: list[str]
    hit_rank: int | None
    retrieval_ms: float
    top_cosine: float | None
    baseline: ScoredAnswer
    answer: ScoredAnswer | None


def score_answer(item: EvalItem, rec: AnswerRecord) -> ScoredAnswer:
    hits = []
    for n in rec.cited:
        # A number outside the prompt's passages is a made-up citation: it cannot hold evidence.
        ok = item.answerable and 1 <= n <= len(rec.passages) and is_hit(item.evidence, rec.passages[n - 1])
        hits.append(bool(ok))
    return ScoredAnswer(
        text=rec.text,
        abstained=rec.abstained,
        groups=score_groups(rec.text, item.must),
        cited=list(rec.cited),
        cited_hits=hits,
        ttft_s=rec.ttft_s,
        total_s=rec.total_s,
    )


def baseline_answer(item: EvalItem, ret: Retrieval, threshold: float | None) -> ScoredAnswer:
    """Extractive baseline: abstain when the dense top-1 cosine is under the retriever's
    abstention threshold, else answer with the best-matching sentence of the top chunk."""
    abstained = not ret.passages or (
        threshold is not None and ret.top_cosine is not None and ret.top_cosine < threshold
    )
    text = "" if abstained else best_sentence(" ".join(item.turns), ret.passages[0].text)
    return ScoredAnswer(text=text, abstained=abstained, groups=score_groups(text, item.must))


def run_eval(
    items: list[EvalItem],
    retrieve_fn: Callable[[list[str]], Retrieval],
    answer_fn: Callable[[list[str]], AnswerRecord] | None = None,
    *,
    chunks: Iterable[tuple[str, str]] = (),
    file_lang: dict[str, str] | None = None,
    threshold: float | None = None,
    on_item: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Evaluate every item: retrieval, baseline and (with `answer_fn`) the model's answer.

    `chunks` are all indexed (file, text) pairs, used to find the file holding each evidence;
    `file_lang` maps a file to its language, for the same-language / cross-lingual split.
    """
    chunks = list(chunks)
    file_lang = file_lang or {}
    results = []
    for item in items:
        t0 = time.perf_counter()
        ret = retrieve_fn(item.turns)
        retrieval_ms = (time.perf_counter() - t0) * 1000
        texts = [p.text for p in ret.passages[:RETRIEVAL_DEPTH]]
        files = evidence_files(item.evidence, chunks) if item.answerable else []
        answer = None
        if answer_fn is not None:
            t0 = time.perf_counter()
            rec = answer_fn(item.turns)
            if rec.total_s is None:
                rec.total_s = time.perf_counter() - t0
            answer = score_answer(item, rec)
        result = ItemResult(
            id=item.id,
            lang=item.lang,
            kind=question_kind(item, files, file_lang),
            multi_turn=item.multi_turn,
            answerable=item.answerable,
            turns=item.turns,
            evidence_files=files,
            retrieved_files=[p.file for p in ret.passages[:RETRIEVAL_DEPTH]],
            hit_rank=first_hit_rank(item.evidence, texts) if item.answerable else None,
            retrieval_ms=retrieval_ms,
            top_cosine=ret.top_cosine,
            baseline=baseline_answer(item, ret, threshold),
            answer=answer,
        )
        results.append(result)
        if on_item is not None:
            on_item(result)
    return results


# ---------------------------------------------------------------------------------------------
# Summaries


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def _answer_metrics(pairs: list[tuple[ItemResult, ScoredAnswer]]) -> dict:
    ans = [(r, a) for r, a in pairs if r.answerable]
    unans = [a for r, a in pairs if not r.answerable]
    groups = [g for _, a in ans for g in a.groups]
    answered = [a for _, a in ans if not a.abstained]
    cited = [h for a in answered for h in a.cited_hits]
    return {
        "key_fact_recall": _ratio(sum(bool(a.key_facts) for _, a in ans), len(ans)),
        "group_recall": _ratio(sum(groups), len(groups)),
        "abstention_accuracy": _ratio(sum(a.abstained for a in unans), len(unans)),
        "false_abstention": _ratio(sum(a.abstained for _, a in ans), len(ans)),
        "citation_precision": _ratio(sum(cited), len(cited)),
        "answers_citing": _ratio(sum(bool(a.cited) for a in answered), len(answered)),
    }


def summarize(results: list[ItemResult]) -> dict:
    """Aggregate metrics of a set of results (None where a metric has no items to count)."""
    answerable = [r for r in results if r.answerable]
    ranks = [r.hit_rank for r in answerable]
    out = {
        "n": len(results),
        "n_answerable": len(answerable),
        "retrieval": {
            **{f"hit@{k}": _ratio(sum(x is not None and x <= k for x in ranks), len(ranks)) for k in HIT_AT},
            f"mrr@{RETRIEVAL_DEPTH}": _ratio(sum(1 / x for x in ranks if x is not None), len(ranks)),
        },
        "baseline": _answer_metrics([(r, r.baseline) for r in results]),
        "answer": None,
    }
    with_answers = [(r, r.answer) for r in results if r.answer is not None]
    if with_answers:
        out["answer"] = _answer_metrics(with_answers)
    ms = [r.retrieval_ms for r in results]
    ttft = [a.ttft_s for _, a in with_answers if a.ttft_s is not None]
    total = [a.total_s for _, a in with_answers if a.total_s is not None]
    out["latency"] = {
        "retrieval_ms_p50": _percentile(ms, 0.5),
        "retrieval_ms_p95": _percentile(ms, 0.95),
        "ttft_s_p50": _percentile(ttft, 0.5),
        "ttft_s_p95": _percentile(ttft, 0.95),
        "total_s_p50": _percentile(total, 0.5),
        "total_s_mean": statistics.fmean(total) if total else None,
    }
    return out


# Breakdowns reported next to "overall": name → function giving an item's group.
BREAKDOWNS: dict[str, Callable[[ItemResult], str]] = {
    "language": lambda r: r.lang,
    "kind": lambda r: r.kind,
    "turns": lambda r: "multi-turn" if r.multi_turn else "single-turn",
}


def report(results: list[ItemResult], meta: dict | None = None) -> dict:
    """The JSON-ready report: run metadata, overall and per-group summaries, per-item results."""
    breakdowns = {}
    for name, key in BREAKDOWNS.items():
        groups: dict[str, list[ItemResult]] = {}
        for r in results:
            groups.setdefault(key(r), []).append(r)
        breakdowns[name] = {g: summarize(rs) for g, rs in sorted(groups.items())}
    return {
        "meta": meta or {},
        "overall": summarize(results),
        "breakdowns": breakdowns,
        "items": [asdict(r) for r in results],
    }
