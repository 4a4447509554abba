"""Spaced repetition: the `fsrs` package's scheduler, one review at a time.

Nothing is scheduled here by hand: `review` hands the card's FSRS state and the rating to
`fsrs.Scheduler.review_card` and stores what it returns (study/store.py). A new card starts as
a fresh `fsrs.Card`; `due` cards are those whose FSRS due time has passed.
"""

from __future__ import annotations

import datetime as dt

from notes_rag.study.cards import Card
from notes_rag.study.store import StudyStore, now

_RATING = {"again": 1, "hard": 2, "good": 3, "easy": 4}


def scheduler():
    from fsrs import Scheduler

    # Fuzzing spreads due dates of cards learnt together; off, so a review's outcome is
    # reproducible (tests, and the student's "due in N days" matches the stored state).
    return Scheduler(enable_fuzzing=False)


def review(
    store: StudyStore,
    card: Card,
    rating: str,
    suggested: str | None = None,
    typed: str | None = None,
    at: dt.datetime | None = None,
    sched=None,
):
    """Record one review of `card`; returns its new fsrs.Card (its `due` is the next review)."""
    from fsrs import Rating

    sched = sched or scheduler()
    state = store.fsrs_card(card.card_id)
    new, log = sched.review_card(state, Rating(_RATING[rating]), review_datetime=at or now())
    store.record(card, new, log, rating, suggested, typed)
    return new


def until(due: dt.datetime, at: dt.datetime | None = None) -> str:
    """'in 10 min', 'in 3 days': when a card is next due, for the session's feedback."""
    secs = max(0.0, (due - (at or now())).total_seconds())
    if secs < 3600:
        return f"in {max(1, round(secs / 60))} min"
    if secs < 86400:
        return f"in {round(secs / 3600)} h"
    return f"in {round(secs / 86400)} days"
