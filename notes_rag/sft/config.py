"""`BuildConfig`: the knobs of `notes-rag sft-data` (sources, mix, simulated retrieval), with the
per-source mix and the pretraining files the QA generator reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.sft.qa_generator import GenConfig

# Multipliers on each source's natural training count (1 = every item once, 0.5 = half of them,
# 2 = twice with different distractors). Polish is upsampled (PoQuAD x1.5); ROPES (12k templated
# comparisons) and Tatoeba (43k short pairs) are sampled down to a small share.
DEFAULT_MIX = {
    "xquad": 1.0,
    "xquad_neg": 0.5,
    "xquad_dialog": 1.0,
    "squad2": 1.0,
    "boolq": 0.5,
    "ropes": 0.08,
    "poquad": 1.5,
    "instructions": 0.7,
    "tatoeba": 0.015,
    "gen_pl": 1.0,
    "gen_en": 1.0,
    "gen_xling": 1.0,
}

# Pretraining files the generator reads (Polish technical prose first; literature is left out:
# 19th-century prose yields neither definitions nor note-like questions).
GEN_FILES_PL = (
    "pl_wikipedia_paragraphs",
    "pl_python101",
    "pl_ms_edgeai_beginners",
    "pl_ms_iot_beginners",
    "pl_ms_security101",
    "pl_ms_azd_beginners",
    "pl_ms_foundry_local_lab",
    "pl_ms_foundry_toolkit_lab",
    "pl_mdn_archived",
    "pl_react_docs",
    "pl_python_docs",
    "pl_djangogirls",
    "pl_symfony_docs",
    "pl_php_manual",
    "pl_gnome_help",
    "pl_gnome_apps_help",
    "pl_libreoffice_help",
    "pl_kde_handbooks",
    "pl_debian_handbook",
    "pl_kicad_docs",
)
GEN_FILES_EN = (
    "en_d2l",
    "en_sklearn_docs",
    "en_pandas_docs",
    "en_python_docs",
    "en_openstax",
    "en_django_docs",
    "en_gnome_help",
    "en_debian_handbook",
    "en_rust_docs",
    "en_sqlite_docs",
    "en_postgresql_docs",
    "en_apache_docs",
    "en_nodejs_docs",
    "en_ghc_users_guide",
)


@dataclass
class BuildConfig:
    data_dir: Path = Path("../shared/data")  # holds sft/ and pretrain/
    seed: int = 1234
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    val_frac: float = 0.05  # share of paragraph/document keys held out per source
    val_max_per_source: int = 200
    k_range: tuple[int, int] = (3, 5)  # passages per conversation
    chunk_words: tuple[int, int] = (100, 150)  # our retrieval chunks are ~120 words
    drop_gold_rate: float = 0.08
    random_distractor_rate: float = 0.2
    max_tokens: int = 1024
    gen_files: tuple[str, ...] = GEN_FILES_PL + GEN_FILES_EN
    gen_max_per_file: int = 700
    gen_max_per_file_wiki: int = 2500  # Wikipedia leads: the only big modern Polish prose file
    gen: GenConfig = field(default_factory=GenConfig)
