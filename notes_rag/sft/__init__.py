"""Finetuning data: kit readers, generated QA, the conversation builder."""
