"""The answer pipeline: one turn of retrieval + prompt assembly + generation, for chat, ask and eval.

    assistant = Assistant.open(index=None, model=None)          # ./.notes-rag and the repo's models/
    answer = assistant.ask(history_turns, "Kto zaproponował model neuronu?")
    for piece in assistant.stream(history_turns, question): ...  # str pieces, then the Answer

A turn: retrieve with the user's previous questions as context (`search_conversation`, so "In
which year?" finds the notes the conversation is about); when the dense top-1 cosine is under
the calibrated threshold, answer with the abstention string without running the model (a small
model answers whatever it is given, so it cannot be trusted to notice missing evidence), but
still return the closest passages. Otherwise fit system prompt + passages + recent turns into
the context minus the answer's reserve (`fit_prompt`), generate until ``<|end|>``, and parse
abstention and citations from the text.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from notes_rag.chat.format import (
    ABSTAIN,
    SYSTEM_PROMPT,
    Conversation,
    Passage,
    Turn,
    extract_citations,
    is_abstention,
    render,
    render_prompt,
    strip_citations,
)
from notes_rag.model.checkpoint import CONFIG_FILE, load_model, resolve_folder
from notes_rag.model.engine import CopyBias, SamplingConfig, generate, stream_text
from notes_rag.errors import NotesRagError
from notes_rag.eval.qa import best_sentence, words
from notes_rag.lang import detect_lang
from notes_rag.model.tokenizer import SPECIAL_TOKENS, Tokenizer


@dataclass
class AnswerConfig:
    k: int = 4  # passages retrieved and given to the model
    mode: str = "hybrid"  # retrieval: hybrid | dense | bm25
    # Greedy: the model is trained to copy a sentence from a passage; sampling only adds errors.
    temperature: float = 0.0
    max_new_tokens: int = 120
    answer_reserve: int | None = None  # context kept free for the answer; None = max_new_tokens
    system: str | None = None  # system prompt override; None = SYSTEM_PROMPT in the conversation's language
    abstain_threshold: float | None = None  # dense top-1 cosine; None = the retriever's calibrated one
    # Exchanges kept even when passages must be trimmed for them: an elliptic follow-up ("A Llama
    # 3?") means nothing without the exchange before it.
    keep_last_exchanges: int = 1
    min_passage_tokens: int = 48  # passages are never trimmed below this; lower-ranked ones go first
    seed: int | None = None  # sampling seed when temperature > 0
    # Logit bonus for continuing a span of the prompt (engine.CopyBias); 0 turns it off.
    copy_boost: float = 3.0
    # Who decides to abstain: "model" (the model may answer with the abstention string) or
    # "retrieval" (only the calibrated retrieval threshold abstains; the model must answer).
    abstain_by: str = "retrieval"
    # Grounding guard: a non-abstaining answer whose content words are mostly absent from the
    # prompt's passages is not shown as the answer; the best-matching passage sentence is quoted
    # instead (and the model's text kept in `Answer.ungrounded_text`). 0 turns the guard off.
    min_grounding: float = 0.6

    @property
    def reserve(self) -> int:
        return self.max_new_tokens if self.answer_reserve is None else self.answer_reserve


@dataclass
class Source:
    rank: int  # = the passage number in the prompt
    file: str
    line_start: int
    line_end: int
    heading: str  # heading path joined with " › "
    score: float
    text: str

    @property
    def lines(self) -> str:
        return f"{self.line_start}-{self.line_end}"

    @property
    def label(self) -> str:
        """The passage label of the chat format: `file › heading path`."""
        return f"{self.file} › {self.heading}" if self.heading else self.file


@dataclass
class PromptPlan:
    """What went into the prompt, for `/debug` and `--verbose`."""

    ids: list[int]
    system: str
    passages: int  # passages kept (the first ones by rank)
    dropped_passages: int
    passage_tokens: list[int]  # text tokens of each kept passage in the prompt ...
    passage_tokens_full: list[int]  # ... and before trimming
    turns: list[Turn]  # earlier turns kept, oldest first
    dropped_turns: int
    tokens: dict[str, int]  # system, passages, history, question, total, budget, context

    @property
    def trimmed(self) -> bool:
        return self.passage_tokens != self.passage_tokens_full

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("ids")
        return d


@dataclass
class Timings:
    retrieval_ms: float
    ttft_s: float  # question to first answer token: retrieval and prefill included
    tokens_per_s: float | None  # decode speed after the first token
    total_s: float
    new_tokens: int = 0


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    abstain_reason: str | None  # "retrieval" (cosine under threshold) | "model" | None
    lang: str
    sources: list[Source]  # retrieved passages, rank order (shown even when abstaining)
    cited: list[int]  # valid passage numbers cited, in order
    invalid_citations: list[int]  # numbers cited that name no passage of the prompt (dropped)
    top_cosine: float
    threshold: float | None
    timings: Timings
    prompt: PromptPlan | None  # None when retrieval abstained and the model did not run
    model_id: str = ""
    index_id: str = ""
    ungrounded_text: str | None = None  # the model's answer when the grounding guard replaced it

    @property
    def prompt_passages(self) -> list[Source]:
        return self.sources[: self.prompt.passages] if self.prompt else self.sources

    def to_dict(self) -> dict:
        """The `ask --json` schema."""
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
            "lang": self.lang,
            "sources": [
                {"rank": s.rank, "file": s.file, "lines": s.lines, "line_start": s.line_start,
                 "line_end": s.line_end, "heading": s.heading, "score": s.score, "text": s.text}
                for s in self.sources
            ],
            "cited": self.cited,
            "top_cosine": self.top_cosine,
            "threshold": self.threshold,
            "timings": asdict(self.timings),
            "prompt": None if self.prompt is None else self.prompt.to_dict(),
            "model": self.model_id,
            "index": self.index_id,
            "ungrounded_model_answer": self.ungrounded_text,
        }


# -- grounding guard -----------------------------------------------------------------------------

def grounding(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words (3+ letters, folded) that occur in the passages."""
    content = [w for w in words(strip_citations(answer)) if len(w) >= 3]
    if not content:
        return 0.0
    vocab = {w for p in passages for w in words(p)}
    return sum(w in vocab for w in content) / len(content)


def quote_best_sentence(question: str, passages: list[str]) -> str:
    """The passage sentence that best matches the question, cited; searched in rank order."""
    best, best_n, best_score = "", 1, -1.0
    q = {w for w in words(question) if len(w) >= 3}
    for n, text in enumerate(passages, 1):
        sentence = best_sentence(question, text)
        score = len(q & set(words(sentence))) - 0.01 * n  # ties go to the higher-ranked passage
        if sentence and score > best_score:
            best, best_n, best_score = sentence, n, score
    return f"{best} [{best_n}]" if best else ""


# -- model location ------------------------------------------------------------------------------

def default_model_dir() -> Path:
    """The release model: `models/` at the root of the repository the package lives in."""
    return Path(__file__).resolve().parent.parent / "models"


def resolve_model(model: Path | None) -> Path:
    """`--model DIR` if given, else the repository's `models/` when it holds a checkpoint."""
    if model is not None:
        return Path(model)
    folder = default_model_dir()
    if (resolve_folder(folder) / CONFIG_FILE).is_file():
        return folder
    raise NotesRagError(
        f"no model in {folder}; pass --model DIR (e.g. --model runs/sft/best) or train one with "
        "notes-rag pretrain and notes-rag finetune, then copy its best/ folder to models/"
    )


def model_id(folder: Path, config: dict) -> str:
    """`<stage>-step<N>-<hash of config.json>`: names the checkpoint in reports."""
    meta = config.get("meta", {})
    digest = hashlib.sha256((resolve_folder(Path(folder)) / CONFIG_FILE).read_bytes()).hexdigest()[:8]
    return f"{meta.get('stage', 'model')}-step{meta.get('step', '?')}-{digest}"


def index_id(index_dir: Path) -> str:
    from notes_rag.index import store as index_store  # FAISS: only when an index is opened

    gen = index_store.current_generation(Path(index_dir))
    return f"{Path(index_dir).resolve()}:{gen.name if gen else '?'}"


# -- prompt assembly -----------------------------------------------------------------------------

def _exchanges(turns: Sequence[Turn]) -> list[list[Turn]]:
    """Group turns into exchanges, each starting at a user turn (dropped as a unit)."""
    out: list[list[Turn]] = []
    for t in turns:
        if t.role == "user" or not out:
            out.append([])
        out[-1].append(t)
    return out


def _cut(tok: Tokenizer, text: str, n: int) -> str:
    """The text of the first `n` tokens of `text`, without a split character at the end."""
    return b"".join(tok.token_bytes(i) for i in tok.encode(text)[:n]).decode("utf-8", errors="ignore")


def fit_prompt(
    tok: Tokenizer,
    system: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    question: str,
    context: int,
    reserve: int,
    keep_last_exchanges: int = 1,
    min_passage_tokens: int = 48,
    top_weight: float = 2.0,
) -> PromptPlan:
    """The prompt that fits `context - reserve` tokens, giving up as little as possible.

    Order of sacrifices: the oldest exchanges (down to `keep_last_exchanges`), then the passages'
    tails, then the remaining exchanges, then the lowest-ranked passages. Trimming cuts the
    longest passages to a common length, the top passage (the likeliest to hold the answer) to
    `top_weight` times that; cutting lower-ranked ones to nothing first would lose the answer
    whenever it is not at rank 1, cutting all alike loses it when rank 1 is long. Raises when
    the question alone is too long.
    """
    budget = context - reserve
    base = len(render(Conversation(system), tok)[0])
    empty = len(render(Conversation(""), tok)[0])
    heads = [len(render(Conversation("", [p]), tok, 0)[0]) - empty for p in passages]
    bodies = [len(tok.encode(p.text)) for p in passages]
    exchanges = _exchanges(history)
    ex_len = [sum(2 + len(tok.encode(t.content)) for t in ex) for ex in exchanges]
    q_len = 2 + len(tok.encode(question)) + 1  # <|user|> … <|end|><|assistant|>

    def history_len(n_ex: int) -> int:
        return sum(ex_len[len(ex_len) - n_ex:]) if n_ex else 0

    def trimmed(n_ex: int, n_p: int) -> list[int] | None:
        """Body lengths of the first n_p passages cut to fit, or None if they cannot: the longest
        are cut first, to a common cap (the top passage's is `top_weight` times larger), none below
        `min_passage_tokens`."""
        avail = budget - base - history_len(n_ex) - sum(heads[:n_p]) - q_len
        weights = [top_weight] + [1.0] * (n_p - 1)

        def lengths(cap: int) -> list[int]:
            return [min(b, max(min_passage_tokens, int(w * cap))) for b, w in zip(bodies[:n_p], weights)]

        lo, hi = 0, max(bodies[:n_p], default=0)
        if sum(lengths(lo)) > avail:
            return None
        while lo < hi:  # the largest cap that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sum(lengths(mid)) <= avail else (lo, mid - 1)
        return lengths(lo)

    n_all, p_all = len(exchanges), len(passages)
    keep = min(keep_last_exchanges, n_all)
    plans = [(e, p_all, False) for e in range(n_all, keep - 1, -1)]
    plans += [(e, p_all, True) for e in range(keep, -1, -1)]
    plans += [(0, p, True) for p in range(p_all - 1, -1, -1)]
    for n_ex, n_p, may_trim in plans:
        lengths = trimmed(n_ex, n_p)
        if lengths is not None and (may_trim or lengths == bodies[:n_p]):
            break
    else:
        raise NotesRagError(
            f"the question is too long: it needs {base + q_len} prompt tokens and the model has room "
            f"for {budget}; ask a shorter question"
        )
    kept_turns = [t for ex in exchanges[n_all - n_ex:] for t in ex] if n_ex else []
    kept = list(passages[:n_p])
    while True:
        for i, n in enumerate(lengths):
            if n < bodies[i]:
                kept[i] = Passage(passages[i].label, _cut(tok, passages[i].text, n))
        ids = render_prompt(Conversation(system, kept, [*kept_turns, Turn("user", question)]), tok)
        over = len(ids) - budget
        # Re-encoding a cut text can take a token more than the cut; shave the lowest cut passage.
        i = next((i for i in reversed(range(n_p)) if lengths[i] - over >= 1), None)
        if over <= 0 or i is None:
            break
        lengths[i] -= over
    if over > 0:
        raise AssertionError(f"prompt of {len(ids)} tokens over the budget {budget}")
    passage_tokens = len(ids) - base - history_len(n_ex) - q_len
    return PromptPlan(
        ids=ids, system=system, passages=n_p, dropped_passages=p_all - n_p,
        passage_tokens=[len(tok.encode(p.text)) for p in kept], passage_tokens_full=bodies[:n_p],
        turns=kept_turns, dropped_turns=sum(len(ex) for ex in exchanges[: n_all - n_ex]),
        tokens={"system": base, "passages": passage_tokens, "history": history_len(n_ex),
                "question": q_len, "total": len(ids), "budget": budget, "context": context},
    )


# -- the assistant -------------------------------------------------------------------------------

def conversation_lang(history: Sequence[Turn], question: str) -> str:
    """The conversation's language: its first question's (the system prompt is chosen by it)."""
    first = next((t.content for t in history if t.role == "user"), question)
    return detect_lang(first)


@dataclass
class Assistant:
    """Retriever + model + tokenizer + settings; `stream`/`ask` answer one turn."""

    retriever: object  # retrieve.Retriever (anything with search_conversation / abstain_threshold)
    model: object  # model.GPT
    tok: Tokenizer
    cfg: AnswerConfig = field(default_factory=AnswerConfig)
    model_id: str = ""
    index_id: str = ""

    @classmethod
    def open(cls, index: Path | None = None, model: Path | None = None, cfg: AnswerConfig | None = None,
             retriever=None) -> Assistant:
        """Load the model and (unless given) the index; errors say which command fixes them."""
        from notes_rag.index.search import Retriever, resolve_index  # loads FAISS and the encoder

        if retriever is None:
            index_dir = resolve_index(index)  # cheap checks first: fail before slow loading
        folder = resolve_model(model)
        gpt, tok, config = load_model(folder)
        if retriever is None:
            retriever = Retriever(index_dir)
        return cls(retriever, gpt, tok, cfg or AnswerConfig(), model_id(folder, config),
                   index_id(retriever.index_dir))

    @property
    def threshold(self) -> float | None:
        if self.cfg.abstain_threshold is not None:
            return self.cfg.abstain_threshold
        return self.retriever.abstain_threshold

    def system_prompt(self, lang: str) -> str:
        return self.cfg.system if self.cfg.system else SYSTEM_PROMPT[lang]

    def logit_bias(self, prompt: list[int]):
        """The decoding bias for one answer: copy bonus, and no abstention when retrieval decides."""
        copy = CopyBias(prompt, self.cfg.copy_boost) if self.cfg.copy_boost else None
        banned = set()
        if self.cfg.abstain_by == "retrieval":
            banned = {self.tok.encode(text)[0] for text in ABSTAIN.values()}
        if copy is None and not banned:
            return None

        def bias(logits, generated):
            if copy is not None:
                logits = copy(logits, generated)
            if banned and not generated:
                logits = logits.clone()
                logits[list(banned)] = float("-inf")
            return logits

        return bias

    def stream(self, history: Sequence[Turn], question: str) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they are generated, then the final `Answer`."""
        question = question.strip()
        if not question:
            raise NotesRagError("empty question")
        t0 = time.perf_counter()
        questions = [t.content for t in history if t.role == "user"]
        res = self.retriever.search_conversation([*questions, question], k=self.cfg.k, mode=self.cfg.mode)
        retrieval_ms = (time.perf_counter() - t0) * 1000
        lang = detect_lang(question, default=conversation_lang(history, question))
        sources = [
            Source(h.rank, h.file, h.line_start, h.line_end, " › ".join(h.heading_path), h.score, h.text)
            for h in res.hits
        ]
        threshold = self.threshold

        def finish(text: str, reason: str | None, plan: PromptPlan | None, ttft: float,
                   tps: float | None, n_new: int) -> Answer:
            n_passages = plan.passages if plan else 0
            cited = [] if reason else extract_citations(text)
            return Answer(
                question=question, text=text, abstained=reason is not None, abstain_reason=reason,
                lang=lang, sources=sources, cited=[c for c in cited if 1 <= c <= n_passages],
                invalid_citations=[c for c in cited if not 1 <= c <= n_passages],
                top_cosine=float(res.top_cosine), threshold=threshold,
                timings=Timings(retrieval_ms, ttft, tps, time.perf_counter() - t0, n_new),
                prompt=plan, model_id=self.model_id, index_id=self.index_id,
            )

        if not sources or (threshold is not None and res.top_cosine < threshold):
            text = ABSTAIN[lang]
            ttft = time.perf_counter() - t0
            yield text
            yield finish(text, "retrieval", None, ttft, None, 0)
            return

        plan = fit_prompt(
            self.tok, self.system_prompt(conversation_lang(history, question)),
            [Passage(s.label, s.text) for s in sources], history, question,
            context=self.model.config.seq_len, reserve=self.cfg.reserve,
            keep_last_exchanges=self.cfg.keep_last_exchanges, min_passage_tokens=self.cfg.min_passage_tokens,
        )
        sampling = SamplingConfig(temperature=self.cfg.temperature, max_new_tokens=self.cfg.max_new_tokens,
                                  seed=self.cfg.seed)
        # Any special token ends the answer: only <|end|> is trained, but the others can never be
        # part of an answer and would print as markup.
        stop = [self.tok.special(s) for s in SPECIAL_TOKENS]
        times: list[float] = []

        bias = self.logit_bias(plan.ids)

        def timed_ids() -> Iterator[int]:
            for i in generate(self.model, plan.ids, sampling, stop_ids=stop, logit_bias=bias):
                times.append(time.perf_counter())
                yield i

        pieces = []
        for piece in stream_text(self.tok.token_bytes, timed_ids()):
            pieces.append(piece)
            yield piece
        text = "".join(pieces).strip()
        # An empty answer (stop token first) is complete when generation ends: that is its first token.
        ttft = (times[0] if times else time.perf_counter()) - t0
        tps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        abstained = is_abstention(text)
        prompt_texts = [s.text for s in sources[: plan.passages]]
        ungrounded = None
        if not abstained and self.cfg.min_grounding and grounding(text, prompt_texts) < self.cfg.min_grounding:
            # a follow-up ("In which year?") is matched together with the question before it
            ungrounded, text = text, quote_best_sentence(" ".join([*questions[-1:], question]), prompt_texts)
        result = finish(text, "model" if abstained else None, plan, ttft, tps, len(times))
        result.ungrounded_text = ungrounded
        yield result

    def ask(self, history: Sequence[Turn], question: str) -> Answer:
        """Answer one question after `history` (earlier user/assistant turns)."""
        for item in self.stream(history, question):
            if isinstance(item, Answer):
                return item
        raise AssertionError("stream ended without an Answer")

    def ask_turns(self, questions: Sequence[str], history: Sequence[Turn] = ()) -> tuple[list[Turn], Answer]:
        """Answer each question in turn, carrying the conversation; the history and last answer."""
        if not questions:
            raise NotesRagError("no questions to answer")
        turns = list(history)
        for q in questions:
            answer = self.ask(turns, q)
            turns += [Turn("user", answer.question), Turn("assistant", answer.text)]
        return turns, answer
