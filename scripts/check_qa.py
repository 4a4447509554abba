"""Check a QA file against its notes folder: print each problem and the item counts.

    python scripts/check_qa.py eval_sets/dev2/qa.jsonl eval_sets/dev2/notes

Exits 1 when there is any problem (or the file cannot be read), 0 otherwise. The rules are those
of `notes_rag.eval.qa_check`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.eval.qa_check import check_qa_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qa", type=Path, help="QA file (JSON Lines, docs/EVAL.md format)")
    parser.add_argument("notes", type=Path, help="folder of the notes the QA file was written for")
    args = parser.parse_args(argv)
    try:
        problems, counts = check_qa_file(args.qa, args.notes)
    except NotesRagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(p)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
