"""Loaded by a test's subprocess (PYTHONPATH): its model writes the encoder's top line (tests/tiny_chat.py)."""

from tiny_chat import use_top_line_writer

use_top_line_writer()
