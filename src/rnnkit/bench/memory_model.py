"""The network ``rnnkit bench memory`` trains: one recurrent layer and a linear read-out."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from rnnkit.cells.base import check_positive
from rnnkit.models.builder import build_stack, check_stack_settings
from rnnkit.settings import JSONSettings


@dataclass
class MemoryNetConfig(JSONSettings):
    """``cell`` layer of ``hidden_size`` units read out by ``Linear(hidden_size, output_size)``
    at every step (``per_step``) or at the last step only."""

    settings_kind = "memory model"

    cell: str = "lstm"
    input_size: int = 2
    hidden_size: int = 64
    output_size: int = 1
    per_step: bool = False

    def __post_init__(self) -> None:
        check_stack_settings(
            kind=self.cell,
            hidden_size=self.hidden_size,
            num_layers=1,
            dropout=0.0,
            state_dropout=0.0,
            layer_norm=False,
            engine="auto",
        )
        check_positive("input_size", self.input_size)
        check_positive("output_size", self.output_size)


class MemoryNet(nn.Module):
    """``y = W_out · h_t + b_out`` on the recurrent layer's outputs ``h_t``."""

    def __init__(self, config: MemoryNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stack = build_stack(config.cell, config.input_size, config.hidden_size, 1)
        self.head = nn.Linear(self.stack.output_size, config.output_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x (T, B, I)`` -> ``(T, B, O)`` when ``per_step``, else ``(B, O)``."""
        h, _ = self.stack.run(x, None, None)  # (T, B, H)
        return self.head(h if self.config.per_step else h[-1])
