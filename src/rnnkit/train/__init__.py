"""Training: truncated BPTT over token streams, minibatches of examples, checkpoints, metrics."""

from rnnkit.atomic import atomic_write_bytes, atomic_write_text
from rnnkit.train.batches import Batches
from rnnkit.train.checkpoint import Checkpoint, check_compatible, load_checkpoint, save_checkpoint
from rnnkit.train.config import FitConfig, TrainConfig
from rnnkit.train.evaluate import evaluate_stream
from rnnkit.train.fit import FitResult, FitTrainer
from rnnkit.train.trainer import Trainer, TrainResult

__all__ = [
    "Batches",
    "Checkpoint",
    "FitConfig",
    "FitResult",
    "FitTrainer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_compatible",
    "evaluate_stream",
    "load_checkpoint",
    "save_checkpoint",
]
