"""One chat turn: the chat format, prompt fitting, the assistant, saved sessions."""
