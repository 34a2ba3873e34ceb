"""Decoding and scoring for ``rnnkit seq2seq``: batches of texts in, outputs and figures out.

``decode_texts`` decodes many sources at once (greedy, beam search or sampling), longest
first so each batch holds sources of similar length, and returns the hypotheses in the
inputs' order; ``scores`` gives the four figures the job reports; ``validation_metrics``
is the trainer's ``metrics_fn`` (greedy exact match on the validation part).
"""

from __future__ import annotations

import torch

from rnnkit.cli.errors import UsageError

EVAL_BATCH = 256  # sequences decoded at once
METRICS = ("exact_match", "token_accuracy", "char_error_rate", "bleu")
METRIC_NAMES = {
    "exact_match": "exact match",
    "token_accuracy": "token accuracy",
    "char_error_rate": "character error rate",
    "bleu": "BLEU",
}


def decode_texts(
    model,
    texts: list[str],
    src_vocab,
    *,
    max_len: int,
    beam: int | None = None,
    length_penalty: float = 0.0,
    temperature: float | None = None,
    seed: int = 0,
    batch_size: int = EVAL_BATCH,
    attention_for: int | None = None,
):
    """One :class:`~rnnkit.models.decode.Hypothesis` per text, in the texts' order.

    Greedy by default; beam search with ``beam``; sampling with ``temperature`` (from
    ``seed``). Inputs are decoded ``batch_size`` at a time, longest first, so a batch
    holds sources of similar length. ``attention_for``: the index of the one input
    whose hypothesis keeps its attention weights.
    """
    from rnnkit.data.pairs import encode_sources
    from rnnkit.models.decode import beam_search, greedy, sample

    device = next(model.parameters()).device
    encoded = encode_sources(texts, src_vocab)
    lengths = encoded["src_lengths"]
    order = torch.argsort(lengths, descending=True, stable=True)
    generator = None
    if temperature is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    out = [None] * len(texts)
    for rows in order.split(batch_size):
        batch_lengths = lengths[rows]
        src = encoded["src"][rows, : int(batch_lengths.max())].to(device)  # (B, S)
        keep = attention_for is not None and bool((rows == attention_for).any())
        if temperature is not None:
            hyps = sample(
                model,
                src,
                batch_lengths,
                max_len=max_len,
                temperature=temperature,
                generator=generator,
                return_attention=keep,
            )
        elif beam is not None:
            hyps = beam_search(
                model,
                src,
                batch_lengths,
                beam=beam,
                max_len=max_len,
                length_penalty=length_penalty,
                return_attention=keep,
            )
        else:
            hyps = greedy(model, src, batch_lengths, max_len=max_len, return_attention=keep)
        for row, hyp in zip(rows.tolist(), hyps, strict=True):
            if keep and row != attention_for:
                hyp.attention = None  # its batch-mates' weights are not asked for
            out[row] = hyp
    return out


def scores(hyps: list[str], refs: list[str], kind: str) -> dict[str, float]:
    """The four figures of outputs against references (BLEU on characters for char runs)."""
    from rnnkit.metrics.seq2seq import bleu, char_error_rate, exact_match, token_accuracy

    return {
        "exact_match": exact_match(hyps, refs),
        "token_accuracy": token_accuracy(hyps, refs, kind),
        "char_error_rate": char_error_rate(hyps, refs),
        "bleu": bleu(hyps, refs, tokenize="char" if kind == "char" else "13a"),
    }


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per decoding, one column per figure."""
    header = f"{'decoding':<10} {'exact match':>11} {'token acc.':>10} {'CER':>8} {'BLEU':>7}"
    lines = [header]
    for name, s in rows.items():
        lines.append(
            f"{name:<10} {s['exact_match']:>11.4f} {s['token_accuracy']:>10.4f} "
            f"{s['char_error_rate']:>8.4f} {s['bleu']:>7.2f}"
        )
    return "\n".join(lines)


def validation_metrics(val_pairs, tgt_vocab):
    """The trainer's ``metrics_fn``: greedy exact match and token accuracy on validation.

    Each batch decodes at most as many tokens as its longest reference (``</s>``
    included): enough for an exact match, and an output cut there is wrong anyway.
    """
    from rnnkit.metrics.seq2seq import exact_match, token_accuracy
    from rnnkit.models.decode import greedy

    refs = [t for _, t in val_pairs]

    def metrics(model, batches) -> dict[str, float]:
        device = next(model.parameters()).device
        hyps = [""] * len(refs)
        for i in range(batches.num_batches):
            batch = batches.batch(i)
            limit = int(batch["tgt_lengths"].max())
            out = greedy(model, batch["src"].to(device), batch["src_lengths"], max_len=limit)
            for row, hyp in zip(batches.rows(i).tolist(), out, strict=True):
                hyps[row] = tgt_vocab.decode(hyp.tokens)
        return {
            "exact_match": exact_match(hyps, refs),
            "token_accuracy": token_accuracy(hyps, refs, tgt_vocab.kind),
        }

    return metrics


def checked_decoding(args, meta) -> dict:
    """The decoding keywords of ``decode_texts`` from the shared flags, checked."""
    for name in ("beam", "max_len", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.length_penalty < 0:
        raise UsageError(f"--length-penalty must be 0 or more, got {args.length_penalty}")
    options = {
        "max_len": args.max_len or meta["max_len"],
        "beam": args.beam,
        "length_penalty": args.length_penalty,
        "batch_size": args.batch_size,
    }
    sampling = getattr(args, "sample", False)
    if sampling and args.beam is not None:
        raise UsageError("--sample and --beam exclude each other; choose one")
    if not sampling and any(getattr(args, k, None) is not None for k in ("temperature", "seed")):
        raise UsageError("--temperature and --seed apply to --sample only")
    if sampling:
        temperature = 1.0 if args.temperature is None else args.temperature
        if not temperature > 0:
            raise UsageError(f"--temperature must be above 0, got {temperature}")
        options.update(temperature=temperature, seed=args.seed or 0)
    return options
