"""``rnnkit lm train``, ``rnnkit lm eval`` and ``rnnkit sample``: the text-generation job."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from rnnkit.cli.config import merge, read_toml, table
from rnnkit.cli.errors import UsageError
from rnnkit.cli.runs import open_run, refuse_existing, resumed_run
from rnnkit.engines import ENGINE_NAMES
from rnnkit.models import CELL_KINDS, LanguageModel, LMConfig
from rnnkit.train import distributed

DEFAULT_RUN = "runs/lm"
DEFAULT_EPOCHS = 10  # when no stopping rule is given at all

# The flags of `lm train` that set each table of the run's configuration.
DATA_SETTINGS = ("text", "tokens", "val_fraction", "max_vocab")
MODEL_SETTINGS = (
    "cell", "hidden_size", "num_layers", "embedding_size", "dropout", "layer_norm", "engine",
)  # fmt: skip
TRAIN_SETTINGS = (
    "batch_size", "seq_len", "lr", "optimizer", "weight_decay", "warmup_steps", "decay",
    "clip_norm", "clip_value", "eval_every", "patience", "seed",
)  # fmt: skip
SETTINGS = DATA_SETTINGS + MODEL_SETTINGS + TRAIN_SETTINGS


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut into tokens."""

    text: str | None = None  # a UTF-8 file; None: the built-in Python-source corpus
    tokens: str = "char"  # char | word
    val_fraction: float = 0.1  # the last part of the text, held out for validation
    max_vocab: int | None = None  # keep the most frequent tokens only (word level)

    def __post_init__(self) -> None:
        if self.tokens not in ("char", "word"):
            raise UsageError(f"tokens must be 'char' or 'word', got {self.tokens!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise UsageError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a language model on a text file",
        description="Train a character- or word-level recurrent language model.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--text", help="UTF-8 text file (default: built-in Python-source corpus)")
    g.add_argument("--tokens", choices=("char", "word"), help="token level (default char)")
    g.add_argument("--val-fraction", type=float, help="held-out tail of the text (default 0.1)")
    g.add_argument("--max-vocab", type=int, help="vocabulary size cap (word level)")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=tuple(CELL_KINDS), help="recurrent cell (default lstm)")
    g.add_argument("--hidden-size", type=int, help="units per layer (default 256)")
    g.add_argument("--num-layers", type=int, help="stacked layers (default 2)")
    g.add_argument("--embedding-size", type=int, help="token embedding width (default 64)")
    g.add_argument("--dropout", type=float, help="variational dropout (default 0.1)")
    g.add_argument("--layer-norm", action="store_true", default=None, help="layer-norm LSTM")
    g.add_argument("--engine", choices=ENGINE_NAMES, help="sequence engine")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help="parallel streams (default 32)")
    g.add_argument("--seq-len", type=int, help="truncated-BPTT length (default 128)")
    add_optimizer_options(g, eval_every="200")
    add_run_options(p)
    p.add_argument("--sample-length", type=int, default=400, help="characters to print at the end")
    p.set_defaults(run=train_command)


def add_optimizer_options(g, *, eval_every: str, clip_value: bool = True) -> None:
    """The optimiser, schedule, clipping and evaluation flags of every training job."""
    g.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "rmsprop", "adagrad"))
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--decay", choices=("none", "cosine", "linear"))
    g.add_argument("--clip-norm", type=float, help="global gradient-norm threshold (default 5)")
    if clip_value:
        g.add_argument("--clip-value", type=float, help="clip every gradient entry to ±value")
    g.add_argument(
        "--eval-every", type=int, help=f"steps between validations (default {eval_every})"
    )
    g.add_argument("--patience", type=int, help="early stopping: validations without gain")


def add_run_options(
    p, *, default_out: str = DEFAULT_RUN, default_epochs: str = str(DEFAULT_EPOCHS)
) -> None:
    """The options every training command shares (see the command-line conventions).

    ``default_out`` is the job's run directory; ``default_epochs`` says in the help
    what the job does when no stopping rule is given.
    """
    g = p.add_argument_group("run")
    g.add_argument("--out", default=default_out, help=f"run directory (default {default_out})")
    g.add_argument("--config", help="TOML file with [data], [model] and [train] tables")
    g.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    g.add_argument(
        "--epochs",
        type=int,
        help=f"stop after this many passes over the data (default {default_epochs} "
        "when no stopping rule is given)",
    )
    g.add_argument("--time-budget", type=float, help="stop after this many seconds")
    g.add_argument("--seed", type=int, help="seed for everything random (default 0)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def flags(args, names) -> dict:
    return {name: getattr(args, name) for name in names}


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no GPU is available; use --device cpu")
    return torch.device(name)


@distributed.with_teardown
def train_command(args) -> int:
    from rnnkit.data import StreamBatches, Vocab, encode_file, split_tokens, write_builtin_corpus
    from rnnkit.sample import generate
    from rnnkit.train import TrainConfig, Trainer

    run_dir = Path(args.out)
    device = distributed.init(resolve_device(args.device))  # under torchrun: join the group
    stop_flags = flags(args, ("max_steps", "epochs", "time_budget"))

    if args.resume:
        checkpoint, saved = resumed_run(args, SETTINGS, "lm", "lm train")
        model_cfg = LMConfig.from_dict(checkpoint.model_config)
        data_cfg = DataConfig(**checkpoint.meta["data"])
        train_cfg = TrainConfig.from_dict(saved)
        vocab = Vocab.load(run_dir / "vocab.json")
    else:
        refuse_existing(run_dir)
        config = read_toml(args.config)
        data_cfg = merge(DataConfig, table(config, "data"), flags(args, DATA_SETTINGS))
        train_flags = flags(args, TRAIN_SETTINGS)
        train_table = table(config, "train")
        if all(train_table.get(k) is None and v is None for k, v in stop_flags.items()):
            stop_flags["epochs"] = DEFAULT_EPOCHS
        train_cfg = merge(TrainConfig, train_table, train_flags, stop_flags)
        distributed.check_divisible(train_cfg.batch_size)  # before anything is written
        model_flags = flags(args, MODEL_SETTINGS)
        # Checked now (with a stand-in vocabulary size) so a bad option writes nothing.
        model_cfg = merge(LMConfig, table(config, "model"), model_flags, vocab_size=1)
        if data_cfg.text:
            vocab = Vocab.build(data_cfg.text, kind=data_cfg.tokens, max_size=data_cfg.max_vocab)
        else:
            if distributed.is_main():  # rank 0 writes; the others read it after the barrier
                run_dir.mkdir(parents=True, exist_ok=True)
                write_builtin_corpus(run_dir / "corpus.txt")
            distributed.barrier()
            corpus = run_dir / "corpus.txt"
            vocab = Vocab.build(corpus, kind=data_cfg.tokens, max_size=data_cfg.max_vocab)
        model_cfg = replace(model_cfg, vocab_size=len(vocab))
        if data_cfg.text:  # absolute, so a resume from elsewhere finds the same file
            data_cfg = replace(data_cfg, text=str(Path(data_cfg.text).resolve()))

    text_path = Path(data_cfg.text) if data_cfg.text else run_dir / "corpus.txt"
    ids = encode_file(text_path, vocab)
    train_ids, val_ids = split_tokens(ids, data_cfg.val_fraction)
    train = StreamBatches(train_ids, train_cfg.batch_size, train_cfg.seq_len)
    val_batch = max(1, min(train_cfg.batch_size, len(val_ids) // (train_cfg.seq_len + 1)))
    val = StreamBatches(val_ids, val_batch, train_cfg.seq_len)
    if not args.resume and distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        vocab.save(run_dir / "vocab.json")

    torch.manual_seed(train_cfg.seed)
    model = LanguageModel(model_cfg).to(device)
    trainer = Trainer(
        model,
        train,
        val,
        train_cfg,
        run_dir,
        meta={"data": asdict(data_cfg), "task": "lm"},
        progress=not args.no_progress,
        resume=args.resume,
    )
    trainer.fit()  # reports where it stopped and the best validation loss
    if not distributed.is_main():
        return 0  # rank 0 shows the sample
    if args.sample_length > 0:
        print("--- sample ---")
        for piece in generate(model, vocab, length=args.sample_length, temperature=0.8, seed=0):
            sys.stdout.write(piece)
            sys.stdout.flush()
        print()
    return 0


def load_run(run_dir: str | Path, tag: str = "best"):
    """The language model and vocabulary saved in ``run_dir`` (``best`` or ``last``)."""
    from rnnkit.data import Vocab

    checkpoint = open_run(run_dir, tag, "lm", "lm train")
    run_dir = Path(run_dir)
    model = LanguageModel(LMConfig.from_dict(checkpoint.model_config))
    checkpoint.load_into(model)
    model.eval()
    return model, Vocab.load(run_dir / "vocab.json")


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="loss and bits per token of a trained model on a text file")
    p.add_argument("run_dir", help="a run directory made by `rnnkit lm train`")
    p.add_argument("--text", required=True, help="UTF-8 text file to score")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--batch-size", type=int, default=16, help="parallel streams")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per chunk")
    p.add_argument("--device", help="cpu or cuda")
    p.set_defaults(run=eval_command)


def eval_command(args) -> int:
    from rnnkit.data import encode_file
    from rnnkit.train import evaluate_stream

    model, vocab = load_run(args.run_dir, args.checkpoint)
    model.to(resolve_device(args.device))
    if args.batch_size < 1 or args.seq_len < 1:
        raise UsageError("--batch-size and --seq-len must be positive")
    ids = encode_file(args.text, vocab)
    if len(ids) < 2:
        raise UsageError(f"{args.text} holds {len(ids)} token; give at least 2 to score")
    stream = covering_stream(ids, args.batch_size, args.seq_len)
    loss = evaluate_stream(model, stream)
    scored = stream.num_chunks * stream.tokens_per_chunk
    unknown = float((ids == 0).mean()) if vocab.tokens[0] == "<unk>" else 0.0
    per = "char" if vocab.kind == "char" else "word"
    print(
        f"loss: {loss:.4f} nats/{per}, {loss / math.log(2):.4f} bits/{per} "
        f"on {scored} of {len(ids)} tokens"
    )
    if unknown:
        print(f"note: {unknown:.2%} of the tokens were not in the model's vocabulary")
    return 0


def covering_stream(ids, batch: int, seq_len: int):
    """Streams and a chunk length that leave fewer than ``batch`` chunks' worth unscored.

    Fewer streams for a short text, and the chunk length shortened so the chunks tile
    each stream: ``StreamBatches`` drops what does not fill a whole chunk.
    """
    from rnnkit.data import StreamBatches

    batch = max(1, min(batch, (len(ids) - 1) // 2))
    steps = len(ids) // batch - 1  # predictable positions per stream
    chunks = math.ceil(steps / min(seq_len, steps))
    return StreamBatches(ids, batch, steps // chunks)


def add_sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained language model")
    p.add_argument("run_dir", help="a run directory made by `rnnkit lm train`")
    p.add_argument("--prime", default="", help="text to start from")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = wilder")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens only")
    p.add_argument("--seed", type=int, help="same seed, same text")
    p.add_argument("--beam", type=int, default=1, help="beam search width (1 = sampling)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", help="cpu or cuda")
    p.set_defaults(run=sample_command)


def sample_command(args) -> int:
    from rnnkit.sample import generate

    model, vocab = load_run(args.run_dir, args.checkpoint)
    model.to(resolve_device(args.device))
    pieces = generate(
        model,
        vocab,
        prime=args.prime,
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        beam=args.beam,
    )
    sys.stdout.write(args.prime)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def add_lm_parser(sub) -> None:
    p = sub.add_parser("lm", help="recurrent language models: train, eval")
    lm_sub = p.add_subparsers(dest="lm_command", required=True, metavar="{train,eval}")
    add_train_parser(lm_sub)
    add_eval_parser(lm_sub)
