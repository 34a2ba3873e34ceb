"""The data side of ``rnnkit seq2seq``: settings, splits, vocabularies, checks, batches.

A run's pairs come from a TSV file (``source<TAB>target`` a line), split by distinct
source into training, validation and test parts (``split_pairs``; ``--val-pairs``
replaces the validation part), or from a built-in task (``make_splits``). The
settings that choose the data are stored in every checkpoint's meta, so ``eval`` and
``--resume`` rebuild the very same parts; the vocabularies come from the training
pairs only and are saved beside the checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rnnkit.cli.errors import UsageError
from rnnkit.data.pairs import PairVocab, read_pairs
from rnnkit.data.seq2seq_tasks import TASKS, task_settings
from rnnkit.data.vocab import tokenize
from rnnkit.train.config import FitConfig

Pairs = list[tuple[str, str]]

SRC_VOCAB, TGT_VOCAB = "src_vocab.json", "tgt_vocab.json"
DEFAULT_VAL_FRACTION = 0.1  # of a pairs file's distinct sources
DEFAULT_TEST_FRACTION = 0.1
TASK_OPTIONS = {
    "reverse": ("min_len", "max_len"),
    "sort": ("min_len", "max_len"),
    "dates": (),
    "addition": ("max_digits",),
}
_SHOWN = 5  # unknown tokens named in an error
_COUNTS = ("max_vocab", "train_size", "val_size", "test_size", "min_len", "max_len", "max_digits")

# What each built-in example trains with unless flags or the config say otherwise.
# Test exact match (greedy) and training time, one thread on a busy 2-core machine:
# dates 100 % in 105 s, reverse 99.2 % in 88 s (benchmarks/seq2seq.py), sort 100 % in
# 110 s, addition 99.1 % in 90 s.
EXAMPLE_SETTINGS: dict[str, dict[str, dict]] = {
    "dates": {
        "model": {"encoder_hidden_size": 128, "decoder_hidden_size": 128},
        "train": {"batch_size": 64, "lr": 3e-3, "epochs": 3},
    },
    "reverse": {
        "model": {
            "encoder_embedding_size": 32,
            "decoder_embedding_size": 32,
            "encoder_hidden_size": 64,
            "decoder_hidden_size": 64,
        },
        "train": {"batch_size": 64, "lr": 3e-3, "epochs": 4},
    },
    "sort": {
        "model": {"encoder_hidden_size": 128, "decoder_hidden_size": 128},
        "train": {"batch_size": 64, "lr": 3e-3, "epochs": 6},
    },
    "addition": {
        "model": {"encoder_hidden_size": 128, "decoder_hidden_size": 128},
        "train": {"batch_size": 64, "lr": 3e-3, "epochs": 10},
    },
}
# The command line's own model defaults, under the example's and the config's.
CLI_MODEL_DEFAULTS = {"bidirectional": True}


@dataclass
class Seq2SeqDataConfig:
    """Where the pairs come from and how they are split (the ``[data]`` table)."""

    pairs: str | None = None  # a UTF-8 TSV file: source<TAB>target a line
    val_pairs: str | None = None  # validation pairs from another file (no validation split)
    example: str | None = None  # or a built-in task: reverse | sort | dates | addition
    tokens: str = "char"  # char | word (examples: char)
    max_vocab: int | None = None  # per side, the 4 special tokens included
    val_fraction: float | None = None  # of the distinct sources (default 0.1; 0 with val_pairs)
    test_fraction: float | None = None  # of the distinct sources (default 0.1)
    split_seed: int = 0  # seed of the split, or of the example's pairs
    train_size: int | None = None  # examples: pairs per part (default 20000 / 1000 / 1000)
    val_size: int | None = None
    test_size: int | None = None
    min_len: int | None = None  # reverse, sort: source lengths (default 20-30 / 5-15)
    max_len: int | None = None
    max_digits: int | None = None  # addition: digits per operand (default 3)

    def __post_init__(self) -> None:
        if (self.pairs is None) == (self.example is None):
            raise UsageError("give the data: either --pairs FILE.tsv or --example TASK")
        if self.example is not None:
            if self.example not in TASKS:
                raise UsageError(
                    f"unknown example {self.example!r}; choose one of {', '.join(TASKS)}"
                )
            for name in ("val_pairs", "val_fraction", "test_fraction"):
                if getattr(self, name) is not None:
                    raise UsageError(f"--{name.replace('_', '-')} applies to --pairs only")
            if self.tokens != "char":
                raise UsageError("the built-in examples are character tasks; drop --tokens")
            allowed = TASK_OPTIONS[self.example]
            for name in ("min_len", "max_len", "max_digits"):
                if getattr(self, name) is not None and name not in allowed:
                    raise UsageError(
                        f"--{name.replace('_', '-')} does not apply to the {self.example} example"
                    )
        else:
            for name in _COUNTS[1:]:  # the example's options
                if getattr(self, name) is not None:
                    raise UsageError(f"--{name.replace('_', '-')} applies to --example only")
        if self.tokens not in ("char", "word"):
            raise UsageError(f"tokens must be 'char' or 'word', got {self.tokens!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
            ):
                raise UsageError(f"{name} must be in [0, 1), got {value!r}")
        if self.val_pairs is not None and self.val_fraction:
            raise UsageError("--val-pairs replaces the validation split; drop --val-fraction")
        for name in _COUNTS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise UsageError(f"split_seed must be an integer >= 0, got {self.split_seed!r}")
        if self.max_vocab is not None and self.max_vocab < 5:
            raise UsageError(
                f"max_vocab must be at least 5 (4 special tokens), got {self.max_vocab}"
            )

    @property
    def task_options(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in TASK_OPTIONS.get(self.example, ()) if getattr(self, k)}

    def describe(self) -> str:
        """A short name of the data for the printed reports."""
        if self.example is None:
            return Path(self.pairs).name
        what = task_settings(self.example, **self.task_options).description
        return f"the {self.example} example ({what})"

    def absolute(self) -> Seq2SeqDataConfig:
        """File paths made absolute, so that a resume or eval from elsewhere finds them."""
        return replace(
            self,
            pairs=str(Path(self.pairs).resolve()) if self.pairs else None,
            val_pairs=str(Path(self.val_pairs).resolve()) if self.val_pairs else None,
        )


@dataclass
class Seq2SeqTrainConfig(FitConfig):
    """:class:`FitConfig` plus scheduled sampling (the ``[train]`` table)."""

    settings_kind = "seq2seq training"

    batch_size: int = 64
    sampling_ratio: float = 0.0  # chance of feeding the model's own previous prediction

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.sampling_ratio
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r <= 1:
            raise ValueError(f"sampling_ratio must be in [0, 1], got {r!r}")


# ----------------------------------------------------------------------------- reading


def load_splits(cfg: Seq2SeqDataConfig) -> tuple[Pairs, Pairs, Pairs]:
    """``(train, val, test)`` pairs of the run's data; an empty training or validation
    part is an error (the test part may be empty: ``--test-fraction 0``)."""
    if cfg.example is not None:
        from rnnkit.data.seq2seq_tasks import make_splits

        s = task_settings(cfg.example, **cfg.task_options)
        sizes = (cfg.train_size or s.train_size, cfg.val_size or s.val_size)
        test_size = cfg.test_size or s.test_size
        return make_splits(cfg.example, *sizes, test_size, cfg.split_seed, **cfg.task_options)
    from rnnkit.data.pairs import split_pairs

    pairs = read_pairs(cfg.pairs)
    test_fraction = DEFAULT_TEST_FRACTION if cfg.test_fraction is None else cfg.test_fraction
    if cfg.val_pairs is not None:
        val = read_pairs(cfg.val_pairs)
        train, _, test = split_pairs(pairs, 0.0, test_fraction, cfg.split_seed)
    else:
        val_fraction = DEFAULT_VAL_FRACTION if cfg.val_fraction is None else cfg.val_fraction
        train, val, test = split_pairs(pairs, val_fraction, test_fraction, cfg.split_seed)
    if not val:
        raise UsageError(
            f"{cfg.pairs} has too few distinct sources for a validation part; give more "
            f"pairs, a larger --val-fraction or --val-pairs FILE"
        )
    return train, val, test


def build_vocabs(train: Pairs, kind: str, max_size: int | None) -> tuple[PairVocab, PairVocab]:
    """Source and target vocabularies of the training pairs."""
    src = PairVocab.build([s for s, _ in train], kind, max_size=max_size)
    tgt = PairVocab.build([t for _, t in train], kind, max_size=max_size)
    return src, tgt


def load_vocabs(run_dir: Path) -> tuple[PairVocab, PairVocab]:
    return PairVocab.load(run_dir / SRC_VOCAB), PairVocab.load(run_dir / TGT_VOCAB)


def check_same_vocabs(cfg: Seq2SeqDataConfig, train: Pairs, saved) -> None:
    """Refuse data that no longer gives the run's vocabularies (the file changed)."""
    if build_vocabs(train, cfg.tokens, cfg.max_vocab) != tuple(saved):
        raise UsageError(
            f"{cfg.pairs} no longer gives the vocabularies the run was trained with "
            f"(the file changed); restore it or start a new run"
        )


def longest_target(pairs: Pairs, kind: str) -> int:
    return max(len(tokenize(t, kind)) for _, t in pairs)


def default_max_len(train: Pairs, kind: str) -> int:
    """Decoding limit in tokens (``</s>`` included): room for twice the longest target."""
    return 2 * longest_target(train, kind) + 10


# ------------------------------------------------------------------------------ checks


def pair_lines(path: str | Path) -> list[int]:
    """The line number of each pair ``read_pairs`` returns (it skips blank lines)."""
    text = Path(path).read_bytes().decode("utf-8-sig")
    lines = text.split("\n")
    return [n for n, line in enumerate(lines, start=1) if line.strip()]


def check_known(texts: list[str], vocab: PairVocab, where: str, lines: list[int] | None = None):
    """Refuse the first text with tokens ``vocab`` does not know (one line naming them)."""
    for i, text in enumerate(texts):
        unknown = vocab.unknown(text)
        if unknown:
            line = lines[i] if lines is not None else i + 1
            shown = ", ".join(repr(t) for t in unknown[:_SHOWN])
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            raise UsageError(
                f"{where} line {line}: the run's source vocabulary does not know {shown}{more}; "
                f"fix the input or pass --allow-unknown to read them as <unk>"
            )
