"""Encoder–decoder quality: ``rnnkit seq2seq train`` on dates and reversal, with and without
attention, and greedy against beam search.

Each model is trained exactly as

    rnnkit seq2seq train --example dates|reverse --attention bahdanau|none --seed S

does (the example's own settings: dates 20,000 training pairs in 15 formats to ISO 8601;
reversal of 20–30 random letters, 20,000 pairs), and the best checkpoint is scored on the
example's held-out test part (1,000 pairs whose sources no training pair has). Greedy
decoding is set beside beam search of width 4: the mean log-probability of the chosen
outputs (``rnnkit.models.decode.score``, ``</s>`` included) and the exact match.

Targets: dates exact match >= 99 % with attention; reversal >= 95 % with attention (the
model without attention shows the fixed-size bottleneck); beam-4 mean log-prob >=
greedy's; each model trains in under 10 minutes on 2 cores.

    python benchmarks/seq2seq.py                 # the four models, about 20-40 minutes
    python benchmarks/seq2seq.py --quick         # a smoke run on tiny data (no JSON kept)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from rnnkit import __version__
from rnnkit.atomic import atomic_write_text
from rnnkit.cli.main import main
from rnnkit.cli.seq2seq import load_run
from rnnkit.cli.seq2seq_data import Seq2SeqDataConfig, load_splits
from rnnkit.cli.seq2seq_decode import decode_texts, format_table, scores
from rnnkit.data.pairs import END_ID, encode_sources
from rnnkit.models.decode import score
from rnnkit.train import load_checkpoint

MODELS = (("dates", "bahdanau"), ("dates", "none"), ("reverse", "bahdanau"), ("reverse", "none"))
GOALS = {("dates", "bahdanau"): 0.99, ("reverse", "bahdanau"): 0.95}
GOAL_SECONDS = 600
BEAM = 4
QUICK = ["--train-size", "400", "--val-size", "50", "--test-size", "50", "--max-steps", "20"]


def rnnkit_seq2seq(argv: list[str]) -> int:
    """Run ``rnnkit seq2seq ...`` in this process."""
    return main(["seq2seq", *argv])


def mean_log_prob(model, sources, hyps, src_vocab, batch_size=256) -> float:
    """Mean over inputs of ``score`` of each chosen output (``</s>`` counted when emitted)."""
    total = 0.0
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        encoded = encode_sources(chunk, src_vocab)
        targets = [h.tokens + [END_ID] * h.finished for h in hyps[start : start + batch_size]]
        total += float(score(model, encoded["src"], encoded["src_lengths"], targets).sum())
    return total / len(sources)


def run_one(task: str, attention: str, seed: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        argv = ["train", "--example", task, "--attention", attention, "--seed", str(seed)]
        argv += ["--out", str(run), "--no-progress", *(QUICK if quick else [])]
        log = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = rnnkit_seq2seq(argv)
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"training failed: rnnkit seq2seq {' '.join(argv)}\n{log.getvalue()}")
        last = load_checkpoint(run, "last", trainer_state=False)
        model, meta, src_vocab, tgt_vocab = load_run(run, "best")
        _, _, test = load_splits(Seq2SeqDataConfig(**meta["data"]))
        sources, refs = [s for s, _ in test], [t for _, t in test]
        result = {
            "task": task,
            "attention": attention,
            "seed": seed,
            "train_seconds": round(seconds, 1),
            "steps": last.step,
            "train_pairs": meta["sizes"]["train"],
            "test_pairs": len(test),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        for name, beam in (("greedy", None), (f"beam {BEAM}", BEAM)):
            start = time.perf_counter()
            hyps = decode_texts(model, sources, src_vocab, max_len=meta["max_len"], beam=beam)
            figures = scores([tgt_vocab.decode(h.tokens) for h in hyps], refs, "char")
            figures["decode_seconds"] = round(time.perf_counter() - start, 2)
            figures["mean_log_prob"] = mean_log_prob(model, sources, hyps, src_vocab)
            result[name] = figures
        return result


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny data, a few steps")
    parser.add_argument("--out", default="benchmarks/results/seq2seq.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for task, attention in MODELS:
        result = run_one(task, attention, args.seed, args.quick)
        runs.append(result)
        g = result["greedy"]
        print(
            f"{task:<8} attention {attention:<9} trained {result['train_seconds']:>6.1f} s "
            f"({result['steps']} steps): test exact match {g['exact_match']:.4f}",
            flush=True,
        )
    print()
    print(f"test parts, best checkpoints (threads: {args.threads})")
    for r in runs:
        rows = {k: r[k] for k in r if k == "greedy" or k.startswith("beam")}
        print(f"\n{r['task']}, attention {r['attention']}, {r['train_seconds']:.0f} s training:")
        print(format_table(rows))
        print(
            "mean log-prob: " + ", ".join(f"{k} {v['mean_log_prob']:.5f}" for k, v in rows.items())
        )
    by_model = {(r["task"], r["attention"]): r for r in runs}
    goals = {
        f"{task} with {att} attention: exact match >= {goal}": (
            by_model[task, att]["greedy"]["exact_match"] >= goal
        )
        for (task, att), goal in GOALS.items()
    }
    goals[f"beam {BEAM} mean log-prob >= greedy's (every model)"] = all(
        r[f"beam {BEAM}"]["mean_log_prob"] >= r["greedy"]["mean_log_prob"] - 1e-6 for r in runs
    )
    goals[f"every model trains in under {GOAL_SECONDS} s"] = all(
        r["train_seconds"] < GOAL_SECONDS for r in runs
    )
    print()
    for goal, met in goals.items():
        print(f"{'met ' if met else 'MISSED'}  {goal}")
    if args.quick:
        return
    report = {
        "benchmark": "seq2seq",
        "command": "python benchmarks/seq2seq.py" + (f" --seed {args.seed}" if args.seed else ""),
        "versions": {
            "rnnkit": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "threads": args.threads,
        "runs": runs,
        "goals": goals,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_cli()
