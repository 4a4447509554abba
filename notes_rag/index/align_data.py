"""Parallel English–Polish text in our domain, for aligning the encoder across the two languages.

    notes-rag align-data --out data/align          # train.jsonl, heldout.jsonl, stats.json

Three sources, each row `{"en", "pl", "source", "kind"}`:

- **kit** (`shared/data/pretrain`): the Python docs, GNOME help, GNOME apps help and the Debian
  handbook exist in both languages as the same documents (the last part of `source` names the
  page). Documents are paired by that name, then paragraphs by a monotonic alignment (dynamic
  programming, 1–1 pairs with skips on either side: the Polish files keep only translated
  paragraphs). A pair is kept only when it is confident: it shares identifiers, numbers or names
  with its partner (`_anchors`), or it sits in a run between two such pairs (or a document edge)
  with as many English as Polish paragraphs, and its length ratio is a translation's.
- **gettext** (`/usr/share/locale/pl/LC_MESSAGES/*.mo`): Debian's translations of program
  messages (English msgid, Polish msgstr), read with `gettext.GNUTranslations` (no pickle),
  placeholders and accelerator marks removed, capped per catalogue so no program dominates.
- **tatoeba** (`shared/data/sft/enpl_parallel_tatoeba.jsonl.xz`): everyday sentences, the
  longer ones.

The held-out slice is whole documents for the kit and random rows for the others, chosen by a
seeded hash so the split never changes when a source grows. Never reads the notes or eval sets.
"""

from __future__ import annotations

import gettext
import hashlib
import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json, atomic_write_text
from notes_rag.lang import detect_lang
from notes_rag.sft.kit import read_jsonl_xz

# kit file pairs that hold the same documents in both languages
KIT_PAIRS = ("python_docs", "gnome_help", "gnome_apps_help", "debian_handbook")


@dataclass
class AlignDataConfig:
    kit_dir: Path = Path("../shared/data/pretrain")
    tatoeba: Path = Path("../shared/data/sft/enpl_parallel_tatoeba.jsonl.xz")
    locale_dir: Path = Path("/usr/share/locale/pl/LC_MESSAGES")
    min_chars: int = 20  # shorter paragraphs are titles and menu items: too little to align on
    max_chars: int = 400  # ~96 encoder tokens, under the training length: longer ones would be cut unevenly
    pl_en_ratio: tuple[float, float] = (0.75, 1.6)  # Polish/English length ratio of a translation
    gettext_per_catalog: int = 60  # ~3k messages: what a 40-minute run on 2 busy cores gets through
    gettext_min_chars: int = 16
    tatoeba_rows: int = 1000
    tatoeba_min_chars: int = 30
    heldout_share: float = 0.08
    seed: int = 0
    skip_catalogs: tuple[str, ...] = field(default=("iso_",))  # country and language names, not prose


@dataclass
class Pair:
    en: str
    pl: str
    source: str
    kind: str  # kit | gettext | tatoeba

    def row(self) -> dict:
        return {"en": self.en, "pl": self.pl, "source": self.source, "kind": self.kind}


# ------------------------------------------------------------------ kit documents

_ANCHOR = re.compile(r"[\w][\w.\-/+:]*")
_PAGE_SUFFIX = re.compile(r"\.(html|po|page)$")


def page_key(source: str) -> str:
    """The page a kit record is: the last `:` part of `source` without its file suffix."""
    return _PAGE_SUFFIX.sub("", source.rsplit(":", 1)[-1])


def _anchors(text: str) -> set[str]:
    """Tokens a translation keeps verbatim: those with a digit, an inner capital, or code punctuation
    (`os.path`, `LVM`, `3.11`), and capitalised names (`Brasero`) not at a sentence start, case kept."""
    out = set()
    for m in _ANCHOR.finditer(text):
        tok = m.group().rstrip(".:-/")
        if len(tok) < 2:
            continue
        before = text[: m.start()].rstrip()
        if any(c.isdigit() for c in tok) or any(c in "._/+:" for c in tok) or any(c.isupper() for c in tok[1:]):
            out.add(tok)
        elif tok[0].isupper() and len(tok) >= 4 and before and before[-1] not in ".!?:":
            out.add(tok)
    return out


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _pair_score(en: str, pl: str, a_en: set[str], a_pl: set[str], cfg: AlignDataConfig) -> tuple[float, bool]:
    """(alignment score, anchored): shared anchors and a translation-like length ratio score up."""
    ratio = len(pl) / max(len(en), 1)
    lo, hi = cfg.pl_en_ratio
    length = 1.0 - abs(math.log(ratio / 1.1)) / math.log(hi / 1.1)  # 1 at the typical ratio, 0 at the limits
    shared = a_en & a_pl
    union = a_en | a_pl
    jaccard = len(shared) / len(union) if union else 0.0
    anchored = bool(shared) and jaccard >= 0.34 and lo <= ratio <= hi
    return 2.0 * jaccard + 0.5 * length - 0.4, anchored


def align_paragraphs(en: list[str], pl: list[str], cfg: AlignDataConfig) -> list[tuple[int, int]]:
    """Confident 1–1 paragraph pairs (indices) of one document in both languages."""
    a_en, a_pl = [_anchors(p) for p in en], [_anchors(p) for p in pl]
    n, m = len(en), len(pl)
    scores = [[_pair_score(en[i], pl[j], a_en[i], a_pl[j], cfg) for j in range(m)] for i in range(n)]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, prev = best[i], best[i - 1]
        for j in range(1, m + 1):
            row[j] = max(prev[j], row[j - 1], prev[j - 1] + scores[i - 1][j - 1][0])
    path, i, j = [], n, m
    while i and j:
        if best[i][j] == best[i - 1][j - 1] + scores[i - 1][j - 1][0] and scores[i - 1][j - 1][0] > -0.4:
            path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j]:
            i -= 1
        else:
            j -= 1
    path.reverse()
    # anchored pairs are trusted; the others only inside a run of equal length between trusted ends
    trusted = [(-1, -1)] + [(i, j) for i, j in path if scores[i][j][1]] + [(n, m)]
    keep = []
    for (i0, j0), (i1, j1) in zip(trusted, trusted[1:]):
        if 0 <= i0:
            keep.append((i0, j0))
        if i1 - i0 == j1 - j0:
            keep.extend((i0 + k, j0 + k) for k in range(1, i1 - i0))
    lo, hi = cfg.pl_en_ratio
    return [(i, j) for i, j in keep if lo <= len(pl[j]) / max(len(en[i]), 1) <= hi]


def _usable(en: str, pl: str, cfg: AlignDataConfig) -> bool:
    return (
        cfg.min_chars <= len(en) <= cfg.max_chars
        and cfg.min_chars <= len(pl) <= cfg.max_chars
        and en != pl  # an untranslated paragraph
        and detect_lang(pl, "en") == "pl"
        and detect_lang(en, "pl") == "en"
    )


def kit_pairs(cfg: AlignDataConfig) -> Iterator[tuple[str, Pair]]:
    """(document key, pair) for the kit's documents present in both languages."""
    for name in KIT_PAIRS:
        files = [cfg.kit_dir / f"{lang}_{name}.jsonl.xz" for lang in ("en", "pl")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise NotesRagError(f"align-data needs the kit's pretraining files: {', '.join(missing)} missing")
        docs = [{page_key(r["source"]): r for r in read_jsonl_xz(f)} for f in files]
        for key in sorted(docs[0].keys() & docs[1].keys()):
            en, pl = _paragraphs(docs[0][key]["text"]), _paragraphs(docs[1][key]["text"])
            for i, j in align_paragraphs(en, pl, cfg):
                if _usable(en[i], pl[j], cfg):
                    yield f"{name}:{key}", Pair(en[i], pl[j], f"{name}:{key}", "kit")


# ------------------------------------------------------------------ gettext and Tatoeba

_PLACEHOLDER = re.compile(r"%(\d+\$)?[-+ #0]*\d*(\.\d+)?[hlLqjzt]*[diouxXeEfgGcsp%]|%[A-Za-z]*\b|\{[^}]*\}")
_ACCEL = re.compile(r"(?<!\w)[_&](?=\w)")


def _clean_message(text: str) -> str:
    text = _ACCEL.sub("", _PLACEHOLDER.sub("", text))
    return " ".join(text.replace("\\n", " ").split()).strip(" :")


def gettext_pairs(cfg: AlignDataConfig) -> Iterator[Pair]:
    """Translated program messages of the installed Debian packages, `gettext_per_catalog` at most each."""
    rng = random.Random(cfg.seed)
    for mo in sorted(cfg.locale_dir.glob("*.mo")):
        if mo.name.startswith(cfg.skip_catalogs):
            continue
        try:
            with mo.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise NotesRagError(f"cannot read the gettext catalogue {mo}: {e}") from e
        rows = []
        for msgid, msgstr in catalog.items():
            if not isinstance(msgid, str) or not msgid or not msgstr:  # plural forms are (msgid, n) keys
                continue
            en, pl = _clean_message(msgid), _clean_message(msgstr)
            if len(en) >= cfg.gettext_min_chars and len(pl) >= cfg.gettext_min_chars and en != pl:
                rows.append(Pair(en, pl, f"gettext:{mo.stem}", "gettext"))
        rng.shuffle(rows)
        yield from rows[: cfg.gettext_per_catalog]


def tatoeba_pairs(cfg: AlignDataConfig) -> Iterator[Pair]:
    """The `tatoeba_rows` longest-enough Tatoeba pairs, sampled evenly (the file is sorted by length)."""
    if not cfg.tatoeba.is_file():
        raise NotesRagError(f"align-data needs {cfg.tatoeba}")
    rows = [r for r in read_jsonl_xz(cfg.tatoeba) if len(r["en"]) >= cfg.tatoeba_min_chars]
    random.Random(cfg.seed).shuffle(rows)
    for r in rows[: cfg.tatoeba_rows]:
        yield Pair(r["en"], r["pl"], "tatoeba", "tatoeba")


# ------------------------------------------------------------------ the split and the files


def _held_out(key: str, cfg: AlignDataConfig) -> bool:
    digest = hashlib.sha256(f"{cfg.seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < cfg.heldout_share


def build_align_data(cfg: AlignDataConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) pairs of every source, without duplicates."""
    train, heldout, seen = [], [], set()

    def add(key: str, pair: Pair) -> None:
        if (pair.en, pair.pl) in seen:
            return
        seen.add((pair.en, pair.pl))
        (heldout if _held_out(key, cfg) else train).append(pair)

    for doc, pair in kit_pairs(cfg):
        add(doc, pair)
    for pair in (*gettext_pairs(cfg), *tatoeba_pairs(cfg)):
        add(pair.en + "\0" + pair.pl, pair)
    return train, heldout


def write_align_data(cfg: AlignDataConfig, out: Path) -> dict:
    """Write `train.jsonl`, `heldout.jsonl` and `stats.json` (pairs per kind and split) into `out`."""
    train, heldout = build_align_data(cfg)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = defaultdict(lambda: {"train": 0, "heldout": 0})
    for split, pairs in (("train", train), ("heldout", heldout)):
        atomic_write_text(
            out / f"{split}.jsonl", "".join(json.dumps(p.row(), ensure_ascii=False) + "\n" for p in pairs)
        )
        for p in pairs:
            stats[p.kind][split] += 1
    stats = dict(stats)
    atomic_write_json(out / "stats.json", stats)
    return stats


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a `train.jsonl` / `heldout.jsonl` written by `write_align_data`."""
    if not path.is_file():
        raise NotesRagError(f"{path} not found (make it with notes-rag align-data)")
    try:
        return [Pair(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, TypeError) as e:
        raise NotesRagError(f"{path} is not an align-data file ({e})") from e
