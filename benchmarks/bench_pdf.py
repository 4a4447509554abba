"""pypdf vs pdfplumber on a generated lecture slide deck: text quality and speed (issue 24).

    python benchmarks/bench_pdf.py                 # 120 slides, 3 timed rounds
    python benchmarks/bench_pdf.py --slides 20 --rounds 1 --json out.json
    python benchmarks/bench_pdf.py --pdf /usr/share/doc/*/*.pdf   # also the reader on real PDFs

The deck (tests/slide_deck.py, fpdf2) has what lecture slides have: a large title, bullet lines
that wrap, two-column comparison slides, Polish and English text, formulas' symbols. Each library
extracts every page; per library:

- word accuracy: difflib ratio between the slide's words and the extracted words (order counts);
- lines kept: share of the slide's lines (title, bullets) whose words come out as one contiguous
  run, i.e. not interleaved with another column or reordered;
- titles found: share of slides whose largest-font line is the slide's title (for notes-rag's
  reader, built on pypdf: whose page section opens with `# title`);
- spacing artifacts: runs of two or more spaces per page (justified lines);
- ms per page: median over the rounds of opening the file and extracting every page.
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from slide_deck import Slide, write_slide_deck  # noqa: E402

from notes_rag.text import words  # noqa: E402

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

_TOPICS = [
    ("Mechanizm uwagi", "zapytanie, klucz i wartość to trzy rzuty tego samego wektora"),
    ("Tokenizacja BPE", "łączy najczęstsze pary symboli aż do zadanego rozmiaru słownika"),
    ("Positional embeddings", "add order information that attention alone does not see"),
    ("Optymalizator AdamW", "oddziela zanik wag od adaptacyjnego kroku gradientu"),
    ("Layer normalization", "keeps activations at a stable scale across the depth of the network"),
    ("Funkcja straty", "entropia krzyżowa mierzy, jak daleko rozkład modelu jest od danych"),
]


def make_slides(n: int) -> list[Slide]:
    slides = []
    for i in range(n):
        topic, fact = _TOPICS[i % len(_TOPICS)]
        title = f"{topic} ({i + 1})"
        lines = [
            f"• {fact}",
            f"• przykład {i}: softmax(QKᵀ/√d) waży wartości, koszt O(n²) dla n = {100 + i} tokenów",
            f"• a longer bullet that wraps onto a second line of the slide because it keeps going about {topic}",
        ]
        right = [f"wariant A: {fact}", f"variant B costs {i % 7 + 2}x more memory per token"] if i % 3 == 0 else []
        slides.append(Slide(title, lines, right))
    return slides


def _pypdf_pages(path: Path) -> list[tuple[str, str | None]]:
    """(text, largest-font line) per page; sizes from the text matrix via pypdf's visitor."""
    from pypdf import PdfReader

    out = []
    for page in PdfReader(path).pages:
        sized: list[tuple[float, str]] = []

        def visit(text, cm, tm, font_dict, font_size, sized=sized):
            if text.strip():
                sized.append((font_size * abs(tm[3] or 1) * abs(cm[3] or 1), text.strip()))

        text = page.extract_text(visitor_text=visit)
        title = max(sized, key=lambda s: s[0])[1] if sized else None
        out.append((text, title))
    return out


def _pdfplumber_pages(path: Path, text_flow: bool = False) -> list[tuple[str, str | None]]:
    """`text_flow`: the PDF's drawing order instead of pdfplumber's default top-to-bottom lines."""
    import pdfplumber

    out = []
    with pdfplumber.open(path) as pdf:
        for page in pdf.pages:
            lines = page.extract_text_lines(use_text_flow=text_flow)
            title = max(lines, key=lambda ln: max(c["size"] for c in ln["chars"]))["text"] if lines else None
            out.append((page.extract_text(use_text_flow=text_flow), title))
    return out


def _reader_pages(path: Path) -> list[tuple[str, str | None]]:
    """notes-rag's own reader (pypdf plus title detection and line clean-up), per page."""
    from notes_rag.index.readers.pdf import read_pdf

    doc = read_pdf(path.read_bytes())
    lines = doc.text.split("\n")
    pages = ["\n".join(lines[s.line_start - 1 : s.line_end]) for s in doc.segments]
    return [(p, p.split("\n", 1)[0][2:] if p.startswith("# ") else None) for p in pages]


LIBRARIES = {
    "pypdf": _pypdf_pages,
    "pdfplumber": _pdfplumber_pages,
    "pdfplumber-flow": lambda path: _pdfplumber_pages(path, text_flow=True),
    "notes-rag reader": _reader_pages,
}


def _contiguous(run: list[str], hay: list[str]) -> bool:
    n = len(run)
    return any(hay[i : i + n] == run for i in range(len(hay) - n + 1))


def score(slides: list[Slide], pages: list[tuple[str, str | None]]) -> dict:
    acc, kept, titles, spaces = [], [], [], []
    for slide, (text, title) in zip(slides, pages):
        truth = [slide.title, *slide.lines, *slide.right]
        got = words(text)
        acc.append(difflib.SequenceMatcher(None, words("\n".join(truth)), got, autojunk=False).ratio())
        kept.extend(_contiguous(words(line), got) for line in truth)
        titles.append((title or "").strip() == slide.title)
        spaces.append(text.count("  "))
    return {
        "word_accuracy": round(statistics.mean(acc), 4),
        "lines_kept": round(statistics.mean(kept), 4),
        "titles_found": round(statistics.mean(titles), 4),
        "double_spaces_per_page": round(statistics.mean(spaces), 2),
    }


def _real_pdf(path: Path, rounds: int) -> dict:
    """notes-rag's reader on a real PDF: pages read, ms a page (median), pages given a heading."""
    from notes_rag.index.readers.pdf import read_pdf

    data = path.read_bytes()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        doc = read_pdf(data)
        times.append(time.perf_counter() - t0)
    lines = doc.text.split("\n")
    headed = sum(lines[s.line_start - 1].startswith("# ") for s in doc.segments)
    n = len(doc.segments)
    return {"pages": n, "ms_per_page": round(1000 * statistics.median(times) / n, 1), "pages_with_heading": headed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slides", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--pdf", type=Path, nargs="*", default=[], help="Also time the reader on these real PDFs.")
    args = ap.parse_args()
    import pdfplumber
    import pypdf

    slides = make_slides(args.slides)
    with tempfile.TemporaryDirectory() as tmp:
        deck = write_slide_deck(Path(tmp) / "deck.pdf", slides, font=str(FONT) if FONT.is_file() else None)
        results = {}
        for name, extract in LIBRARIES.items():
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                pages = extract(deck)
                times.append(time.perf_counter() - t0)
            ms = round(1000 * statistics.median(times) / len(slides), 2)
            results[name] = {**score(slides, pages), "ms_per_page": ms}
    real = {str(p): _real_pdf(p, args.rounds) for p in args.pdf}
    report = {
        "slides": args.slides,
        "rounds": args.rounds,
        "versions": {"pypdf": pypdf.__version__, "pdfplumber": pdfplumber.__version__},
        "results": results,
        "real_pdfs": real,
    }
    print(f"{'library':<16}{'word acc':>10}{'lines kept':>12}{'titles':>8}{'2-spaces/pg':>13}{'ms/page':>9}")
    for name, r in results.items():
        print(
            f"{name:<16}{r['word_accuracy']:>10.3f}{r['lines_kept']:>12.3f}{r['titles_found']:>8.2f}"
            f"{r['double_spaces_per_page']:>13.2f}{r['ms_per_page']:>9.2f}"
        )
    for path, r in real.items():
        print(f"{path}: {r['pages']} pages, {r['ms_per_page']} ms/page, {r['pages_with_heading']} with a heading")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
