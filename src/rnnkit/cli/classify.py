"""``rnnkit classify train | predict | eval``: the sequence-classification job.

``train`` reads labelled sequences (a wide CSV of numbers, JSON lines, a folder of
texts per label, a CSV of texts) or the built-in digits example, keeps a stratified
part for validation, and trains a :class:`SequenceClassifier` with the minibatch
trainer, keeping the checkpoint of best validation accuracy. The run directory
holds, besides the trainer's files, ``vocab.json`` for texts; the checkpoints' meta
holds the classes and the data settings, so ``predict`` and ``eval`` read new data
the way training did.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rnnkit.cli.config import merge, read_toml, table
from rnnkit.cli.errors import UsageError
from rnnkit.cli.lm import add_optimizer_options, add_run_options, flags, resolve_device
from rnnkit.cli.runs import open_run, refuse_existing, resumed_run
from rnnkit.engines import ENGINE_NAMES
from rnnkit.models.builder import CELL_KINDS
from rnnkit.train import distributed

TASK = "classify"
DEFAULT_RUN = "runs/classify"
DEFAULT_EPOCHS = 30  # when no stopping rule is given at all ...
DEFAULT_PATIENCE = 10  # ... with early stopping after this many epochs without a gain
EXAMPLES = ("digits",)
# Settings that suit each layout of the digits example (flags and --config override them).
# rows: 98.3 % test accuracy in a few seconds; pixels (64 steps): 97.8 % in 1-3.5 minutes.
DIGITS_SETTINGS = {
    "rows": {"model": {"cell": "gru", "hidden_size": 64}, "train": {"lr": 1e-2, "epochs": 15}},
    "pixels": {
        "model": {"cell": "lstm", "hidden_size": 128},
        "train": {
            "lr": 5e-3,
            "clip_norm": 1.0,
            "optimizer": "adamw",
            "weight_decay": 0.2,
            "epochs": 80,
        },
    },
}
EVAL_BATCH = 256  # sequences per forward pass when validating and predicting

DATA_SETTINGS = (
    "data", "example", "format", "label_column", "text_column", "tokens", "max_length",
    "max_vocab", "steps", "val_fraction",
)  # fmt: skip
MODEL_SETTINGS = (
    "cell", "hidden_size", "num_layers", "bidirectional", "pooling", "embedding_size",
    "dropout", "layer_norm", "engine",
)  # fmt: skip
TRAIN_SETTINGS = (
    "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps", "decay", "clip_norm",
    "clip_value", "eval_every", "patience", "seed",
)  # fmt: skip
SETTINGS = DATA_SETTINGS + MODEL_SETTINGS + TRAIN_SETTINGS


@dataclass
class ClassifyDataConfig:
    """Where the labelled sequences come from and how they are read."""

    data: str | None = None  # a file or folder of labelled sequences
    example: str | None = None  # or a built-in example: digits
    format: str | None = None  # csv | jsonl | text-folder | text-csv; None: from the path
    label_column: str = "label"  # label column (CSV) or key (JSONL)
    text_column: str = "text"  # text column of a text CSV
    sequence_key: str = "sequence"  # sequence key of a JSONL object
    tokens: str = "char"  # texts: char | word
    max_length: int | None = None  # texts: keep the first max_length tokens
    max_vocab: int | None = None  # texts: keep the most frequent tokens only
    steps: str | None = None  # digits: rows (8 × 8 features) | pixels (64 × 1); default rows
    val_fraction: float | None = None  # stratified validation part (default 0.1)
    split_seed: int = 0  # seed of the train/validation split

    def __post_init__(self) -> None:
        from rnnkit.data.digits import LAYOUTS
        from rnnkit.data.labeled import FORMATS

        if (self.data is None) == (self.example is None):
            raise UsageError("give the data: either --data FILE_OR_FOLDER or --example digits")
        if self.example is not None and self.example not in EXAMPLES:
            raise UsageError(f"unknown example {self.example!r}; choose one of {EXAMPLES}")
        if self.format is not None and self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.tokens not in ("char", "word"):
            raise UsageError(f"tokens must be 'char' or 'word', got {self.tokens!r}")
        if self.steps is not None and self.steps not in LAYOUTS:
            raise UsageError(f"steps must be one of {', '.join(LAYOUTS)}, got {self.steps!r}")
        if self.example is not None:
            if self.val_fraction is not None:
                raise UsageError(
                    "the digits example has a fixed split (70/10/20); drop --val-fraction"
                )
            if self.format is not None:
                raise UsageError("--format applies to --data only")
        elif self.steps is not None:
            raise UsageError("--steps applies to --example digits only")
        if self.val_fraction is not None and not 0.0 < self.val_fraction <= 0.5:
            raise UsageError(f"val_fraction must be in (0, 0.5], got {self.val_fraction}")
        for name in ("max_length", "max_vocab"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 2):
                raise UsageError(f"{name} must be an integer of at least 2, got {value!r}")

    @property
    def layout(self) -> str:
        return self.steps or "rows"


# ---------------------------------------------------------------------------- parsers


def add_classify_parser(sub) -> None:
    p = sub.add_parser("classify", help="sequence classification: train, predict, eval")
    job = p.add_subparsers(dest="classify_command", required=True, metavar="{train,predict,eval}")
    add_train_parser(job)
    add_predict_parser(job)
    add_eval_parser(job)


def _data_source(p, what: str) -> None:
    g = p.add_argument_group("data")
    source = g.add_mutually_exclusive_group()
    source.add_argument(
        "--data", help=f"{what}: a CSV, JSONL, text CSV, or folder of texts per label"
    )
    source.add_argument("--example", choices=EXAMPLES, help="the built-in 8×8 digits")
    g.add_argument(
        "--format",
        choices=("csv", "jsonl", "text-folder", "text-csv"),
        help="data format (default: from the suffix; a folder is text-folder; "
        "a .csv with a text column is text-csv)",
    )


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a recurrent sequence classifier",
        description="Train a recurrent classifier on labelled sequences; the checkpoint with "
        "the best validation accuracy is kept.",
    )
    _data_source(p, "labelled sequences")
    g = p.add_argument_group("reading the data")
    g.add_argument("--label-column", help="label column (CSV) or key (JSONL) (default label)")
    g.add_argument("--text-column", help="text column of a text CSV (default text)")
    g.add_argument("--tokens", choices=("char", "word"), help="texts: token level (default char)")
    g.add_argument("--max-length", type=int, help="texts: keep the first N tokens")
    g.add_argument("--max-vocab", type=int, help="texts: vocabulary size cap")
    g.add_argument(
        "--steps",
        choices=("rows", "pixels"),
        help="digits: 8 rows of 8 pixels, or 64 pixels one by one (default rows)",
    )
    g.add_argument("--val-fraction", type=float, help="stratified validation part (default 0.1)")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=tuple(CELL_KINDS), help="recurrent cell (default lstm)")
    g.add_argument("--hidden-size", type=int, help="units per layer and direction (default 128)")
    g.add_argument("--num-layers", type=int, help="stacked layers (default 1)")
    g.add_argument(
        "--bidirectional", action="store_true", default=None, help="read each sequence both ways"
    )
    g.add_argument(
        "--pooling",
        choices=("last", "mean", "attention"),
        help="how a sequence becomes one vector (default last)",
    )
    g.add_argument("--embedding-size", type=int, help="texts: token embedding width (default 32)")
    g.add_argument(
        "--dropout",
        type=float,
        help="dropout on embeddings, between layers and on the pooled vector (default 0)",
    )
    g.add_argument("--layer-norm", action="store_true", default=None, help="layer-norm LSTM")
    g.add_argument("--engine", choices=ENGINE_NAMES, help="sequence engine")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help="sequences per step (default 32)")
    add_optimizer_options(g, eval_every="an epoch")
    add_run_options(
        p,
        default_out=DEFAULT_RUN,
        default_epochs=f"the example's, else {DEFAULT_EPOCHS} with --patience {DEFAULT_PATIENCE}",
    )
    p.set_defaults(run=train_command)


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="class probabilities of new sequences",
        description="Write one CSV row per sequence: its index, the predicted class, the "
        "probability of each class, and the true label when the data has one.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit classify train`")
    _data_source(p, "sequences to classify (labels optional)")
    p.add_argument("--output", help="predictions CSV (default RUN_DIR/predictions.csv)")
    _use_options(p)
    p.set_defaults(run=predict_command)


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy, macro-F1 and confusion matrix on labelled sequences",
        description="Score a trained classifier; with --example digits, on the example's "
        "test split in the layout the run was trained with.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit classify train`")
    _data_source(p, "labelled sequences")
    p.add_argument("--plot", help="confusion-matrix PNG (default RUN_DIR/confusion.png)")
    _use_options(p)
    p.set_defaults(run=eval_command)


def _use_options(p) -> None:
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH, help="sequences per pass")
    p.add_argument("--device", help="cpu or cuda")


# ------------------------------------------------------------------------------- data


def _format(cfg: ClassifyDataConfig) -> str:
    """The format of ``cfg.data``: given, or from the path (a .csv with a text column is text)."""
    from rnnkit.data.labeled import guess_format

    if cfg.format is not None:
        return cfg.format
    path = Path(cfg.data)
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    guessed = guess_format(path)
    if guessed == "csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                header = [h.strip() for h in next(csv.reader(f), [])]
        except (UnicodeDecodeError, csv.Error):
            return guessed  # the reader reports what is wrong, with the line
        if cfg.text_column in header:
            return "text-csv"
    return guessed


def read_data(cfg: ClassifyDataConfig, *, classes=None, labels_required=True):
    """The file's sequences (``LabeledSequences``) or texts (``LabeledTexts``)."""
    from rnnkit.data.labeled import read_labeled

    return read_labeled(
        cfg.data,
        _format(cfg),
        label_column=cfg.label_column,
        text_column=cfg.text_column,
        sequence_key=cfg.sequence_key,
        classes=classes,
        labels_required=labels_required,
    )


def _encode(data, cfg: ClassifyDataConfig, vocab):
    """Texts as token ids with the run's vocabulary; numeric sequences as they are."""
    from rnnkit.data.labeled import LabeledTexts

    return data.encode(vocab, cfg.max_length) if isinstance(data, LabeledTexts) else data


def _batches(data, batch_size: int, *, shuffle: bool, seed: int = 0):
    from rnnkit.train.fit import Batches

    return Batches(
        data.tensors(),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        lengths_key="lengths",
        time_keys=("x",),
    )


# ------------------------------------------------------------------------------ train


@distributed.with_teardown
def train_command(args) -> int:
    from rnnkit.data.labeled import LabeledTexts
    from rnnkit.data.vocab import Vocab
    from rnnkit.models.classifier import (
        ClassifierConfig,
        SequenceClassifier,
        classification_loss,
        classification_metrics,
    )
    from rnnkit.train.config import FitConfig
    from rnnkit.train.fit import FitTrainer

    run_dir = Path(args.out)
    device = distributed.init(resolve_device(args.device))  # under torchrun: join the group
    stop_flags = flags(args, ("max_steps", "epochs", "time_budget"))
    data_flags = flags(args, DATA_SETTINGS)

    if args.resume:
        checkpoint, saved = resumed_run(args, SETTINGS, TASK, "classify train")
        meta = checkpoint.meta
        data_cfg = ClassifyDataConfig(**meta["data"])
        model_cfg = ClassifierConfig.from_dict(checkpoint.model_config)
        train_cfg = FitConfig.from_dict(saved)
        vocab = Vocab.load(run_dir / "vocab.json") if meta["kind"] == "tokens" else None
        classes = meta["classes"]
    else:
        refuse_existing(run_dir)
        config = read_toml(args.config)
        data_cfg = merge(ClassifyDataConfig, table(config, "data"), data_flags)
        suggested = {"model": {}, "train": {}}
        if data_cfg.example is not None:
            suggested = DIGITS_SETTINGS[data_cfg.layout]
        train_table = {**suggested["train"], **table(config, "train")}
        train_flags = flags(args, TRAIN_SETTINGS)
        if all(train_table.get(k) is None and v is None for k, v in stop_flags.items()):
            stop_flags["epochs"] = DEFAULT_EPOCHS
            if train_table.get("patience") is None and train_flags["patience"] is None:
                train_flags["patience"] = DEFAULT_PATIENCE
        train_cfg = merge(FitConfig, train_table, train_flags, stop_flags)
        model_table = {**suggested["model"], **table(config, "model")}
        model_flags = flags(args, MODEL_SETTINGS)
        # Checked now, with stand-in sizes, so a bad option fails before the data is read.
        merge(ClassifierConfig, model_table, model_flags, num_classes=2, input_size=1)
        vocab, classes = None, None
        if data_cfg.data is not None:  # absolute, so a resume from elsewhere finds it
            data_cfg = replace(data_cfg, data=str(Path(data_cfg.data).resolve()))

    test = None
    if data_cfg.example is not None:
        from rnnkit.data.digits import digits_splits

        train, val, test = digits_splits(data_cfg.layout)
    else:
        data = read_data(data_cfg, classes=classes)
        fraction = data_cfg.val_fraction if data_cfg.val_fraction is not None else 0.1
        train, val, _ = data.split(fraction, 0.0, seed=data_cfg.split_seed)
        if vocab is None and isinstance(data, LabeledTexts):
            vocab = train.build_vocab(data_cfg.tokens, data_cfg.max_vocab)  # training part only
        train, val = _encode(train, data_cfg, vocab), _encode(val, data_cfg, vocab)
    if len(train.classes) < 2:
        raise UsageError(
            f"{train.source} has one class ({train.classes[0]}); a classifier needs two or more"
        )

    if not args.resume:
        sizes = (
            {"vocab_size": len(vocab), "input_size": None}
            if train.kind == "tokens"
            else {"input_size": train.num_features}
        )
        model_cfg = merge(
            ClassifierConfig, model_table, model_flags, num_classes=train.num_classes, **sizes
        )
    meta = {
        "task": TASK,
        "data": asdict(data_cfg),
        "classes": train.classes,
        "kind": train.kind,
        "num_features": train.num_features,
    }
    if not args.resume and distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if vocab is not None:
            vocab.save(run_dir / "vocab.json")

    torch.manual_seed(train_cfg.seed)
    model = SequenceClassifier(model_cfg).to(device)
    trainer = FitTrainer(
        model,
        _batches(train, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed),
        _batches(val, max(EVAL_BATCH, train_cfg.batch_size), shuffle=False),
        train_cfg,
        run_dir,
        loss_fn=classification_loss,
        metrics_fn=classification_metrics,
        monitor="val_accuracy",
        mode="max",
        meta=meta,
        progress=not args.no_progress,
        resume=args.resume,
    )
    trainer.fit()
    if not distributed.is_main():
        return 0  # rank 0 reports

    model, _, _ = load_run(run_dir, "best")
    model.to(device)
    print(f"trained on {len(train)} sequences, {train.num_classes} classes; best checkpoint:")
    scores = classification_metrics(model, _batches(val, EVAL_BATCH, shuffle=False))
    print(f"validation accuracy: {scores['accuracy']:.4f} ({len(val)} sequences)")
    if test is not None:
        scores = classification_metrics(model, _batches(test, EVAL_BATCH, shuffle=False))
        print(f"test accuracy: {scores['accuracy']:.4f} ({len(test)} sequences)")
    print(f"saved the run in {run_dir}")
    return 0


# ---------------------------------------------------------------- using a trained run


def load_run(run_dir: str | Path, tag: str = "best"):
    """The classifier, checkpoint meta and vocabulary (None for numbers) of a run."""
    from rnnkit.data.vocab import Vocab
    from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier

    checkpoint = open_run(run_dir, tag, TASK, "classify train")
    run_dir, meta = Path(run_dir), checkpoint.meta
    if "classes" not in meta:
        raise UsageError(f"{run_dir} does not hold a run of `rnnkit classify train`")
    model = SequenceClassifier(ClassifierConfig.from_dict(checkpoint.model_config))
    checkpoint.load_into(model)
    model.eval()
    vocab = Vocab.load(run_dir / "vocab.json") if meta.get("kind") == "tokens" else None
    return model, meta, vocab


def _data_for_run(args, meta: dict, vocab, labels_required: bool):
    """The sequences of ``--data`` / ``--example`` read the way the run's training data was."""
    from rnnkit.data.labeled import LabeledTexts

    trained = ClassifyDataConfig(**meta["data"])
    if args.example is not None:
        from rnnkit.data.digits import digits_splits

        _, _, data = digits_splits(trained.layout)  # the split training never saw
    elif args.data is not None:
        cfg = replace(
            trained, data=args.data, example=None, format=args.format, steps=None, val_fraction=None
        )
        raw = read_data(cfg, classes=meta["classes"], labels_required=labels_required)
        if isinstance(raw, LabeledTexts) != (meta["kind"] == "tokens"):
            raise UsageError(_other_kind(meta, args.data))
        data = _encode(raw, cfg, vocab)
    else:
        raise UsageError("give the data: either --data FILE_OR_FOLDER or --example digits")
    if data.kind != meta["kind"]:
        raise UsageError(_other_kind(meta, data.source))
    if data.kind == "numeric" and data.num_features != meta["num_features"]:
        raise UsageError(
            f"the run was trained on {meta['num_features']} feature(s) per step; "
            f"{data.source} has {data.num_features}"
        )
    return data


def _other_kind(meta: dict, source) -> str:
    trained_on = "texts" if meta["kind"] == "tokens" else "numeric sequences"
    return f"the run was trained on {trained_on}; {source} does not hold them"


def _probabilities(args, model, data):
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    from rnnkit.models.classifier import predict_batches

    model.to(resolve_device(args.device))
    probs, _ = predict_batches(model, _batches(data, args.batch_size, shuffle=False))
    return probs.numpy()  # (N, C)


def predict_command(args) -> int:
    from rnnkit.atomic import atomic_open_text

    model, meta, vocab = load_run(args.run_dir, args.checkpoint)
    data = _data_for_run(args, meta, vocab, labels_required=False)
    probs = _probabilities(args, model, data)
    classes = meta["classes"]
    predicted = probs.argmax(1)
    out = Path(args.output) if args.output else Path(args.run_dir) / "predictions.csv"
    header = ["index", "predicted"] + (["label"] if data.labels is not None else [])
    header += [f"p_{c}" for c in classes]
    with atomic_open_text(out) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for i in range(len(probs)):
            row = [i, classes[predicted[i]]]
            if data.labels is not None:
                row.append(classes[data.labels[i]])
            writer.writerow(row + [f"{p:.6g}" for p in probs[i].tolist()])
    print(f"wrote {len(probs)} predictions to {out}")
    return 0


def eval_command(args) -> int:
    from rnnkit.metrics.classification import (
        accuracy,
        confusion_matrix,
        format_confusion,
        macro_f1,
        plot_confusion,
    )

    model, meta, vocab = load_run(args.run_dir, args.checkpoint)
    data = _data_for_run(args, meta, vocab, labels_required=True)
    predicted = _probabilities(args, model, data).argmax(1)
    classes = meta["classes"]
    truth = np.asarray(data.labels)
    acc, f1 = accuracy(truth, predicted), macro_f1(truth, predicted)
    matrix = confusion_matrix(truth, predicted, len(classes))
    what = "the digits test split" if args.example else str(args.data)
    print(f"accuracy: {acc:.4f}")
    print(f"macro-F1: {f1:.4f}")
    print(f"on {len(truth)} sequences of {what}; confusion matrix (rows: true class):")
    print(format_confusion(matrix, classes))
    plot = Path(args.plot) if args.plot else Path(args.run_dir) / "confusion.png"
    plot_confusion(matrix, classes, plot, title=f"accuracy {acc:.4f}, macro-F1 {f1:.4f}")
    print(f"wrote {plot}")
    return 0
