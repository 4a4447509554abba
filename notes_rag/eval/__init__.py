"""Measuring retrieval and answers on QA files and held-out SFT data."""
