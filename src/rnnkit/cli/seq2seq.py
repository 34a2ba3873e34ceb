"""``rnnkit seq2seq train | translate | eval``: encoder–decoder sequence-to-sequence.

``train`` reads ``source<TAB>target`` pairs (or a built-in task: reverse, sort, dates,
addition), builds the source and target vocabularies from the training pairs, and
trains a :class:`~rnnkit.models.seq2seq.Seq2Seq` with the minibatch trainer on
length-bucketed batches, keeping the checkpoint of best validation exact match (greedy
decoding of the whole validation part). It ends with the test part's exact match,
token accuracy, character error rate and BLEU, for greedy decoding and, with
``--beam W``, beam search. ``translate`` decodes one source per input line; ``eval``
scores a run on pairs. The run directory holds the trainer's files and
``src_vocab.json`` / ``tgt_vocab.json``; the checkpoints' meta holds the data settings,
so ``eval`` and ``--resume`` rebuild the same split.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from rnnkit.cli.config import merge, read_toml, table
from rnnkit.cli.errors import UsageError
from rnnkit.cli.lm import add_optimizer_options, add_run_options, flags, resolve_device
from rnnkit.cli.runs import open_run, refuse_existing, resumed_run
from rnnkit.cli.seq2seq_data import (
    CLI_MODEL_DEFAULTS,
    EXAMPLE_SETTINGS,
    SRC_VOCAB,
    TGT_VOCAB,
    Seq2SeqDataConfig,
    Seq2SeqTrainConfig,
    build_vocabs,
    check_known,
    check_same_vocabs,
    default_max_len,
    load_splits,
    load_vocabs,
    pair_lines,
)
from rnnkit.cli.seq2seq_decode import (
    EVAL_BATCH,
    METRIC_NAMES,
    METRICS,
    checked_decoding,
    decode_texts,
    format_table,
    scores,
    validation_metrics,
)
from rnnkit.data.buckets import BucketBatches
from rnnkit.data.seq2seq_tasks import TASKS
from rnnkit.engines import ENGINE_NAMES
from rnnkit.models.builder import CELL_KINDS
from rnnkit.train import distributed

TASK = "seq2seq"
DEFAULT_RUN = "runs/seq2seq"
DEFAULT_EPOCHS = 30  # when no stopping rule is given at all ...
DEFAULT_PATIENCE = 5  # ... with early stopping after this many epochs without a gain

DATA_SETTINGS = (
    "pairs", "val_pairs", "example", "tokens", "max_vocab", "val_fraction", "test_fraction",
    "split_seed", "train_size", "val_size", "test_size", "min_len", "max_len", "max_digits",
)  # fmt: skip
# Flags that set one field of each side (encoder_X and decoder_X) of Seq2SeqConfig.
BOTH_SIDES = ("cell", "hidden_size", "layers", "embedding_size", "dropout", "engine")
MODEL_SETTINGS = (
    *BOTH_SIDES, "encoder_cell", "decoder_cell", "attention", "attention_size", "bidirectional",
)  # fmt: skip
TRAIN_SETTINGS = (
    "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps", "decay", "clip_norm",
    "eval_every", "patience", "seed", "sampling_ratio",
)  # fmt: skip
SETTINGS = DATA_SETTINGS + MODEL_SETTINGS + TRAIN_SETTINGS


# ---------------------------------------------------------------------------- parsers


def add_seq2seq_parser(sub) -> None:
    p = sub.add_parser("seq2seq", help="sequence-to-sequence: train, translate, eval")
    job = p.add_subparsers(dest="seq2seq_command", required=True, metavar="{train,translate,eval}")
    add_train_parser(job)
    add_translate_parser(job)
    add_eval_parser(job)


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an encoder–decoder on source/target pairs",
        description="Train an encoder–decoder (with attention by default) on pairs of a TSV "
        "file or a built-in task; the checkpoint of best validation exact match is kept.",
    )
    g = p.add_argument_group("data")
    source = g.add_mutually_exclusive_group()
    source.add_argument(
        "--pairs", metavar="FILE", help="UTF-8 TSV file, one source<TAB>target a line"
    )
    source.add_argument("--example", choices=TASKS, help="a built-in task")
    g.add_argument(
        "--val-pairs", metavar="FILE", help="validation pairs from this TSV file instead of a split"
    )
    g.add_argument("--tokens", choices=("char", "word"), help="token level (default char)")
    g.add_argument("--max-vocab", type=int, help="vocabulary size cap per side")
    g.add_argument("--val-fraction", type=float, help="validation part (default 0.1)")
    g.add_argument("--test-fraction", type=float, help="test part (default 0.1)")
    g.add_argument("--split-seed", type=int, help="seed of the split or the example (default 0)")
    g.add_argument("--train-size", type=int, help="example: training pairs (default 20000)")
    g.add_argument("--val-size", type=int, help="example: validation pairs (default 1000)")
    g.add_argument("--test-size", type=int, help="example: test pairs (default 1000)")
    g.add_argument("--min-len", type=int, help="reverse, sort: shortest source")
    g.add_argument("--max-len", type=int, help="reverse, sort: longest source")
    g.add_argument("--max-digits", type=int, help="addition: digits per operand (default 3)")
    g = p.add_argument_group("model")
    g.add_argument(
        "--attention",
        choices=("none", "bahdanau", "luong"),
        help="attention over the source (default bahdanau)",
    )
    g.add_argument("--attention-size", type=int, help="bahdanau: hidden width of the score")
    g.add_argument(
        "--cell", choices=tuple(CELL_KINDS), help="encoder and decoder cell (default lstm)"
    )
    g.add_argument("--encoder-cell", choices=tuple(CELL_KINDS))
    g.add_argument("--decoder-cell", choices=tuple(CELL_KINDS))
    g.add_argument("--hidden-size", type=int, help="units per layer and direction (default 128)")
    g.add_argument("--layers", type=int, help="stacked layers of each side (default 1)")
    g.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read the source both ways (default yes)",
    )
    g.add_argument("--embedding-size", type=int, help="token embedding width (default 64)")
    g.add_argument("--dropout", type=float, help="variational dropout of each side (default 0)")
    g.add_argument("--engine", choices=ENGINE_NAMES, help="sequence engine")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help="pairs per step (default 64)")
    add_optimizer_options(g, eval_every="an epoch", clip_value=False)
    g.add_argument(
        "--sampling-ratio",
        type=float,
        help="scheduled sampling: chance of feeding the model its own previous token (0)",
    )
    g.add_argument("--beam", type=int, help="also report beam search of this width at the end")
    add_run_options(
        p,
        default_out=DEFAULT_RUN,
        default_epochs=f"the example's, else {DEFAULT_EPOCHS} with --patience {DEFAULT_PATIENCE}",
    )
    p.set_defaults(run=train_command)


def _decoding_options(p, *, sampling: bool) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--beam", type=int, help="beam search of this width (default: greedy)")
    g.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="beam: rank by log p / length^A (default 0)",
    )
    if sampling:
        g.add_argument("--sample", action="store_true", help="draw each token at random")
        g.add_argument("--temperature", type=float, help="sampling temperature (default 1)")
        g.add_argument("--seed", type=int, help="sampling seed (default 0)")
    g.add_argument("--max-len", type=int, help="most tokens per output (default: the run's)")
    g.add_argument("--batch-size", type=int, default=EVAL_BATCH, help="inputs decoded at once")
    g.add_argument(
        "--allow-unknown", action="store_true", help="read unknown source tokens as <unk>"
    )
    g.add_argument("--checkpoint", choices=("best", "last"), default="best")
    g.add_argument("--device", help="cpu or cuda")


def add_translate_parser(sub) -> None:
    p = sub.add_parser(
        "translate",
        help="decode sources, one per line, with a trained run",
        description="Read one source per line (from --input or stdin) and write one output "
        "per line to stdout, in input order.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit seq2seq train`")
    p.add_argument(
        "--input", metavar="FILE", help="UTF-8 file of sources, one a line (default: stdin)"
    )
    p.add_argument(
        "--attention-plot", metavar="PNG", help="PNG heat map of the first input's attention"
    )
    _decoding_options(p, sampling=True)
    p.set_defaults(run=translate_command)


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="exact match, token accuracy, CER and BLEU on pairs",
        description="Score a trained run on a TSV file of pairs, or on its own test split.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit seq2seq train`")
    p.add_argument(
        "--pairs",
        metavar="FILE",
        help="TSV file of source<TAB>target (default: the run's test split)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the scores to this JSON file")
    _decoding_options(p, sampling=False)
    p.set_defaults(run=eval_command)


# ------------------------------------------------------------------------------ train


def _model_flags(args) -> dict:
    """The model flags as Seq2SeqConfig fields (``--cell`` sets both sides' cells, ...)."""
    out = {}
    for name in BOTH_SIDES:
        out[f"encoder_{name}"] = out[f"decoder_{name}"] = getattr(args, name)
    for side in ("encoder", "decoder"):
        if getattr(args, f"{side}_cell") is not None:
            out[f"{side}_cell"] = getattr(args, f"{side}_cell")
    for name in ("attention", "attention_size", "bidirectional"):
        out[name] = getattr(args, name)
    return out


def _by_source_length(pairs, kind: str):
    """Pairs sorted by source length: evaluation batches then hold little padding."""
    from rnnkit.data.vocab import tokenize

    return sorted(pairs, key=lambda p: len(tokenize(p[0], kind)))


@distributed.with_teardown
def train_command(args) -> int:
    from rnnkit.data.pairs import PAD_ID, encode_pairs
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnkit.train.fit import FitTrainer

    run_dir = Path(args.out)
    device = distributed.init(resolve_device(args.device))
    if args.beam is not None and args.beam < 1:
        raise UsageError(f"--beam must be a positive integer, got {args.beam}")
    stop_flags = flags(args, ("max_steps", "epochs", "time_budget"))

    if args.resume:
        checkpoint, saved = resumed_run(args, SETTINGS, TASK, "seq2seq train")
        meta = checkpoint.meta
        data_cfg = Seq2SeqDataConfig(**meta["data"])
        model_cfg = Seq2SeqConfig.from_dict(checkpoint.model_config)
        train_cfg = Seq2SeqTrainConfig.from_dict(saved)
        vocabs = load_vocabs(run_dir)
        train, val, test = load_splits(data_cfg)
        check_same_vocabs(data_cfg, train, vocabs)
        max_len = meta["max_len"]
    else:
        refuse_existing(run_dir)
        config = read_toml(args.config)
        data_cfg = merge(Seq2SeqDataConfig, table(config, "data"), flags(args, DATA_SETTINGS))
        suggested = EXAMPLE_SETTINGS.get(data_cfg.example, {"model": {}, "train": {}})
        example_train, user_train = suggested["train"], table(config, "train")
        if any(v is not None for v in stop_flags.values()) or set(user_train) & set(stop_flags):
            # The user's own stopping rules replace the example's rather than add to them.
            example_train = {k: v for k, v in example_train.items() if k not in stop_flags}
        train_table = {**example_train, **user_train}
        train_flags = flags(args, TRAIN_SETTINGS)
        if all(train_table.get(k) is None and v is None for k, v in stop_flags.items()):
            stop_flags["epochs"] = DEFAULT_EPOCHS
            if train_table.get("patience") is None and train_flags["patience"] is None:
                train_flags["patience"] = DEFAULT_PATIENCE
        train_cfg = merge(Seq2SeqTrainConfig, train_table, train_flags, stop_flags)
        model_table = {**CLI_MODEL_DEFAULTS, **suggested["model"], **table(config, "model")}
        model_flags = _model_flags(args)
        # Checked now, with stand-in sizes, so a bad option fails before the data is read.
        merge(Seq2SeqConfig, model_table, model_flags, src_vocab_size=5, tgt_vocab_size=5)
        data_cfg = data_cfg.absolute()
        train, val, test = load_splits(data_cfg)
        vocabs = build_vocabs(train, data_cfg.tokens, data_cfg.max_vocab)
        model_cfg = merge(
            Seq2SeqConfig,
            model_table,
            model_flags,
            src_vocab_size=len(vocabs[0]),
            tgt_vocab_size=len(vocabs[1]),
        )
        max_len = default_max_len(train, data_cfg.tokens)
    src_vocab, tgt_vocab = vocabs
    kind = data_cfg.tokens
    meta = {
        "task": TASK,
        "data": asdict(data_cfg),
        "max_len": max_len,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
    }
    if not args.resume and distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        src_vocab.save(run_dir / SRC_VOCAB)
        tgt_vocab.save(run_dir / TGT_VOCAB)

    val = _by_source_length(val, kind)
    torch.manual_seed(train_cfg.seed)
    model = Seq2Seq.from_config(model_cfg).to(device)
    ratio = train_cfg.sampling_ratio

    def loss_fn(model, batch):
        # Scheduled sampling while training only: the validation loss stays teacher-forced.
        return model.loss(batch, ratio if model.training else 0.0)

    trainer = FitTrainer(
        model,
        BucketBatches(
            encode_pairs(train, src_vocab, tgt_vocab),
            train_cfg.batch_size,
            shuffle=True,
            seed=train_cfg.seed,
        ),
        BucketBatches(encode_pairs(val, src_vocab, tgt_vocab), EVAL_BATCH, shuffle=False),
        train_cfg,
        run_dir,
        loss_fn=loss_fn,
        metrics_fn=validation_metrics(val, tgt_vocab),
        loss_weight=lambda batch: float((batch["tgt_out"] != PAD_ID).sum()),  # a token mean
        monitor="val_exact_match",
        mode="max",
        meta=meta,
        progress=not args.no_progress,
        resume=args.resume,
    )
    trainer.fit()
    if not distributed.is_main():
        return 0  # rank 0 reports

    model, _, _, _ = load_run(run_dir, "best")
    model.to(device)
    part, pairs = ("test", test) if test else ("validation", val)
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    rows = {}
    for name, beam in (("greedy", None), (f"beam {args.beam}", args.beam)):
        if name == "greedy" or beam is not None:
            hyps = decode_texts(model, sources, src_vocab, max_len=max_len, beam=beam)
            rows[name] = scores([tgt_vocab.decode(h.tokens) for h in hyps], refs, kind)
    print(
        f"trained on {len(train)} pairs of {data_cfg.describe()}; best checkpoint on the "
        f"{part} part ({len(pairs)} pairs):"
    )
    print(format_table(rows))
    print(f"saved the run in {run_dir}")
    return 0


# ---------------------------------------------------------------- using a trained run


def load_run(run_dir: str | Path, tag: str = "best"):
    """``(model, meta, src_vocab, tgt_vocab)`` of a run of ``rnnkit seq2seq train``."""
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig

    checkpoint = open_run(run_dir, tag, TASK, "seq2seq train")
    run_dir, meta = Path(run_dir), checkpoint.meta
    if "data" not in meta or "max_len" not in meta:
        raise UsageError(f"{run_dir} does not hold a run of `rnnkit seq2seq train`")
    model = Seq2Seq.from_config(Seq2SeqConfig.from_dict(checkpoint.model_config))
    checkpoint.load_into(model)
    model.eval()
    src_vocab, tgt_vocab = load_vocabs(run_dir)
    return model, meta, src_vocab, tgt_vocab


def translate_command(args) -> int:
    from rnnkit.data.pairs import read_sources
    from rnnkit.data.vocab import tokenize

    model, meta, src_vocab, tgt_vocab = load_run(args.run_dir, args.checkpoint)
    options = checked_decoding(args, meta)
    if args.attention_plot and model.attention is None:
        raise UsageError("the run's model has no attention to plot; drop --attention-plot")
    texts = read_sources(args.input if args.input else sys.stdin)
    if not args.allow_unknown:
        check_known(texts, src_vocab, args.input or "stdin")
    model.to(resolve_device(args.device))
    plot = 0 if args.attention_plot else None
    hyps = decode_texts(model, texts, src_vocab, attention_for=plot, **options)
    outputs = [tgt_vocab.decode(h.tokens) for h in hyps]
    sys.stdout.write("".join(text + "\n" for text in outputs))
    if args.attention_plot:
        from rnnkit.diagnostics.attention import plot_attention

        first = hyps[0]
        out_tokens = [tgt_vocab.tokens[i] for i in first.tokens] + ["</s>"] * first.finished
        src_tokens = tokenize(texts[0], src_vocab.kind)
        plot_attention(
            first.attention,
            src_tokens,
            out_tokens,
            args.attention_plot,
            title=f"{texts[0]!r:.60} → {outputs[0]!r:.60}",
        )
        print(f"wrote {args.attention_plot}", file=sys.stderr)
    return 0


def eval_command(args) -> int:
    from rnnkit.atomic import atomic_write_text
    from rnnkit.data.pairs import read_pairs

    model, meta, src_vocab, tgt_vocab = load_run(args.run_dir, args.checkpoint)
    options = checked_decoding(args, meta)
    if args.pairs is not None:
        pairs, where = read_pairs(args.pairs), str(args.pairs)
        if not args.allow_unknown:
            sources = [s for s, _ in pairs]
            check_known(sources, src_vocab, where, pair_lines(args.pairs))
    else:  # the run's own test part, unknown tokens read as <unk> as in training's report
        data_cfg = Seq2SeqDataConfig(**meta["data"])
        train, _, pairs = load_splits(data_cfg)
        check_same_vocabs(data_cfg, train, (src_vocab, tgt_vocab))
        if not pairs:
            raise UsageError(f"{args.run_dir} was trained without a test part; give --pairs FILE")
        where = f"the test part of {data_cfg.describe()}"
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    model.to(resolve_device(args.device))
    hyps = decode_texts(model, sources, src_vocab, **options)
    figures = scores([tgt_vocab.decode(h.tokens) for h in hyps], refs, tgt_vocab.kind)
    decoding = f"beam {args.beam}" if args.beam else "greedy"
    for name in METRICS:
        digits = 2 if name == "bleu" else 4  # BLEU is on a 0-100 scale
        print(f"{METRIC_NAMES[name]}: {figures[name]:.{digits}f}")
    print(f"on {len(pairs)} pairs of {where} ({decoding} decoding)")
    if args.json:
        report = {
            "run": str(Path(args.run_dir).resolve()),
            "pairs": where,
            "count": len(pairs),
            "decoding": {
                "beam": args.beam,
                "length_penalty": args.length_penalty,
                "max_len": options["max_len"],
            },
            "metrics": figures,
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
