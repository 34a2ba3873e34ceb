"""Hyperparameter search for echo state networks: grid or seeded random, over 2 processes.

A search space maps each hyperparameter to either

- a list of values: every one in a grid search, a uniform draw among them in a
  random search (a one-element list fixes a value);
- ``(low, high, "log")`` or ``(low, high, "linear")``: random search only; a draw
  ``exp(U[ln low, ln high])`` or ``U[low, high]``, rounded to an integer when both
  bounds are integers (``"units": (50, 800, "log")``).

The task is either a picklable function ``params -> score`` (lower is better) or a
data spec ``((train_inputs, train_targets), (test_inputs, test_targets))`` scored by
:func:`esn_task` (test NRMSE of an :class:`EchoStateNetwork` built from the params).
Draws come from one ``numpy`` generator seeded with ``seed`` before any trial runs,
so the same call gives the same trials and, with a deterministic task, the same
scores whatever the number of workers.
"""

from __future__ import annotations

import inspect
import io
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_with

DEFAULT_TRIALS = 20
SCALES = ("log", "linear")


@dataclass(frozen=True)
class Trial:
    """One evaluated point: its hyperparameters, score (lower is better) and run time."""

    params: dict
    score: float
    seconds: float


@dataclass
class SearchResult:
    """The trials of a search in the order they were proposed, with the space searched."""

    trials: list[Trial]
    space: dict = field(default_factory=dict)

    @property
    def ranked(self) -> list[Trial]:
        """Trials by score, best first; non-finite scores (diverged fits) last."""
        return sorted(self.trials, key=lambda t: (not math.isfinite(t.score), t.score))

    @property
    def best(self) -> Trial:
        """The trial with the lowest finite score."""
        best = self.ranked[0]
        if not math.isfinite(best.score):
            raise ValueError("no trial of the search gave a finite score")
        return best

    def table(self) -> str:
        """A Markdown table of the trials sorted by score, best first."""
        names = list(self.space) or sorted({k for t in self.trials for k in t.params})
        head = ["rank", "score", *names, "seconds"]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for rank, trial in enumerate(self.ranked, 1):
            cells = [str(rank), _fmt(trial.score)]
            cells += [_fmt(trial.params.get(name, "")) for name in names]
            cells.append(f"{trial.seconds:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> None:
        """A PNG at ``path``: the score against each hyperparameter, one panel each.

        The x axis is logarithmic where the space is ``"log"`` (or a list of positive
        numbers spanning two decades or more); the y axis where the finite scores are
        positive and span a decade or more. The best trial is marked in red.
        """
        # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(self.space) or sorted({k for t in self.trials for k in t.params})
        if not names or not self.trials:
            raise ValueError("nothing to plot: the search has no hyperparameters or trials")
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
        FigureCanvasAgg(fig)
        finite = [t for t in self.trials if math.isfinite(t.score)]
        scores = [t.score for t in finite]
        log_y = bool(scores) and min(scores) > 0 and max(scores) >= 10 * min(scores)
        best = self.ranked[0]
        for i, name in enumerate(names):
            ax = fig.add_subplot(rows, cols, i + 1)
            values = [t.params.get(name) for t in finite]
            numeric = all(_is_number(v) for v in values)
            if numeric:
                xs = [float(v) for v in values]
            else:  # categorical: one position per distinct value, labelled
                labels = sorted({str(v) for v in values})
                xs = [labels.index(str(v)) for v in values]
                ax.set_xticks(range(len(labels)), labels)
            ax.scatter(xs, scores, s=18, alpha=0.7)
            if math.isfinite(best.score) and name in best.params:
                bx = best.params[name]
                bx = float(bx) if numeric else sorted({str(v) for v in values}).index(str(bx))
                ax.scatter([bx], [best.score], s=60, color="tab:red", zorder=3, label="best")
                ax.legend(loc="best", fontsize=8)
            if numeric and _log_axis(self.space.get(name), xs):
                ax.set_xscale("log")
            if log_y:
                ax.set_yscale("log")
            ax.set_xlabel(name)
            ax.set_ylabel("score")
            ax.grid(alpha=0.3)
        fig.tight_layout()

        def write(tmp: Path) -> None:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            tmp.write_bytes(buffer.getvalue())

        atomic_write_with(path, write)


def search(
    task: Callable[[dict], float] | Sequence,
    space: dict,
    n_trials: int | None = None,
    method: str = "random",
    seed: int = 0,
    workers: int = 2,
    washout: int = 0,
) -> SearchResult:
    """Evaluate ``task`` at points of ``space`` and return every trial's score.

    ``method="grid"`` runs the full product of the lists (``n_trials`` left out, or
    equal to its size); ``method="random"`` draws ``n_trials`` points (default 20).
    ``workers > 1`` runs trials in that many processes, each with one torch thread
    (so two workers on two cores do not fight over threads; the serial path uses one
    thread too, so the scores do not depend on ``workers``); the task must then be
    picklable (a module-level function, a ``functools.partial`` of one, or a data
    spec). With a data spec, ``washout`` is the steps dropped at the start of the
    training and of the test sequence, and every trial's network gets ``seed`` as its
    own seed unless the space sets ``seed``: trials then differ by their
    hyperparameters only, not by the draw of the reservoir.
    """
    _check_space(space)
    if method not in ("random", "grid"):
        raise ValueError(f"method must be 'random' or 'grid', got {method!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    fixed: dict = {}
    if not callable(task):
        task = _data_task(task, space, washout)
        if "seed" not in space:
            fixed["seed"] = int(seed)

    if method == "grid":
        points = grid_points(space)
        if n_trials is not None and n_trials != len(points):
            raise ValueError(
                f"a grid search runs all {len(points)} combinations; leave n_trials out"
            )
    else:
        n_trials = DEFAULT_TRIALS if n_trials is None else n_trials
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
        points = random_points(space, n_trials, seed)

    jobs = [{**fixed, **p} for p in points]
    if workers == 1 or len(jobs) == 1:
        # One torch thread here too: a sum split over threads rounds differently, and
        # the scores should not depend on the number of workers.
        with _torch_threads(1):
            outcomes = [_timed(task, p) for p in jobs]
    else:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), initializer=_one_thread
        ) as pool:
            outcomes = list(pool.map(partial(_timed, task), jobs))
    trials = [Trial(p, s, sec) for p, (s, sec) in zip(points, outcomes, strict=True)]
    return SearchResult(trials, dict(space))


def grid_points(space: dict) -> list[dict]:
    """Every combination of the listed values, the last name varying fastest."""
    for name, spec in space.items():
        if not isinstance(spec, list):
            raise ValueError(
                f"a grid search needs a list of values for {name!r}, got {spec!r}; "
                "use method='random' for (low, high, scale) ranges"
            )
    names = list(space)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())]


def random_points(space: dict, n_trials: int, seed: int) -> list[dict]:
    """``n_trials`` independent draws from ``space``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n_trials):
        point = {}
        for name, spec in space.items():
            if isinstance(spec, list):
                point[name] = spec[int(rng.integers(len(spec)))]
                continue
            low, high, scale = spec
            if scale == "log":
                value = math.exp(rng.uniform(math.log(low), math.log(high)))
            else:
                value = float(rng.uniform(low, high))
            if _is_int(low) and _is_int(high):
                value = min(max(round(value), low), high)
            point[name] = value
        points.append(point)
    return points


def esn_task(
    params: dict,
    train_inputs,
    train_targets,
    test_inputs,
    test_targets,
    washout: int = 0,
) -> float:
    """Test NRMSE of ``EchoStateNetwork(**params)`` fitted on the training pair.

    The test sequence is run from a fresh (zero) state like the training one, so
    its first ``washout`` steps are left out of the score as well.
    """
    from rnnkit.reservoir import EchoStateNetwork, nrmse

    model = EchoStateNetwork(**params)
    model.fit(train_inputs, train_targets, washout=washout)
    predicted = np.asarray(model.predict(test_inputs), dtype=np.float64)
    truth = np.asarray(test_targets, dtype=np.float64)
    return float(nrmse(truth[..., washout:, :], predicted[..., washout:, :]))


def _data_task(spec, space: dict, washout: int) -> Callable[[dict], float]:
    """The picklable task scoring an ESN on ``((train_x, train_y), (test_x, test_y))``."""
    try:
        (train_x, train_y), (test_x, test_y) = spec
    except (TypeError, ValueError):
        raise ValueError(
            "task must be a function params -> score or "
            "((train_inputs, train_targets), (test_inputs, test_targets))"
        ) from None
    if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
        raise ValueError(f"washout must be an integer >= 0, got {washout!r}")
    from rnnkit.reservoir import EchoStateNetwork

    known = set(inspect.signature(EchoStateNetwork).parameters)
    unknown = sorted(set(space) - known)
    if unknown:
        raise ValueError(
            f"{', '.join(map(repr, unknown))} is not an EchoStateNetwork setting; "
            f"known: {', '.join(sorted(known))}"
        )
    arrays = [np.asarray(a, dtype=np.float64) for a in (train_x, train_y, test_x, test_y)]
    if any(a.ndim not in (2, 3) for a in arrays):
        raise ValueError("the task's arrays must be (T, features) or (B, T, features)")
    if arrays[2].shape[-2] <= washout:
        raise ValueError(
            f"the test sequence has {arrays[2].shape[-2]} steps; it needs more than the "
            f"washout ({washout})"
        )
    train_x, train_y, test_x, test_y = arrays
    return partial(
        esn_task,
        train_inputs=train_x,
        train_targets=train_y,
        test_inputs=test_x,
        test_targets=test_y,
        washout=washout,
    )


def _check_space(space) -> None:
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict of name -> list or (low, high, scale)")
    for name, spec in space.items():
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"the list of values for {name!r} is empty")
            continue
        if not (isinstance(spec, tuple) and len(spec) == 3):
            raise ValueError(
                f"{name!r}: give a list of values or (low, high, 'log'|'linear'), got {spec!r}"
            )
        low, high, scale = spec
        if scale not in SCALES:
            raise ValueError(f"{name!r}: the scale must be 'log' or 'linear', got {scale!r}")
        if not (_is_number(low) and _is_number(high) and math.isfinite(low + high)):
            raise ValueError(f"{name!r}: the bounds must be finite numbers, got {low!r}, {high!r}")
        if not low < high:
            raise ValueError(f"{name!r}: low must be below high, got {low} and {high}")
        if scale == "log" and low <= 0:
            raise ValueError(f"{name!r}: a log range needs low > 0, got {low}")


def _timed(task: Callable[[dict], float], params: dict) -> tuple[float, float]:
    start = time.perf_counter()
    score = float(task(dict(params)))
    return score, time.perf_counter() - start


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _log_axis(spec, xs: list[float]) -> bool:
    if isinstance(spec, tuple):
        return spec[2] == "log"
    return bool(xs) and min(xs) > 0 and max(xs) >= 100 * min(xs)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
