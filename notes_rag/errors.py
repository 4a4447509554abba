"""The one exception type for problems the user can fix (bad path, corrupt file, missing index).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class NotesRagError(Exception):
    """A user-facing error; its message is one readable line."""
