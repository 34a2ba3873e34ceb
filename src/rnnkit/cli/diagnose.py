r"""``rnnkit diagnose``: do the gradients of a model vanish or explode through time?

Two forms:

- ``rnnkit diagnose RUN_DIR``: the model of a run of ``lm train``, ``forecast train`` or
  ``classify train`` (``meta["task"]`` of its checkpoint) on a batch of its own data:

  - lm: ``B`` windows of ``T`` tokens of the training text, each step's loss the
    cross-entropy of the next token (``T``: the run's ``seq_len``);
  - forecast: ``B`` training windows of ``T`` rows (``T``: the model's window) and their
    targets, the run's own loss (mean squared error, or Gaussian NLL when probabilistic),
    in the data's scaled units; a direct model has one loss, at the last step; an
    autoregressive one a loss at every step (the next row);
  - classify: ``B`` sequences of the run's training data, all cut to ``T`` steps
    (``T``: the longest length ``B`` of them reach), and one loss,
    ``L_T = cross-entropy(logits, label)`` of the logits after the last step. The
    logits come from the model's own pooling (last / mean / attention) over the ``T``
    steps (:class:`FinalLogits`).

- ``rnnkit diagnose --cell KIND --hidden-size H --steps T``: a fresh, untrained
  one-layer stack (``build_stack``; ``torch.manual_seed(seed)`` before building) on
  standard normal inputs ``(T, B, I)``, with ``L_t = Σ outputs_t``, the sum of the
  layer's outputs at step ``t`` (so ``L_T`` is the sum at the last step): the flow the
  initialisation alone gives.

Both run :func:`rnnkit.diagnostics.gradient_flow` (float64, eval mode) and write its
views with :func:`rnnkit.diagnostics.report.write_diagnosis`. Where the loss is at the
last step only, only ``‖∂L_T/∂h_k‖`` is computed (``pairs="last"``: the other rows
would be zero) and no heat map is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.cli.errors import UsageError
from rnnkit.cli.runs import open_trained_run
from rnnkit.models.builder import CELL_KINDS

OUT_NAME = "diagnose"  # RUN_DIR/diagnose by default
DEFAULT_BATCH = 8
DEFAULT_CELL_OUT = "runs/diagnose"  # the --cell form writes into runs/diagnose/<cell>
DEFAULT_CELL_STEPS = 100
DEFAULT_HIDDEN = 64
DEFAULT_INPUT = 8
CELL_FORM_FLAGS = ("hidden_size", "input_size", "forget_bias")


@dataclass
class Probe:
    """What ``gradient_flow`` reads: a model, a batch, a loss, and where they came from."""

    model: nn.Module
    inputs: Tensor  # (T, B, I) floats or (T, B) token ids
    targets: Tensor | None = None  # (T, B) class ids for the default per-step loss
    loss: object = None  # loss(outputs_t, targets_t, t) or None for the default
    end_only: bool = False  # the loss is at the last step only
    source: dict = field(default_factory=dict)  # shown at the top of the report
    settings: dict = field(default_factory=dict)  # the model's settings
    notes: list[str] = field(default_factory=list)  # printed before the summary
    batch: dict = field(default_factory=dict)  # the picked examples, as the task stores them


# ---------------------------------------------------------------------------- parser


def add_diagnose_parser(sub) -> None:
    p = sub.add_parser(
        "diagnose",
        help="gradient flow through time: do the gradients vanish or explode?",
        description="Measure ‖∂L_T/∂h_k‖ over the lag T−k, the one-step Jacobians and the "
        "recurrent weight's spectrum, for a trained run (RUN_DIR) or a fresh untrained cell "
        "(--cell); write PNGs, diagnose.json and a self-contained report.html.",
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        metavar="RUN_DIR",
        help="a run made by `rnnkit lm|forecast|classify train`",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help=f"output directory (default RUN_DIR/diagnose, or {DEFAULT_CELL_OUT}/CELL)",
    )
    p.add_argument("--checkpoint", choices=("best", "last"), help="with RUN_DIR (default best)")
    g = p.add_argument_group("a fresh model instead of a run")
    g.add_argument("--cell", choices=tuple(CELL_KINDS), help="an untrained one-layer model")
    g.add_argument("--hidden-size", type=int, help=f"units (default {DEFAULT_HIDDEN})")
    g.add_argument("--input-size", type=int, help=f"input features (default {DEFAULT_INPUT})")
    g.add_argument("--forget-bias", type=float, help="lstm: forget-gate bias (default 1)")
    g = p.add_argument_group("the batch and the analysis")
    g.add_argument(
        "--steps",
        type=int,
        help=f"sequence length T (default: the run's; {DEFAULT_CELL_STEPS} with --cell)",
    )
    g.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="sequences B (default 8)")
    g.add_argument("--layer", type=int, default=0, help="recurrent layer to analyse (default 0)")
    g.add_argument(
        "--pairs",
        choices=("auto", "all", "last"),
        default="auto",
        help="all: every ‖∂L_t/∂h_k‖ (a heat map, T backward passes); last: t = T only; "
        "auto: all up to T = 200 (default)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the batch and fresh model")
    p.set_defaults(run=diagnose_command)


# --------------------------------------------------------------------------- command


def diagnose_command(args) -> int:
    from rnnkit.diagnostics import gradient_flow
    from rnnkit.diagnostics.report import write_diagnosis

    _check_args(args)
    if args.out:
        out = Path(args.out)
    elif args.cell is not None:
        out = Path(DEFAULT_CELL_OUT) / args.cell
    else:
        out = Path(args.run_dir) / OUT_NAME
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    if args.cell is not None:
        probe = cell_probe(
            args.cell,
            hidden_size=args.hidden_size or DEFAULT_HIDDEN,
            input_size=args.input_size or DEFAULT_INPUT,
            steps=args.steps or DEFAULT_CELL_STEPS,
            batch=args.batch,
            seed=args.seed,
            forget_bias=args.forget_bias,
        )
    else:
        probe = run_probe(
            args.run_dir, args.checkpoint or "best", args.steps, args.batch, args.seed
        )
    pairs = args.pairs
    if probe.end_only:
        if pairs == "all":
            probe.notes.append(
                "note: the loss is at the last step only; --pairs all has nothing to add, "
                "so only ‖∂L_T/∂h_k‖ is computed (no heat map)"
            )
        pairs = "last"
    threads = torch.get_num_threads()
    # One step at a time in float64: small products that one thread runs fastest (on a
    # busy machine extra threads spin: 0.5 s with one thread, 36 s with two, measured).
    torch.set_num_threads(1)
    try:
        flow = gradient_flow(
            probe.model, probe.inputs, probe.targets, probe.loss, pairs=pairs, layer=args.layer
        )
    finally:
        torch.set_num_threads(threads)
    source = {**probe.source, "steps T": flow.steps, "batch B": flow.batch_size}
    written = write_diagnosis(out, flow, source=source, settings=probe.settings)
    for note in probe.notes:
        print(note)
    print(flow.summary())
    print(f"wrote {out}: {', '.join(path.name for path in written)}")
    return 0


def _check_args(args) -> None:
    if (args.run_dir is None) == (args.cell is None):
        raise UsageError(
            "give either RUN_DIR (a trained run) or --cell KIND (a fresh model), "
            + ("not both" if args.cell is not None else "one of them")
        )
    if args.cell is not None:
        if args.checkpoint is not None:
            raise UsageError("--checkpoint applies to RUN_DIR, not to a fresh --cell model")
        if args.forget_bias is not None and args.cell != "lstm":
            raise UsageError(f"--forget-bias applies to --cell lstm, not --cell {args.cell}")
        if args.forget_bias is not None and not math.isfinite(args.forget_bias):
            raise UsageError(f"--forget-bias must be a finite number, got {args.forget_bias}")
    else:
        given = [
            f"--{n.replace('_', '-')}" for n in CELL_FORM_FLAGS if getattr(args, n) is not None
        ]
        if given:
            raise UsageError(f"{given[0]} applies to the --cell form; a run has its own model")
    for name in ("hidden_size", "input_size", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.steps is not None and args.steps < 2:
        raise UsageError(
            f"--steps must be at least 2 (gradients go back in time), got {args.steps}"
        )


# -------------------------------------------------------------------- a fresh model


def cell_probe(
    cell: str,
    *,
    hidden_size: int = DEFAULT_HIDDEN,
    input_size: int = DEFAULT_INPUT,
    steps: int = DEFAULT_CELL_STEPS,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    forget_bias: float | None = None,
) -> Probe:
    """An untrained one-layer stack of ``cell`` on standard normal inputs ``(T, B, I)``."""
    from rnnkit.models.builder import build_stack

    torch.manual_seed(seed)
    stack = build_stack(cell, input_size, hidden_size, 1)
    module = stack.layers[0].cell
    if forget_bias is not None:  # LSTMCell added its forget_bias (1) to bias_ih[H:2H]
        H = hidden_size
        with torch.no_grad():
            module.bias_ih[H : 2 * H] += forget_bias - module.forget_bias
        module.forget_bias = float(forget_bias)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(steps, batch, input_size, generator=generator)  # (T, B, I)
    settings = {
        "cell": f"{cell}: {CELL_KINDS[cell]}",
        "input_size": input_size,
        "hidden_size": hidden_size,
        "num_layers": 1,
        "weights": f"fresh, untrained (torch.manual_seed({seed}))",
        "inputs": "standard normal",
    }
    if cell == "lstm":
        settings["forget_bias"] = module.forget_bias
    source = {"model": f"fresh {cell}", "loss": "L_t = sum of the outputs at step t"}
    return Probe(stack, inputs, source=source, settings=settings)


# --------------------------------------------------------------------------- a run


def run_probe(run_dir, tag: str, steps: int | None, batch: int, seed: int) -> Probe:
    """The run's model on ``batch`` sequences of its own data (see the module docstring)."""
    run_dir = Path(run_dir)
    checkpoint, tag = open_trained_run(run_dir, tag, "rnnkit diagnose")
    task = checkpoint.meta["task"]
    rng = np.random.default_rng(seed)
    make = {"lm": _lm_probe, "forecast": _forecast_probe, "classify": _classify_probe}[task]
    probe = make(run_dir, tag, checkpoint, steps, batch, rng)
    probe.source = {
        "run": str(run_dir),
        "task": task,
        "checkpoint": f"{tag} (step {checkpoint.step})",
        **probe.source,
    }
    probe.settings = {**probe.model.config.to_dict(), **probe.settings}
    return probe


def _pick(count: int, batch: int, rng, what: str, notes: list[str]) -> np.ndarray:
    """``min(batch, count)`` distinct indices of ``count``, sorted (a note when fewer)."""
    if batch > count:
        notes.append(f"note: the run's data has {count} {what}; using all of them, not {batch}")
    return np.sort(rng.choice(count, size=min(batch, count), replace=False))


def _lm_probe(run_dir: Path, tag, checkpoint, steps, batch, rng) -> Probe:
    from rnnkit.cli.lm import DataConfig, load_run
    from rnnkit.data import encode_file, split_tokens

    model, vocab = load_run(run_dir, tag)
    data = DataConfig(**checkpoint.meta["data"])
    path = Path(data.text) if data.text else run_dir / "corpus.txt"
    if not path.is_file():
        raise UsageError(f"the run's text {path} is gone; diagnose reads the run's own text")
    T = steps or int(checkpoint.train_config.get("seq_len", 128))
    ids, _ = split_tokens(encode_file(path, vocab), data.val_fraction)
    if len(ids) < T + 1:
        raise UsageError(
            f"the run's training text has {len(ids)} tokens; --steps {T} needs at least {T + 1}"
        )
    notes: list[str] = []
    starts = _pick(len(ids) - T, batch, rng, "windows", notes)
    window = starts[None, :] + np.arange(T + 1)[:, None]  # (T+1, B) token positions
    tokens = torch.as_tensor(ids[window], dtype=torch.long)
    source = {
        "data": f"{len(starts)} windows of the training text {path.name}",
        "loss": "cross-entropy of the next token at every step",
    }
    return Probe(
        model, tokens[:-1], tokens[1:], source=source, notes=notes, batch={"tokens": tokens}
    )


def _forecast_probe(run_dir: Path, tag, checkpoint, steps, batch, rng) -> Probe:
    from rnnkit.cli.forecast import ForecastDataConfig, load_run, load_series
    from rnnkit.data.series import load_example
    from rnnkit.data.windows import Split, make_windows

    model, meta = load_run(run_dir, tag)
    cfg = model.config
    data = ForecastDataConfig(**meta["data"])
    values, columns = load_series(data, load_example(data.example) if data.example else None)
    if columns != meta["columns"]:
        raise UsageError(f"{run_dir} was trained on columns {meta['columns']}, not {columns}")
    split = Split(**meta["split"])
    scaled = model.scaler.transform(values)  # (rows, C)
    T = steps or cfg.window
    windows = make_windows(
        scaled,
        scaled[:, : cfg.n_targets],
        window=T,
        horizon=cfg.horizon,
        mode=cfg.mode,
        start=0,
        stop=split.n_train,
    )
    if len(windows) == 0:
        raise UsageError(
            f"the training part has {split.n_train} rows: no window of --steps {T} fits; "
            f"give a smaller --steps"
        )
    notes: list[str] = []
    pick = _pick(len(windows), batch, rng, "training windows", notes)
    x = torch.as_tensor(windows.x[pick], dtype=torch.float64)  # (B, T, I)
    y = torch.as_tensor(windows.y[pick], dtype=torch.float64)  # (B, T_y, K)
    w = torch.as_tensor(windows.weight[pick], dtype=torch.float64)  # (B, T_y)
    x_raw = x
    loss, x = forecast_loss(model, x, y, w)
    what = "Gaussian NLL" if cfg.probabilistic else "mean squared error"
    where = "of the horizon after the last step" if cfg.mode == "direct" else "of the next row"
    source = {
        "data": f"{len(pick)} training windows of {data.example or Path(data.csv).name}",
        "loss": f"{what} {where} (scaled units)",
    }
    return Probe(
        model,
        x.transpose(0, 1),  # (T, B, I)
        loss=loss,
        end_only=cfg.mode == "direct",
        source=source,
        notes=notes,
        batch={"x": x_raw, "y": y, "w": w},
    )


def forecast_loss(model, x: Tensor, y: Tensor, w: Tensor):
    """The forecaster's loss as a per-step ``loss(outputs_t, _, t)``, and its input.

    ``outputs_t = head(h_t)`` ``(B, ·)``. Direct mode: the loss of ``Forecaster.loss`` at
    ``t = T - 1`` (the horizon from the last output), zero before. Autoregressive: at
    every step, the loss of the one-step forecast of row ``t + 1`` (``y[:, t]``) with its
    weight. With ``window_norm`` the model's input is the normalised window and the
    outputs are mapped back, as in ``Forecaster.forward``.
    """
    from rnnkit.models.forecaster import LOG_2PI, MIN_VAR, NORM_EPS

    cfg = model.config
    K, T = cfg.n_targets, x.shape[1]
    mu = sd = None
    if cfg.window_norm:  # x' = (x - mu) / sd with each window's own statistics
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, I)
        sd = (x.var(dim=1, unbiased=False, keepdim=True) + NORM_EPS).sqrt()
        x = (x - mu) / sd
        mu, sd = mu[:, 0, :K], sd[:, 0, :K]  # (B, K)

    def values(out: Tensor, rows: int) -> tuple[Tensor, Tensor | None]:
        """Per-value mean and variance (B, rows, K) in the data's scaled units."""
        n = rows * K
        mean, var = out[:, :n], None
        if cfg.probabilistic:
            var = nn.functional.softplus(out[:, n : 2 * n]) + MIN_VAR
        mean = mean.reshape(-1, rows, K)
        var = None if var is None else var.reshape(-1, rows, K)
        if mu is not None:
            mean = mean * sd[:, None] + mu[:, None]
            var = None if var is None else var * sd[:, None] ** 2
        return mean, var

    def weighted(mean, var, target, weight) -> Tensor:
        if var is None:
            per_value = (target - mean) ** 2
        else:
            per_value = 0.5 * (LOG_2PI + torch.log(var) + (target - mean) ** 2 / var)
        weight = weight.to(per_value.dtype).unsqueeze(-1)  # (B, rows, 1)
        return (per_value * weight).sum() / (weight.sum() * K).clamp_min(1.0)

    def loss(out: Tensor, _targets, t: int) -> Tensor:
        if cfg.mode == "direct":
            if t != T - 1:
                return out.sum() * 0.0  # no loss before the last step
            mean, var = values(out, cfg.horizon)
            return weighted(mean, var, y.to(out), w.to(out))
        mean, var = values(out, 1)
        return weighted(mean, var, y[:, t : t + 1].to(out), w[:, t : t + 1].to(out))

    loss.__name__ = "the forecaster's loss"
    return loss, x


class FinalLogits(nn.Module):
    """A classifier's pooling and head at every step ``t``, as if the sequence ended there.

    ``forward(y (T, B, O)) -> logits (T, B, C)`` with ``logits[t] = head(pool(y_0..y_t))``:
    ``last``: ``y_t`` (bidirectional: ``[y^fwd_t ; y^bwd_0]``); ``mean``:
    ``cumsum(y)_t / (t + 1)``; ``attention``: ``Σ_{s≤t} e_s y_s / Σ_{s≤t} e_s`` with
    ``e_s = exp(score_s - max score)``. At ``t = T - 1`` this is the model's own
    ``forward`` on the ``T`` steps (dropout off); at earlier ``t`` it is the model on the
    first ``t + 1`` steps for a one-way stack (a backward direction has read all ``T``).
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.pooling = model.config.pooling
        self.bidirectional = model.config.bidirectional
        self.attention = model.attention
        self.head = model.head

    def forward(self, y: Tensor) -> Tensor:
        steps = torch.arange(1, y.shape[0] + 1, device=y.device, dtype=y.dtype)[:, None, None]
        if self.pooling == "mean":
            pooled = y.cumsum(0) / steps  # (T, B, O)
        elif self.pooling == "attention":
            scores = self.attention(y)  # (T, B, 1)
            e = torch.exp(scores - scores.max(0, keepdim=True).values.detach())
            pooled = (e * y).cumsum(0) / e.cumsum(0)  # (T, B, O)
        elif self.bidirectional:
            H = y.shape[-1] // 2  # forward half, then backward half
            pooled = torch.cat([y[..., :H], y[:1, :, H:].expand(y.shape[0], -1, -1)], -1)
        else:
            pooled = y
        return self.head(pooled)  # (T, B, C)


class _EndOfSequence(nn.Module):
    """A classifier seen by ``gradient_flow``: its embedding, stack and :class:`FinalLogits`."""

    def __init__(self, model) -> None:
        super().__init__()
        self.config = model.config
        self.embedding = model.embedding
        self.rnn = model.rnn
        self.head = FinalLogits(model)


def _classify_probe(run_dir: Path, tag, checkpoint, steps, batch, rng) -> Probe:
    from rnnkit.cli.classify import ClassifyDataConfig, load_run, read_data
    from rnnkit.data.labeled import LabeledTexts

    model, meta, vocab = load_run(run_dir, tag)
    data_cfg = ClassifyDataConfig(**meta["data"])
    if data_cfg.example is not None:
        from rnnkit.data.digits import digits_splits

        data = digits_splits(data_cfg.layout)[0]  # the training split
    else:
        data = read_data(data_cfg, classes=meta["classes"])
        if isinstance(data, LabeledTexts):
            data = data.encode(vocab, data_cfg.max_length)
    lengths = data.lengths
    notes: list[str] = []
    # By default the longest length that `batch` of the sequences reach.
    T = steps or int(np.sort(lengths)[::-1][min(batch, len(lengths)) - 1])
    eligible = np.flatnonzero(lengths >= T)
    if len(eligible) == 0:
        raise UsageError(
            f"no sequence of {data.source} has {T} steps (the longest has {lengths.max()}); "
            f"give a smaller --steps"
        )
    if T < 2:
        raise UsageError(f"the sequences of {data.source} are {T} step long; diagnose needs 2")
    pick = eligible[_pick(len(eligible), batch, rng, f"sequences of {T}+ steps", notes)]
    x = torch.as_tensor(data.values[pick][:, :T])  # (B, T, ·)
    labels = torch.as_tensor(data.labels[pick], dtype=torch.long)  # (B,)

    def loss(out: Tensor, _targets, t: int) -> Tensor:
        if t != T - 1:
            return out.sum() * 0.0  # one loss, after the last step
        return nn.functional.cross_entropy(out, labels.to(out.device))

    loss.__name__ = "cross-entropy of the logits after the last step"
    inputs = x.transpose(0, 1)  # (T, B) token ids or (T, B, F)
    source = {
        "data": f"{len(pick)} training sequences of {data.source}, cut to {T} steps",
        "loss": "cross-entropy of the logits after the last step",
    }
    return Probe(
        _EndOfSequence(model),
        inputs,
        loss=loss,
        end_only=True,
        source=source,
        notes=notes,
        batch={"x": x, "labels": labels},
    )
