"""One chat turn: retrieval, then our GPT writes the answer, for chat, ask and eval.

    assistant = Assistant.open(index=None, model=None)          # ./.notes-rag and the repo's models/
    answer = assistant.ask(history_turns, "Kto zaproponował model neuronu?")
    for piece in assistant.stream(history_turns, question): ...  # str pieces, then the Answer

The turn is described once, in docs/CHAT.md ("One turn"): retrieve with the user's previous
questions as context; abstain without running the model when the question names something no note
mentions or its own dense top-1 cosine is under the calibrated threshold (question.py); otherwise
the copy-head GPT reads the top passages, each unit with the retrieval encoder's relevance codes
(chat/turn_input.py), and writes the answer, or the abstention, streaming (chat/writer.py): its
words come from the passages by construction, so nothing shown is retracted. Every answer shown
is the model's: an empty answer is an abstention.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from notes_rag.chat.answer import Answer, Source, Timings, sources_of
from notes_rag.chat.format import ABSTAIN, NOT_MENTIONED, SYSTEM_PROMPT, Turn, extract_citations
from notes_rag.chat.question_text import (
    clean_question,
    fit_question,
    long_question_note,
    question_budget,
)
from notes_rag.chat.turn_input import read_passages, relevance_query, turn_input, unit_prior, unit_view
from notes_rag.chat.writer import Written, write
from notes_rag.errors import NotesRagError
from notes_rag.lang import detect_lang
from notes_rag.model import unit_reranker
from notes_rag.model.manifest import verify_folder
from notes_rag.model.numpy_gpt import load_numpy_gpt
from notes_rag.model.reader import READ_PASSAGES
from notes_rag.model.release import model_id, resolve_model
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.model.unit_reranker import UnitReranker
from notes_rag.question import retrieval_refuses

if TYPE_CHECKING:  # importing the index loads FAISS
    from notes_rag.index.search import SearchResult


@dataclass
class AnswerConfig:
    k: int = 5  # passages retrieved and shown as sources (also the default of `search`)
    mode: str = "hybrid"  # retrieval: hybrid | dense | bm25
    passages: int = READ_PASSAGES  # the top retrieved passages the model reads (sft/generator_data.py)
    # Greedy: the model is trained to copy the answer from a passage; sampling only adds errors.
    temperature: float = 0.0
    max_new_tokens: int = 120
    max_words: int = 60  # an answer is 1-3 sentences; decoding stops before a word past this
    # Constrained decoding (model/constraint.py): no content word the passages and questions do not
    # hold. Off only to measure what it costs or saves.
    constrain: bool = True
    system: str | None = None  # system prompt override; None = SYSTEM_PROMPT in the conversation's language
    abstain_threshold: float | None = None  # dense top-1 cosine; None = the retriever's calibrated one
    # Added to the abstention's first-token log-probability at the first step (chat/writer.py):
    # > 0 abstains more. Fitted on notes_qa's val notes (118 questions, 14 unanswerable;
    # benchmarks/notes_qa_heldout.py --split val --fit, release of 2026-12-06): no bias there
    # refuses any unanswerable question at false abstention <= 0.05, so the fit is the grid's
    # end, -8: the model's own abstention is off, the retrieval gate (question.py) refuses.
    # Never fitted on the test notes or dev. Refit with each new model.
    abstain_bias: float = -8.0
    # Answers copy whole units (model/unit_copy.py): start where the line or sentence the model
    # points at starts, finish it, and cite the passage it is in. Measured against the release's
    # free copy (2026-12-07, same model): notes_qa val key facts 0.46 vs 0.44 (test 0.42 vs 0.38);
    # external 0.41 vs 0.36, dev2 0.49 vs 0.46, dev 0.27 vs 0.27; citation precision dev 0.61 vs
    # 0.56, dev2 0.74 vs 0.71, external 0.92 vs 0.93. Off only to measure what it adds.
    whole_units: bool = True
    # The first unit an answer copies (with `whole_units`): the model's copy attention summed
    # over each unit, times the unit scorer's probability (model/unit_scorer.py) to this power;
    # 0 leaves the choice to the token the model points at. Chosen on notes_qa's val notes
    # (2026-12-07, release model; key facts of 104: 0 -> 48, ~0 (attention alone) 50, 0.5 55,
    # 1 53, 2 53, 3 49); the test notes were run once, after: 0.42 -> 0.46 (docs/GENERATOR.md).
    unit_prior_weight: float = 0.5
    # The unit reranker (model/unit_reranker.py) adds its joint reading of the question and the
    # scorer's top 6 units to that prior (the weight above was not refitted). Chosen on notes_qa's
    # val notes (2026-12-08, release model; key facts of 104: 55 without, 57 with; word F1 0.48 vs
    # 0.50); test notes, eval sets and speed in docs/GENERATOR.md, "The unit reranker". Off only
    # to measure what it adds.
    unit_reranker: bool = True
    seed: int | None = None  # sampling seed when temperature > 0


class Searcher(Protocol):
    """What a turn needs of retrieval (`index.search.Retriever`)."""

    index_dir: Path

    @property
    def abstain_threshold(self) -> float | None: ...

    def search_conversation(self, turns: list[str], k: int = ..., mode: str = ...) -> SearchResult: ...

    def translations(self, query: str) -> list[str]: ...

    def vectors(self, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


class _Shape(Protocol):
    seq_len: int
    copy_head: bool


class ChatModel(Protocol):
    """What a turn needs of the model (`model.gpt.GPT` with a copy head); chat/writer.py runs it."""

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
    unknown_words: tuple[str, ...] = ()  # its content words no note holds, when off-topic


@dataclass
class Assistant:
    """Retriever + model + tokenizer + settings; `stream`/`ask` answer one turn."""

    retriever: Searcher
    model: ChatModel
    tok: Tokenizer
    cfg: AnswerConfig = field(default_factory=AnswerConfig)
    model_id: str = ""
    index_id: str = ""
    _reranker: list = field(default_factory=list, repr=False)  # [the reranker or None] once loaded

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
        verify_folder(folder)  # damaged or non-finite weights: one line, never an answer
        cfg = cfg or AnswerConfig()
        loaded = load_numpy_gpt(folder)  # the prompt pass without torch (model/numpy_gpt.py)
        if loaded is None:
            from notes_rag.model.checkpoint import load_model

            loaded = load_model(folder)
        gpt, tok, config = loaded
        if cfg.max_new_tokens > config["model"]["seq_len"] // 4:  # a small model's input needs the rest
            cfg = replace(cfg, max_new_tokens=config["model"]["seq_len"] // 4)
        if retriever is None:
            retriever = Retriever(index_dir)
        return cls(retriever, gpt, tok, cfg, model_id(folder, config), index_id(retriever.index_dir))

    def reranker(self) -> UnitReranker | None:
        """The unit reranker over the retriever's encoder (loaded at the first turn that needs it);
        None when it is off or was not fitted for this encoder (model/unit_reranker.py)."""
        if not self.cfg.unit_reranker:
            return None
        if not self._reranker:
            meta = getattr(self.retriever, "meta", None) or {}  # test doubles have no encoder
            encoder = getattr(self.retriever, "encoder", None)
            self._reranker.append(unit_reranker.for_encoder(encoder, meta.get("encoder", "")))
        return self._reranker[0]

    def _index_id(self) -> str:
        """The generation this answer was retrieved from: the retriever reopens a newer one
        (`notes-rag index --watch`) before a question, so the id opened with may be stale."""
        from notes_rag.index.store import index_id

        gen = getattr(self.retriever, "generation", None)  # test doubles have no generation
        return index_id(self.retriever.index_dir, gen) if gen is not None else self.index_id

    @property
    def threshold(self) -> float | None:
        if self.cfg.abstain_threshold is not None:
            return self.cfg.abstain_threshold
        return self.retriever.abstain_threshold

    def system_prompt(self, lang: str) -> str:
        return self.cfg.system if self.cfg.system else SYSTEM_PROMPT[lang]

    def _retrieve(self, history: Sequence[Turn], question: str, questions: list[str]) -> _Retrieved:
        t0 = time.perf_counter()
        res = self.retriever.search_conversation([*questions, question], k=self.cfg.k, mode=self.cfg.mode)
        retrieval_ms = (time.perf_counter() - t0) * 1000
        lang = detect_lang(question, default=conversation_lang(history, question))
        sources = sources_of(res.hits)
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
            res.unknown_words,
        )

    def _answer(self, r: _Retrieved, text: str, reason: str | None, by: str, written: Written | None = None) -> Answer:
        now = time.perf_counter()
        w = written or Written(text, reason is not None, now - r.t0, None, 0, 0)
        n_passages = w.passages
        cited = [] if reason else extract_citations(text)
        timings = Timings(r.retrieval_ms, w.ttft, w.tokens_per_s, now - r.t0, w.new_tokens)
        answer = Answer(
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
            model_id=self.model_id,
            index_id=self._index_id(),
        )
        answer.answered_by, answer.read_passages, answer.no_answer = by, n_passages, w.no_answer
        return answer

    def _write(self, history: Sequence[Turn], r: _Retrieved, questions: list[str]) -> Iterator[str | Answer]:
        """The model's answer over the top passages, streamed; an empty answer is an abstention."""
        from notes_rag.model.sampling import SamplingConfig

        passages = read_passages(r.sources, self.cfg.passages)
        previous = tuple(questions[-1:])
        query = relevance_query(r.question, previous)
        view = unit_view(self.retriever, query, passages)  # the codes and the prior read it
        inp = turn_input(
            self.tok,
            self.retriever,
            r.question,
            previous,
            passages,
            self.system_prompt(conversation_lang(history, r.question)),
            self.model.config.seq_len - self.cfg.max_new_tokens,
            view,
        )
        on = self.cfg.whole_units and self.cfg.unit_prior_weight
        prior = unit_prior(view, query, self.reranker()) if on else None
        sampling = SamplingConfig(
            temperature=self.cfg.temperature, max_new_tokens=self.cfg.max_new_tokens, seed=self.cfg.seed
        )
        w = yield from write(
            self.model,
            self.tok,
            inp,
            passages,
            [r.question, *previous],
            sampling,
            self.cfg.max_words,
            r.t0,
            self.cfg.constrain,
            self.cfg.abstain_bias,
            self.cfg.whole_units,
            prior,
            self.cfg.unit_prior_weight,
        )
        if w.text and not w.abstained:
            yield self._answer(r, w.text, None, "model", w)
            return
        text = w.text if w.abstained else ABSTAIN[r.lang]
        if not w.text:  # nothing was written (shown): the abstention is the answer
            yield text
        yield self._answer(r, text, "model", "abstain", w)

    def stream(self, history: Sequence[Turn], question: str) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as the model writes them, then the final `Answer`; the
        pieces joined are the answer's text."""
        question = clean_question(question)  # no escape codes; a question with no word is an error
        if not (getattr(self.model.config, "copy_head", False) and getattr(self.model.config, "relevance", False)):
            raise NotesRagError(
                f"model {self.model_id or ''} is of an older shape (no copy head reading relevance codes): "
                "train one with `notes-rag train-generator --base MODEL`"
            )
        # A pasted paragraph: retrieval and the model read its asking part (chat/question_text.py)
        room = self.model.config.seq_len - self.cfg.max_new_tokens
        budget = question_budget(room, len(self.tok.encode(self.system_prompt(conversation_lang(history, question)))))
        short = fit_question(self.tok, question, budget)
        questions = [fit_question(self.tok, t.content, budget // 2) for t in history if t.role == "user"]
        for item in self._turn(history, short, questions):
            if isinstance(item, Answer) and short != question:
                item.question = question  # the conversation keeps what was typed
                item.notes.append(long_question_note(short, question))
            yield item

    def _turn(self, history: Sequence[Turn], question: str, questions: list[str]) -> Iterator[str | Answer]:
        r = self._retrieve(history, question, questions)
        if not r.sources or retrieval_refuses(r, r.threshold):
            text = ABSTAIN[r.lang]
            if r.unknown_names or r.unknown_words:
                text += " " + NOT_MENTIONED[r.lang].format(names=", ".join(r.unknown_names or r.unknown_words))
            yield text
            yield self._answer(r, text, "retrieval", "abstain")
            return
        written = self._write(history, r, questions)
        try:
            first = next(written)  # the model input is built before anything is shown
        except ValueError as e:  # model/reader.py: the input cannot hold one passage (a small model)
            if "no room" not in str(e):
                raise
            yield ABSTAIN[r.lang]
            answer = self._answer(r, ABSTAIN[r.lang], "model", "abstain")
            answer.notes.append("the model's input cannot hold a passage beside this question: it did not answer")
            yield answer
            return
        for item in itertools.chain([first], written):
            if isinstance(item, Answer) and item.no_answer is not None and not math.isfinite(item.no_answer):
                where = getattr(self.model, "folder", None) or self.model_id
                raise NotesRagError(f"the model {where} computed NaN or inf: damaged weights (notes-rag doctor)")
            yield item

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
