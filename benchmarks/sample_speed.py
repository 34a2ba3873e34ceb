"""Characters per second of ``rnnkit.sample.generate`` next to a hand-written torch loop.

A 2 x 256 LSTM language model over 65 characters (embedding 64) with random weights
(sampling speed does not depend on training), on one CPU core. Each method generates
``--chars`` characters ``--repeats`` times; the table shows the median. The torch
loops run the same weights, copied over, and are written the usual way: ``nn.LSTM``
(or two ``nn.LSTMCell``) stepped one character at a time under ``torch.no_grad()``.

    python benchmarks/sample_speed.py [--out benchmarks/results/sample_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import string
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rnnkit.models import LanguageModel, LMConfig
from rnnkit.sample import sample_text

TARGET = 5000.0  # characters per second wanted from rnnkit on one core
CHARS = "\n !$&',-.3:;?" + string.ascii_uppercase + string.ascii_lowercase[:25]  # 64
PRIME = "ROMEO:\nBut soft, what light"


class CharVocab:
    """Stand-in vocabulary: id 0 is "<unk>", then one id per character (65 in all)."""

    def __init__(self, chars: str) -> None:
        self.itos = ["<unk>", *chars]
        self.stoi = {ch: i for i, ch in enumerate(self.itos) if i}

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.stoi.get(ch, 0) for ch in text], dtype=np.int32)

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids)

    def token_text(self, i: int) -> str:
        return self.itos[i]

    def __len__(self) -> int:
        return len(self.itos)


class TorchLM(nn.Module):
    """The same model in plain torch.nn, weights copied from a :class:`LanguageModel`."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        cfg = model.config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_size)
        self.lstm = nn.LSTM(cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
        self.cells = nn.ModuleList(
            nn.LSTMCell(cfg.embedding_size if k == 0 else cfg.hidden_size, cfg.hidden_size)
            for k in range(cfg.num_layers)
        )
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        with torch.no_grad():
            self.embedding.weight.copy_(model.embedding.weight)
            self.head.load_state_dict(model.head.state_dict())
            for k, layer in enumerate(model.rnn.layers):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(self.lstm, f"{name}_l{k}").copy_(getattr(layer.cell, name))
                    getattr(self.cells[k], name).copy_(getattr(layer.cell, name))


@torch.no_grad()
def torch_lstm_sample(
    lm: TorchLM, vocab, prime: str, n: int, seed: int, temperature: float = 1.0
) -> str:
    """The usual hand-written loop: nn.LSTM fed one character at a time (0: greedy)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(vocab.encode(prime), dtype=torch.long).view(-1, 1)  # (T, 1)
    out, hidden = lm.lstm(lm.embedding(x))
    logits = lm.head(out[-1])  # (1, V)
    chars = []
    for _ in range(n):
        if temperature == 0:
            idx = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            idx = torch.multinomial(probs, 1, generator=gen)  # (1, 1)
        chars.append(vocab.itos[idx.item()])
        out, hidden = lm.lstm(lm.embedding(idx), hidden)
        logits = lm.head(out[-1])
    return "".join(chars)


@torch.no_grad()
def torch_cell_sample(
    lm: TorchLM, vocab, prime: str, n: int, seed: int, temperature: float = 1.0
) -> str:
    """The same loop with one nn.LSTMCell per layer instead of nn.LSTM."""
    gen = torch.Generator().manual_seed(seed)
    states = [None] * len(lm.cells)

    def step(idx):  # (1,) -> logits (1, V)
        x = lm.embedding(idx)  # (1, E)
        for k, cell in enumerate(lm.cells):
            states[k] = cell(x, states[k])
            x = states[k][0]
        return lm.head(x)

    for i in vocab.encode(prime).tolist():
        logits = step(torch.tensor([i]))
    chars = []
    for _ in range(n):
        probs = torch.softmax(logits / temperature, dim=-1)
        idx = torch.multinomial(probs, 1, generator=gen)[0]  # (1,)
        chars.append(vocab.itos[idx.item()])
        logits = step(idx)
    return "".join(chars)


def rnnkit_sample(model, vocab, prime: str, n: int, seed: int) -> str:
    return sample_text(model, vocab, prime, n, seed=seed)


def timed(fn, repeats: int, n: int) -> list[float]:
    """Seconds per run of ``fn(seed)``, after one warm-up run."""
    fn(-1)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        text = fn(r)
        times.append(time.perf_counter() - start)
        assert len(text) >= n, "every run must produce at least n characters"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sample_speed.json"))
    parser.add_argument("--chars", type=int, default=2000, help="characters per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = CharVocab(CHARS)
    model = LanguageModel(
        LMConfig(len(vocab), cell="lstm", hidden_size=256, num_layers=2, embedding_size=64)
    ).eval()
    plain = TorchLM(model).eval()

    # Same weights: greedy decoding must agree, so both sides do the same work.
    same = sample_text(model, vocab, PRIME, 200, temperature=0) == torch_lstm_sample(
        plain, vocab, PRIME, 200, 0, temperature=0
    )

    n = args.chars
    methods = {
        "rnnkit generate": lambda seed: rnnkit_sample(model, vocab, PRIME, n, seed),
        "torch nn.LSTM loop": lambda seed: torch_lstm_sample(plain, vocab, PRIME, n, seed),
        "torch nn.LSTMCell loop": lambda seed: torch_cell_sample(plain, vocab, PRIME, n, seed),
    }
    results = {}
    for name, fn in methods.items():
        times = timed(fn, args.repeats, n)
        median = statistics.median(times)
        results[name] = {"seconds": times, "median_s": median, "chars_per_s": n / median}

    base = results["torch nn.LSTM loop"]["chars_per_s"]
    print(f"sampling {n} chars, 2x256 LSTM, V=65, 1 thread, median of {args.repeats}")
    print(f"{'method':<24} {'chars/s':>10} {'ms/char':>9} {'vs nn.LSTM':>11}")
    for name, r in results.items():
        speed = r["chars_per_s"]
        print(f"{name:<24} {speed:>10,.0f} {1000 / speed:>9.3f} {speed / base:>10.2f}x")
    rnnkit_speed = results["rnnkit generate"]["chars_per_s"]
    print(f"target {TARGET:,.0f} chars/s: {'met' if rnnkit_speed >= TARGET else 'MISSED'}")
    print(f"greedy text identical to the nn.LSTM loop: {same}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "sample_speed",
        "model": {"cell": "lstm", "layers": 2, "hidden": 256, "vocab": 65, "embedding": 64},
        "chars": n,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "target_chars_per_s": TARGET,
        "target_met": rnnkit_speed >= TARGET,
        "greedy_matches_torch": same,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
