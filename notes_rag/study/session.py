"""A quiz session: which cards are asked, written and checked ahead, graded and scheduled.

    session = QuizSession.open(index=None, model=None, topic="attention", n=10)
    card = session.next_card()               # a checked card, or None when the session is done
    grade = session.grade(card, "typed answer")
    session.record(card, grade.rating, grade, "typed answer")   # FSRS review, saved at once
    session.close()

Order: cards due for review first (FSRS), then, unless `due_only`, new cards: first the checked
cards kept from earlier sessions (no checking, no model needed), then cards made now from the
passages' answer spans. Making a card means writing it and running its checks, the round trip
through our chat included (study/make.py); a background thread does that `QuizConfig.ahead`
cards ahead of the one shown and loads the chat (model + retriever) while the first cards are
answered, so a session whose cards are cached shows its first card without loading anything.

With a topic, retrieval finds the topic's passages first and only their cards are asked.
Every review is written to the study database when it is made, so Ctrl-C loses nothing.
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.study.cards import Card
from notes_rag.study.checks import duplicate_of
from notes_rag.study.config import GradeConfig, QuizConfig
from notes_rag.study.grading import Grade, grade
from notes_rag.study.make import KIND_ORDER, candidates, checked_card, spans_of
from notes_rag.study.passages import Passage, all_passages, topic_passages
from notes_rag.study.schedule import review
from notes_rag.study.spans import Span
from notes_rag.study.store import StudyStore, db_path

_DONE = object()  # the maker thread has no more cards
CLOSE_WAIT_S = 60  # a span's checks take seconds even on a loaded 2-core machine: ample room


def _order_key(ps: tuple[Passage, Span]) -> tuple[int, str]:
    """Definitions and lists first, then numbers and names; within each, a stable shuffle across
    the notes (the same order every session, so cached cards are the first ones asked)."""
    p, s = ps
    h = hashlib.sha256(f"{p.file}:{p.line_start + s.offset}:{s.answer}".encode()).hexdigest()
    return KIND_ORDER[s.kind] // 2, h


def resolve(index: Path | None) -> Path:
    """The index folder (`--index`, ./.notes-rag, ./corpus/.notes-rag), checked cheaply."""
    from notes_rag.index.search import resolve_index

    return resolve_index(index)


@dataclass
class QuizSession:
    index_dir: Path
    store: StudyStore
    passages: list[Passage]
    cfg: QuizConfig = field(default_factory=QuizConfig)
    grade_cfg: GradeConfig = field(default_factory=GradeConfig)
    model_dir: Path | None = None
    topic: str | None = None
    due_only: bool = False
    assistant: object | None = None  # the chat used by the round trip and grading, once loaded
    retired: int = 0  # cards retired at the start because their note line is gone
    asked: list[str] = field(default_factory=list)  # card ids asked this session

    @classmethod
    def open(
        cls,
        index: Path | None = None,
        model: Path | None = None,
        topic: str | None = None,
        due_only: bool = False,
        cfg: QuizConfig | None = None,
        assistant=None,
    ) -> QuizSession:
        """Open the index's study database, retire cards whose line is gone, and (with a topic)
        find the topic's passages; the chat loads in the background unless `assistant` is given."""
        index_dir = resolve(index)
        passages = all_passages(index_dir)
        if not passages:
            raise NotesRagError(f"the index at {index_dir} holds no notes; index a folder with notes first")
        store = StudyStore(db_path(index_dir))
        retired, _moved = store.sync(passages)
        s = cls(index_dir, store, passages, cfg or QuizConfig(), GradeConfig(), model, topic, due_only, assistant)
        s.retired = retired
        if topic:
            s.passages = topic_passages(s.chat().retriever, topic, s.cfg.k)
        s._start()
        return s

    # -- the chat (model + retriever), loaded once -------------------------------------------
    def chat(self):
        """The chat the checks and the grader use; loaded on first need (a few seconds)."""
        with _chat_lock:
            if self.assistant is None:
                from notes_rag.chat.assistant import Assistant

                self.assistant = Assistant.open(index=self.index_dir, model=self.model_dir)
        return self.assistant

    # -- which cards -------------------------------------------------------------------------
    def in_scope(self, card: Card) -> bool:
        if not self.topic:
            return True
        return any(
            p.file == card.file and p.line_start <= card.line < p.line_start + len(p.text.splitlines())
            for p in self.passages
        )

    def _cached(self) -> list[Card]:
        due = [c for c in self.store.due() if self.in_scope(c)]
        if self.due_only:
            return due
        return due + [c for c in self.store.new() if self.in_scope(c)]

    def _fresh(self) -> Iterator[Card]:
        """New checked cards from the passages' spans (the cards the store lacks), in order."""
        known = self.store.known_ids()
        seen: dict[str, Card] = {}
        for c in self.store.cards("active"):  # a new card must not repeat a stored one
            duplicate_of(c, seen)
        write = self._writer()
        for p, span in sorted(spans_of(self.passages), key=_order_key):
            if self._stop.is_set():  # many spans may fail their checks in a row: stop between them
                return
            # a span asked before keeps its card: its stored card would make every other
            # candidate of it look new (a GPT question has the template question's id)
            if any(c.card_id in known for c in candidates(p, span)):
                continue
            made = checked_card(p, span, seen, self.chat() if self.cfg.check_round_trip else None, write)
            if made.card is not None and made.card.card_id not in known:
                self.store.add(made.card, made.trip.to_dict() if made.trip else None)
                known.add(made.card.card_id)
                yield made.card

    def _writer(self):
        if self.cfg.writer != "gpt":
            return None
        from notes_rag.study.gpt_questions import write_question

        a = self.chat()
        return lambda p, span: write_question(a.model, a.tok, p.label, p.text, span.answer, p.lang)

    def _start(self) -> None:
        self._ready: queue.Queue = queue.Queue()
        self._cached_cards = self._cached()
        self._room = threading.Semaphore(self.cfg.ahead)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = None
        if not self.due_only:
            self._thread = threading.Thread(target=self._make, name="quiz-cards", daemon=True)
            self._thread.start()

    def _make(self) -> None:
        """The maker thread: loads the chat, then writes and checks cards ahead of the session."""
        try:
            self.chat()
            # cards kept from earlier sessions come first: check new ones only when those run low,
            # so the thread does not compete with the session for the CPU while it needs none
            while len(self._cached_cards) > self.cfg.ahead and len(self.asked) < self.cfg.n:
                if self._stop.wait(0.1):
                    return
            for card in self._fresh():
                while not self._room.acquire(timeout=0.2):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._ready.put(card)
        except BaseException as e:  # surfaced to the session by next_card
            self._error = e
        finally:
            self._ready.put(_DONE)

    @property
    def planned(self) -> int:
        """How many cards this session asks at most: `n`, or fewer when only the due cards are
        asked (`--due` with 2 due shows [1/2], not [1/10])."""
        if self.due_only:
            return min(self.cfg.n, len(self.asked) + len(self._cached_cards))
        return self.cfg.n

    def next_card(self, timeout: float | None = None) -> Card | None:
        """The next card to ask, None when the session has asked `n` or has no more."""
        if len(self.asked) >= self.cfg.n:
            return None
        while self._cached_cards:
            card = self._cached_cards.pop(0)
            if card.card_id not in self.asked:
                self.asked.append(card.card_id)
                return card
        if self._thread is None:
            return None
        item = self._ready.get(timeout=timeout)
        if item is _DONE:
            self._ready.put(_DONE)
            if self._error is not None:
                raise self._error
            return None
        self._room.release()
        self.asked.append(item.card_id)
        return item

    def deck(self) -> list[Card]:
        """Every checked card of the session's scope: the stored ones and all that can be made
        now (for an export)."""
        cards = [c for c in self.store.cards("active") if self.in_scope(c)]
        ids = {c.card_id for c in cards}
        while (card := self.next_card()) is not None:
            if card.card_id not in ids:
                cards.append(card)
                ids.add(card.card_id)
        return cards

    # -- grading and reviews -----------------------------------------------------------------
    def grade(self, card: Card, typed: str) -> Grade:
        question = card.question if card.kind == "question" else ""
        return grade(typed, card.answer, question, self.chat().retriever.similarity, self.grade_cfg)

    def record(self, card: Card, rating: str, graded: Grade | None = None, typed: str | None = None):
        """Save the review (FSRS) at once; returns the card's new fsrs.Card."""
        return review(self.store, card, rating, graded.rating if graded else None, typed)

    def close(self) -> None:
        """Stop the maker thread, then close the store. The thread stops between two spans (one
        round trip, seconds); the process must not exit while it is inside FAISS or BLAS (their
        thread pools can hang an exiting process) or writing the store being closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_WAIT_S)
        try:
            self.store.backup()  # the rotated copy a damaged database is recovered from
        except (OSError, sqlite3.Error):
            pass  # a failed backup never loses the session: its reviews are in the database
        self.store.close()


_chat_lock = threading.Lock()
