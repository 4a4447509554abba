"""One chat turn: retrieval, then the reader's verdict and a quote (or generation), for chat, ask and eval.

    assistant = Assistant.open(index=None, model=None)          # ./.notes-rag and the repo's models/
    answer = assistant.ask(history_turns, "Kto zaproponował model neuronu?")
    for piece in assistant.stream(history_turns, question): ...  # str pieces, then the Answer

The turn is described once, in docs/CHAT.md ("One turn"): retrieve with the user's previous
questions as context; abstain without running the model when the question names something no note
mentions or its own dense top-1 cosine is under the calibrated threshold (question.py); otherwise,
with a reader model (model/reader.py), abstain on its no-answer or answer with the quote by meaning
of the top passage (chat/quote.py; or the sentence the heads point at, chat/reply.py) — grounded by
construction; with a plain model, fit the prompt (`chat.prompt.fit_prompt`), generate, parse
abstention and citations, and let the grounding guard (chat/guard.py) replace an answer that is
uncited, loops or is not supported by the passages it cites by the quote — checked before anything
is shown, so no text is retracted.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from notes_rag.chat.answer import Answer, PromptPlan, Source, Timings
from notes_rag.chat.format import (
    ABSTAIN,
    NOT_MENTIONED,
    SYSTEM_PROMPT,
    Passage,
    Turn,
    extract_citations,
    is_abstention,
)
from notes_rag.chat.guard import problem
from notes_rag.chat.prompt import fit_prompt
from notes_rag.chat.quote import cited_quote
from notes_rag.errors import NotesRagError
from notes_rag.lang import detect_lang
from notes_rag.model.checkpoint import load_model
from notes_rag.model.engine import CopyBias, SamplingConfig, generate, stream_text
from notes_rag.model.release import model_id, resolve_model
from notes_rag.model.tokenizer import SPECIAL_TOKENS, Tokenizer

if TYPE_CHECKING:  # importing the index loads FAISS
    from notes_rag.index.search import SearchResult


@dataclass
class AnswerConfig:
    k: int = 5  # passages retrieved and given to the model (also the default of `search`)
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
    # Grounding guard (`chat.guard`): a non-abstaining generated answer that cites no passage,
    # loops, or whose content words are mostly absent from the passages it cites is not shown;
    # the notes are quoted instead (`chat.quote`; the model's text is kept in
    # `Answer.ungrounded_text`). This is the share of words that must occur; 0 turns it off.
    min_grounding: float = 0.6
    # Who writes the answer, with a model trained by `notes-rag train-reader` (a plain model
    # always generates): "quote" (the quote by meaning from the top passage, `chat.quote`, unless
    # the reader's no-answer abstains), "reader" (the pointer heads quote the sentence they point
    # at) or "model" (generate). The quote is the default: with the release reader, dev key facts are
    # 0.43 quoting vs 0.35 pointing, at the same abstention and citation precision, for an answer
    # p50 of 0.30 s instead of 0.06 s (docs/CHAT.md).
    answer_with: str = "quote"
    # The reader abstains when its no-answer probability reaches this. On the kit's held-out
    # half-unanswerable mix, 0.7 keeps abstention precision 0.91 at false abstention 0.05 (0.5:
    # 0.90 / 0.08); notes are out of the reader's training domain and it doubts more there.
    reader_abstain: float = 0.7
    # Added to each sentence's log-probability per word stem it shares with the question (and the
    # previous one). Notes are outside the reader's training domain; this lexical evidence moves
    # dev key facts 0.16 -> 0.30 with the release reader (both at abstain 0.5), while costing 0.03 sentence accuracy on
    # the kit's held-out split (docs/READER.md). 0 lets the heads choose alone.
    reader_overlap_weight: float = 1.0
    # Times the encoder's cosine between the question and each sentence, added to the choice (the
    # quote's evidence by meaning, `chat.quote`). At 20, dev key facts 0.35 -> 0.38, but encoding
    # the passage's sentences makes the answer p50 28 ms -> 0.96 s on two cores: off by default.
    reader_dense_weight: float = 0.0
    # Passages the reader reads: the top ones of retrieval's ranking. Its heads were trained on
    # passages in random order and choose across passages worse than retrieval ranks them (dev,
    # docs/READER.md); the other retrieved passages are still shown as sources.
    reader_passages: int = 1

    @property
    def reserve(self) -> int:
        return self.max_new_tokens if self.answer_reserve is None else self.answer_reserve


class Searcher(Protocol):
    """What a turn needs of retrieval (`index.search.Retriever`)."""

    index_dir: Path

    @property
    def abstain_threshold(self) -> float | None: ...

    def search_conversation(self, turns: list[str], k: int = ..., mode: str = ...) -> SearchResult: ...

    def translations(self, query: str) -> list[str]: ...

    def similarity(self, query: str, texts: list[str]) -> np.ndarray: ...


class _Shape(Protocol):
    seq_len: int
    reader: bool


class ChatModel(Protocol):
    """What a turn needs of the model (`model.gpt.GPT`): its context; `engine.generate` runs it."""

    @property
    def config(self) -> _Shape: ...


# -- the turn ------------------------------------------------------------------------------------


def conversation_lang(history: Sequence[Turn], question: str) -> str:
    """The conversation's language: its first question's (the system prompt is chosen by it)."""
    first = next((t.content for t in history if t.role == "user"), question)
    return detect_lang(first)


@dataclass
class _Retrieved:
    """The retrieval half of a turn: what every `Answer` of it carries."""

    question: str
    lang: str
    sources: list[Source]
    top_cosine: float
    threshold: float | None
    retrieval_ms: float
    t0: float  # when the question came
    unknown_names: tuple[str, ...] = ()  # names in the question that no note mentions
    names_in_top: bool = False  # the question asks only about names the top passage holds


@dataclass
class _Decoded:
    """The generation half of a turn."""

    text: str
    ttft: float  # question to first token
    tokens_per_s: float | None
    new_tokens: int


def _with_previous(questions: list[str], question: str) -> str:
    """The question as the quote and the reader's word overlap read it: a follow-up ("In which
    year?") together with the question before it."""
    return " ".join([*questions[-1:], question])


def _drain(pieces: Generator[str, None, _Decoded]) -> _Decoded:
    """Run a generator of text pieces to its end; its return value."""
    while True:
        try:
            next(pieces)
        except StopIteration as done:
            return done.value


@dataclass
class Assistant:
    """Retriever + model + tokenizer + settings; `stream`/`ask` answer one turn."""

    retriever: Searcher
    model: ChatModel
    tok: Tokenizer
    cfg: AnswerConfig = field(default_factory=AnswerConfig)
    model_id: str = ""
    index_id: str = ""

    @classmethod
    def open(
        cls, index: Path | None = None, model: Path | None = None, cfg: AnswerConfig | None = None, retriever=None
    ) -> Assistant:
        """Load the model and (unless given) the index; errors say which command fixes them."""
        from notes_rag.index.search import Retriever, resolve_index  # loads FAISS and the encoder
        from notes_rag.index.store import index_id

        if retriever is None:
            index_dir = resolve_index(index)  # cheap checks first: fail before slow loading
        folder = resolve_model(model)
        gpt, tok, config = load_model(folder)
        if retriever is None:
            retriever = Retriever(index_dir)
        return cls(retriever, gpt, tok, cfg or AnswerConfig(), model_id(folder, config), index_id(retriever.index_dir))

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

    def _retrieve(self, history: Sequence[Turn], question: str, questions: list[str]) -> _Retrieved:
        t0 = time.perf_counter()
        res = self.retriever.search_conversation([*questions, question], k=self.cfg.k, mode=self.cfg.mode)
        retrieval_ms = (time.perf_counter() - t0) * 1000
        lang = detect_lang(question, default=conversation_lang(history, question))
        sources = [
            Source(h.rank, h.file, h.line_start, h.line_end, " › ".join(h.heading_path), h.score, h.text)
            for h in res.hits
        ]
        return _Retrieved(
            question,
            lang,
            sources,
            float(res.top_cosine),
            self.threshold,
            retrieval_ms,
            t0,
            res.unknown_names,
            res.names_in_top,
        )

    def _answer(
        self,
        r: _Retrieved,
        text: str,
        reason: str | None,
        plan: PromptPlan | None,
        decoded: _Decoded,
        n_passages: int | None = None,
    ) -> Answer:
        if n_passages is None:
            n_passages = plan.passages if plan else 0
        cited = [] if reason else extract_citations(text)
        timings = Timings(
            r.retrieval_ms, decoded.ttft, decoded.tokens_per_s, time.perf_counter() - r.t0, decoded.new_tokens
        )
        return Answer(
            question=r.question,
            text=text,
            abstained=reason is not None,
            abstain_reason=reason,
            lang=r.lang,
            sources=r.sources,
            cited=[c for c in cited if 1 <= c <= n_passages],
            invalid_citations=[c for c in cited if not 1 <= c <= n_passages],
            top_cosine=r.top_cosine,
            threshold=r.threshold,
            timings=timings,
            prompt=plan,
            model_id=self.model_id,
            index_id=self.index_id,
        )

    def _plan(self, history: Sequence[Turn], question: str, sources: list[Source]) -> PromptPlan:
        return fit_prompt(
            self.tok,
            self.system_prompt(conversation_lang(history, question)),
            [Passage(s.label, s.text) for s in sources],
            history,
            question,
            context=self.model.config.seq_len,
            reserve=self.cfg.reserve,
            keep_last_exchanges=self.cfg.keep_last_exchanges,
            min_passage_tokens=self.cfg.min_passage_tokens,
        )

    def _generate(self, plan: PromptPlan, t0: float) -> Generator[str, None, _Decoded]:
        """Yield the answer's text pieces; return the whole answer and its timings."""
        sampling = SamplingConfig(
            temperature=self.cfg.temperature, max_new_tokens=self.cfg.max_new_tokens, seed=self.cfg.seed
        )
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
        # An empty answer (stop token first) is complete when generation ends: that is its first token.
        ttft = (times[0] if times else time.perf_counter()) - t0
        tps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        return _Decoded("".join(pieces).strip(), ttft, tps, len(times))

    @property
    def reads(self) -> bool:
        """True when the reader heads run: a reader model, and `answer_with` "reader" (they answer)
        or "quote" (they decide abstention; the quote by meaning answers)."""
        return self.cfg.answer_with in ("reader", "quote") and bool(getattr(self.model.config, "reader", False))

    def _quote(self, r: _Retrieved, questions: list[str], read: Answer) -> Answer:
        """The quote by meaning from the top passage (`chat.quote`), unless the reader abstained."""
        if read.abstained:
            return read
        text = cited_quote(
            _with_previous(questions, r.question), [s.text for s in r.sources], self.retriever.similarity
        )
        # A top passage of headings only has nothing to quote: that is no answer either.
        decoded = _Decoded(text or ABSTAIN[r.lang], time.perf_counter() - r.t0, None, 0)
        answer = self._answer(r, decoded.text, None if text else "reader", None, decoded, 1)
        answer.answered_by = "quote" if text else "abstain"
        answer.no_answer, answer.read_passages = read.no_answer, 1
        return answer

    def _read(self, r: _Retrieved, questions: list[str]) -> Answer:
        """The reader's answer: the heads point at a sentence of the passages, or at no-answer."""
        from notes_rag.chat.reply import compose
        from notes_rag.model.reader import encode, read, shared_stems

        read_from = r.sources[: max(1, self.cfg.reader_passages)]
        passages = [(s.label, s.text) for s in read_from]
        inp = encode(
            self.tok,
            r.question,
            passages,
            history=tuple(questions[-1:]),
            translations=tuple(self.retriever.translations(r.question)),
            max_len=self.model.config.seq_len,
        )
        texts = [s.text for s in read_from]
        query = _with_previous(questions, r.question)
        prior = [self.cfg.reader_overlap_weight * n for n in shared_stems(inp, texts, query)]
        if self.cfg.reader_dense_weight and inp.units:
            cos = self.retriever.similarity(query, [texts[u.passage - 1][u.start : u.end] for u in inp.units])
            prior = [p + self.cfg.reader_dense_weight * float(c) for p, c in zip(prior, cos)]
        reading = read(self.model, inp, prior=prior)
        reply = compose(reading, texts, r.lang, self.cfg.reader_abstain)
        decoded = _Decoded(reply.text, time.perf_counter() - r.t0, None, 0)
        answer = self._answer(r, reply.text, "reader" if reply.abstained else None, None, decoded, inp.passages)
        answer.answered_by = "abstain" if reply.abstained else "reader"
        answer.span, answer.no_answer, answer.read_passages = reply.span, reading.no_answer, inp.passages
        return answer

    def stream(self, history: Sequence[Turn], question: str) -> Iterator[str | Answer]:
        """Yield the answer's text pieces, then the final `Answer`. Generated text streams only
        when no grounding check can replace it; otherwise it is yielded once it is known to stand."""
        question = question.strip()
        if not question:
            raise NotesRagError("empty question")
        questions = [t.content for t in history if t.role == "user"]
        r = self._retrieve(history, question, questions)
        under = r.threshold is not None and r.top_cosine < r.threshold and not r.names_in_top
        if not r.sources or r.unknown_names or under:
            text = ABSTAIN[r.lang]
            if r.unknown_names:
                text += " " + NOT_MENTIONED[r.lang].format(names=", ".join(r.unknown_names))
            decoded = _Decoded(text, time.perf_counter() - r.t0, None, 0)
            yield decoded.text
            answer = self._answer(r, decoded.text, "retrieval", None, decoded)
            answer.answered_by = "abstain"
            yield answer
            return
        if self.reads:
            answer = self._read(r, questions)
            if self.cfg.answer_with == "quote":
                answer = self._quote(r, questions, answer)
            yield answer.text
            yield answer
            return
        plan = self._plan(history, question, r.sources)
        checked = bool(self.cfg.min_grounding)
        pieces = self._generate(plan, r.t0)
        if checked:  # run generation to its end before showing anything
            decoded = _drain(pieces)
        else:
            decoded = yield from pieces
        text, abstained = decoded.text, is_abstention(decoded.text)
        prompt_texts = [s.text for s in r.sources[: plan.passages]]
        ungrounded, by = None, "abstain" if abstained else "model"
        if not abstained and checked and problem(text, prompt_texts, self.cfg.min_grounding):
            query = _with_previous(questions, question)
            ungrounded, text = text, cited_quote(query, prompt_texts, self.retriever.similarity)
            by = "quote"
        if checked:
            yield text
        result = self._answer(r, text, "model" if abstained else None, plan, decoded)
        result.ungrounded_text, result.answered_by = ungrounded, by
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
