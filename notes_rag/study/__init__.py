"""Study mode (`notes-rag quiz`): cards from the notes, checked, graded, scheduled, exported.

spans (what to ask) → make (+ templates, gpt_questions: the cards) → checks (before a card is
shown) → session (which cards, made ahead) → grading → schedule (FSRS) → store (SQLite) → export
(Anki); passages (what a quiz draws from), config (the knobs), qg_train (teaching our GPT to
write questions). docs/STUDY.md describes the whole.
"""
