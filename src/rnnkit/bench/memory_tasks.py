"""The tasks of ``rnnkit bench memory``: adding problem, copy memory, sequential digits.

Each task hands out fresh training batches from a seeded generator (digits: random
minibatches of the fixed training split), a fixed test set per length, the loss to
train on, the test metric, the baseline a memoryless model scores and the threshold
that counts as "solved":

=========  ======================  ===============================  =====================
task       metric                  baseline                         solved
=========  ======================  ===============================  =====================
adding     MSE of the sum          1/6 (always answer 1; Var of     MSE < 0.01
                                   U(0,1) + U(0,1))
copy       cross-entropy per step  ``10·log(8) / (T + 20)``         CE < 10 % of baseline
digits     accuracy                the most frequent test class     accuracy >= 0.9
=========  ======================  ===============================  =====================

Le et al. (2015) quote 0.1767 for the adding baseline; the generator's exact value is
``E[(a + b - 1)²] = Var(a) + Var(b) = 1/12 + 1/12 = 1/6 ≈ 0.1667`` (a, b ~ U(0, 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnkit.data.synthetic import adding_problem, copy_memory, copy_memory_baseline

ADDING_BASELINE = 1.0 / 6.0  # MSE of always answering 1, see the module docstring
PAPER_ADDING_BASELINE = 0.1767  # the figure Le et al. (2015) print
ADDING_SOLVED = 0.01  # MSE, ~6 % of the baseline
COPY_SOLVED_FRACTION = 0.1  # CE below this fraction of the baseline
DIGITS_SOLVED = 0.9  # accuracy
DIGITS_STEPS = 64  # one pixel per step
COPY_SYMBOLS = 8
COPY_REMEMBER = 10


@dataclass
class Task:
    """What a task looks like to the training loop (subclasses fill it in)."""

    name: str = ""
    metric: str = ""  # "mse" | "ce" | "accuracy"
    higher_is_better: bool = False
    log_scale: bool = True  # learning-curve plot's y axis
    input_size: int = 1
    output_size: int = 1
    per_step: bool = False  # an output at every step (copy) or at the last step only
    fixed_length: int | None = None  # digits: the length does not vary

    def steps(self, T: int) -> int:
        """Time steps of a sequence at length setting ``T``."""
        return T

    def baseline(self, T: int) -> float:
        raise NotImplementedError

    def threshold(self, T: int) -> float:
        raise NotImplementedError

    def solved(self, value: float, T: int) -> bool:
        if not math.isfinite(value):
            return False
        t = self.threshold(T)
        return value >= t if self.higher_is_better else value < t

    def train_batch(self, batch: int, T: int, generator: torch.Generator):
        raise NotImplementedError

    def test_set(self, T: int, size: int, seed: int):
        raise NotImplementedError

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, out: Tensor, y: Tensor) -> float:
        """The test metric of outputs ``out`` against targets ``y``."""
        raise NotImplementedError


class AddingTask(Task):
    def __init__(self) -> None:
        super().__init__("adding", "mse", input_size=2, output_size=1)

    def baseline(self, T: int) -> float:
        return ADDING_BASELINE

    def threshold(self, T: int) -> float:
        return ADDING_SOLVED

    def train_batch(self, batch, T, generator):
        return adding_problem(batch, T, generator)

    def test_set(self, T, size, seed):
        return adding_problem(size, T, torch.Generator().manual_seed(seed))

    def loss(self, out, y):
        return F.mse_loss(out.squeeze(-1), y)  # out (B, 1)

    def score(self, out, y):
        return float(F.mse_loss(out.squeeze(-1), y))


class CopyTask(Task):
    def __init__(self) -> None:
        n = COPY_SYMBOLS + 2  # blank, symbols, delimiter
        super().__init__("copy", "ce", input_size=n, output_size=n, per_step=True)

    def steps(self, T):
        return T + 2 * COPY_REMEMBER

    def baseline(self, T):
        return copy_memory_baseline(T, symbols=COPY_SYMBOLS, remember=COPY_REMEMBER)

    def threshold(self, T):
        return COPY_SOLVED_FRACTION * self.baseline(T)

    def train_batch(self, batch, T, generator):
        return copy_memory(batch, T, generator, symbols=COPY_SYMBOLS, remember=COPY_REMEMBER)

    def test_set(self, T, size, seed):
        g = torch.Generator().manual_seed(seed)
        return copy_memory(size, T, g, symbols=COPY_SYMBOLS, remember=COPY_REMEMBER)

    def loss(self, out, y):
        return F.cross_entropy(out.flatten(0, 1), y.flatten())  # out (T, B, C) -> (T·B, C)

    def score(self, out, y):
        return float(self.loss(out, y))


class DigitsTask(Task):
    """Sequential digits: 64 pixel steps; ``T`` is ignored (always 64)."""

    def __init__(self) -> None:
        super().__init__(
            "digits",
            "accuracy",
            higher_is_better=True,
            log_scale=False,
            input_size=1,
            output_size=10,
            fixed_length=DIGITS_STEPS,
        )
        self._splits = None

    def _data(self):
        if self._splits is None:
            from rnnkit.data.digits import digits_splits

            train, _, test = digits_splits("pixels")
            to_x = lambda d: torch.from_numpy(d.values).transpose(0, 1).contiguous()  # noqa: E731
            self._splits = (
                to_x(train),  # (64, N, 1) time-major
                torch.from_numpy(train.labels),
                to_x(test),
                torch.from_numpy(test.labels),
            )
        return self._splits

    def steps(self, T):
        return DIGITS_STEPS

    def baseline(self, T):
        labels = self._data()[3]
        return float(torch.bincount(labels).max()) / len(labels)

    def threshold(self, T):
        return DIGITS_SOLVED

    def train_batch(self, batch, T, generator):
        x, y = self._data()[:2]
        pick = torch.randint(0, len(y), (batch,), generator=generator)
        return x[:, pick], y[pick]

    def test_set(self, T, size, seed):
        return self._data()[2:]  # the fixed test split, whatever the size

    def loss(self, out, y):
        return F.cross_entropy(out, y)

    def score(self, out, y):
        return float((out.argmax(-1) == y).float().mean())


TASKS = {"adding": AddingTask, "copy": CopyTask, "digits": DigitsTask}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]()
