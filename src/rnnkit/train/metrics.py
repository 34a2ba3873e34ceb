"""The run's metrics log: ``metrics.csv`` (always) and TensorBoard (when installed)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rnnkit.atomic import atomic_write_text

COLUMNS = (
    "step",  # optimizer steps done (bad ones included)
    "epoch",  # passes over the training stream done, fractional
    "loss",  # mean training loss since the previous row, nats per token (good steps only)
    "bits",  # the same in bits per token
    "grad_norm",  # mean global gradient norm before clipping, same steps
    "lr",  # learning rate of the row's last step
    "tokens_per_s",  # training throughput since the previous row
    "val_loss",  # validation loss in nats per token, on evaluation rows only
    "elapsed",  # seconds of training, summed over resumed sessions
    "bad_steps",  # bad (skipped) steps so far
)  # then the monitors (rnnkit.train.monitors), as they first appear:
# "grad_norm_clipped": mean norm of the gradients applied (after clip_norm and clip_value);
# "grad_norm/<group>": mean pre-clip norm of a parameter group ("embedding", "rnn.layers.0");
# "gate_sat/<layer>/<gate>": fraction of a sigmoid gate's values < 0.05 or > 0.95 (log rows).
SCALARS = ("loss", "bits", "grad_norm", "lr", "tokens_per_s", "examples_per_s")
SCALAR_PREFIXES = ("val_", "grad_norm", "gate_sat/")  # column families also sent to TensorBoard


class MetricsLog:
    """Appends one row per log to ``run_dir/metrics.csv``, flushed at once.

    ``columns`` are the header (default: the language-model trainer's ``COLUMNS``).
    A row with a key the header lacks (a validation metric first seen at the first
    evaluation) widens the header: the file is rewritten, atomically, with the new
    column empty in the earlier rows.

    ``resume_step``: keep the rows up to that step and drop the later ones (written
    after the checkpoint a resumed run restarts from), so the file matches the run's
    history; with ``drop_evaluation`` also the rows of that step holding a
    ``val_loss`` (an evaluation the resumed run repeats). None starts a fresh file.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        resume_step: int | None = None,
        drop_evaluation: bool = False,
        columns: tuple[str, ...] = COLUMNS,
    ) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = list(columns)
        kept = [] if resume_step is None else _rows_up_to(self.path, resume_step)
        if drop_evaluation:
            kept = [
                r for r in kept if not (_int(r.get("step")) == resume_step and r.get("val_loss"))
            ]
        for row in kept:  # a resumed log keeps the columns it had grown
            self.columns += [k for k in row if k not in self.columns]
        self._file = None
        self._rewrite(kept)
        self._tensorboard = _summary_writer(
            Path(run_dir) / "tensorboard", None if resume_step is None else resume_step + 1
        )

    def _rewrite(self, rows: list[dict]) -> None:
        """Write the header and ``rows`` atomically, then reopen the file for appending."""
        if self._file is not None:
            self._file.close()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(
            self._file, self.columns, extrasaction="ignore", lineterminator="\n"
        )

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._file.close()
            with open(self.path, newline="", encoding="utf-8") as f:
                self._rewrite(list(csv.DictReader(f)))
        try:
            self._writer.writerow({k: "" if row.get(k) is None else row[k] for k in self.columns})
            self._file.flush()
        except OSError as error:  # a full disk: say which file
            raise _naming(error, self.path) from error
        if self._tensorboard is not None:
            for name, value in row.items():
                scalar = name in SCALARS or name.startswith(SCALAR_PREFIXES)
                if scalar and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(name, value, row["step"])
            self._tensorboard.flush()

    def close(self) -> None:
        try:
            self._file.close()  # flushes a row a full disk refused: that fails again
        except OSError as error:
            raise _naming(error, self.path) from error
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()


def _rows_up_to(path: Path, step: int) -> list[dict]:
    """The rows of an existing log with ``step <= step`` (none if there is no log).

    A torn row (a full disk stopped its write part-way) has fewer fields than the
    header: it is dropped too.
    """
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                torn = None in row or None in row.values()  # extra or missing fields
                if not torn and _int(row.get("step")) <= step:
                    rows.append(row)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(
            f"{path} is not a readable metrics log ({error}); move it away to resume"
        ) from None
    return rows


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file (a failed flush names none)."""
    if error.errno is None or error.filename is not None:
        return error
    return OSError(error.errno, error.strerror, str(path))


def _int(text) -> float:
    try:
        return int(text)
    except (TypeError, ValueError):
        return math.inf  # an unreadable row is dropped


def _summary_writer(log_dir: Path, purge_step: int | None):
    """A TensorBoard writer, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)
