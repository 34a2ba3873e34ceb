"""Character-level language modelling on tiny-shakespeare under a fixed wall-clock budget.

Side by side, in one run and with the same budget each:

- **rnnkit**: ``rnnkit lm train``'s default configuration (2 x 256 LSTM, 64-wide
  embedding, variational dropout 0.1, 32 parallel streams of 128 steps, truncated
  BPTT with the state carried, Adam 3e-3 with cosine decay over the budget, clipping
  at 5) through :class:`rnnkit.train.Trainer`;
- **baseline**: a plain PyTorch char-LSTM written the usual way: ``torch.nn.LSTM``
  with the same sizes (so the same parameter count), random windows of 128 characters
  each starting from a zero state, Adam 2e-3, clipping at 5.

Both are scored on the held-out last 10 % of the text in nats per character, two ways:
``stream`` (the validation text as 16 parallel streams, state carried across chunks,
as a model is used for generation) and ``windows`` (independent 128-character windows
from a zero state, as the baseline is trained).

    python benchmarks/charlm.py                  # 600 s per model
    python benchmarks/charlm.py --budget 30      # a quick look
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data import StreamBatches, Vocab, encode_file, split_tokens
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.train import TrainConfig, Trainer, evaluate_stream

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


class BaselineLSTM(nn.Module):
    """Embedding -> torch.nn.LSTM -> Linear, the usual char-LSTM."""

    def __init__(self, vocab_size: int, embedding: int = 64, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, layers)
        self.head = nn.Linear(hidden, vocab_size)

    def init_state(self, batch: int):
        return None

    def forward(self, tokens, state=None):  # tokens (T, B)
        y, state = self.lstm(self.embedding(tokens), state)
        return self.head(y), state


def train_baseline(model, train_ids, budget: float, seq_len: int, batch: int, seed: int):
    """Random windows, zero initial state, Adam, clipping: until the budget is spent."""
    torch.manual_seed(seed)
    data = torch.as_tensor(train_ids, dtype=torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    offsets = torch.arange(seq_len + 1)
    steps, start = 0, time.perf_counter()
    model.train()
    while time.perf_counter() - start < budget:
        starts = torch.randint(0, len(data) - seq_len - 1, (batch,))
        window = data[starts[None, :] + offsets[:, None]]  # (T + 1, B)
        logits, _ = model(window[:-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        steps += 1
    return steps, time.perf_counter() - start


@torch.no_grad()
def windows_loss(model, ids, seq_len: int = 128) -> float:
    """Mean nats per character over independent windows, each from a zero state."""
    model.eval()
    n = (len(ids) - 1) // seq_len
    data = torch.as_tensor(ids[: n * seq_len + 1], dtype=torch.long)
    x = data[:-1].view(n, seq_len).T  # (T, n)
    y = data[1:].view(n, seq_len).T
    logits, _ = model(x, model.init_state(n))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()


def parse_setting(item: str):
    """``key=value`` with the value read as a Python literal when it is one."""
    key, _, text = item.partition("=")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return key, text


def run_baseline(vocab_size, train_ids, val_ids, val_stream, args) -> dict:
    baseline = BaselineLSTM(vocab_size)
    steps, _ = train_baseline(baseline, train_ids, args.budget, 128, 64, args.seed)
    return {
        "model": "torch.nn.LSTM, random windows",
        "params": sum(p.numel() for p in baseline.parameters()),
        "steps": steps,
        "stream": evaluate_stream(baseline, val_stream),
        "windows": windows_loss(baseline, val_ids),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training each")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/charlm.json")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an rnnkit setting (model or train), e.g. --set lr=3e-3",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: {args.data} is not here (tiny-shakespeare is needed)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)

    vocab = Vocab.build(args.data, kind="char")
    ids = encode_file(args.data, vocab)
    train_ids, val_ids = split_tokens(ids, 0.1)
    val_stream = StreamBatches(val_ids, 16, 256)
    rows = []

    # rnnkit: the default `rnnkit lm train` configuration, stopped by the time budget.
    overrides = dict(parse_setting(item) for item in args.set)
    model_keys = {f.name for f in fields(LMConfig)}
    torch.manual_seed(args.seed)
    config = TrainConfig(
        time_budget=args.budget,
        seed=args.seed,
        eval_every=10**9,
        **{k: v for k, v in overrides.items() if k not in model_keys},
    )
    model = LanguageModel(
        LMConfig(vocab_size=len(vocab), **{k: v for k, v in overrides.items() if k in model_keys})
    )
    train = StreamBatches(train_ids, config.batch_size, config.seq_len)
    with tempfile.TemporaryDirectory() as run_dir:
        result = Trainer(model, train, None, config, run_dir, progress=False).fit()
    rows.append(
        {
            "model": "rnnkit lm " + (" ".join(args.set) if args.set else "(defaults)"),
            "params": sum(p.numel() for p in model.parameters()),
            "steps": result.step,
            "stream": evaluate_stream(model, val_stream),
            "windows": windows_loss(model, val_ids),
        }
    )

    if not args.skip_baseline:
        rows.append(run_baseline(len(vocab), train_ids, val_ids, val_stream, args))

    print(f"tiny-shakespeare, {args.budget:.0f} s each, {args.threads} threads; nats/char")
    print(f"{'model':32s} {'params':>9s} {'steps':>7s} {'stream':>8s} {'windows':>8s}")
    for r in rows:
        print(
            f"{r['model']:32s} {r['params']:9d} {r['steps']:7d} "
            f"{r['stream']:8.4f} {r['windows']:8.4f}"
        )
    record = {
        "benchmark": "charlm",
        "data": str(args.data.name),
        "budget_s": args.budget,
        "threads": args.threads,
        "torch": torch.__version__,
        "bits_per_nat": 1 / math.log(2),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
