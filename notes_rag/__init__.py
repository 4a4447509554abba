"""notes-rag: chat with your study notes, answered by a GPT this project trains itself."""

__version__ = "0.1.0"
