"""Scores for time-series predictions."""

from __future__ import annotations

import numpy as np
import torch


def _flat(value) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        return np.concatenate([_flat(v) for v in value]) if value else np.zeros(0)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64).reshape(-1)


def nrmse(y_true, y_pred) -> float:
    r"""Normalised root-mean-square error over all elements.

    .. math:: \mathrm{NRMSE} = \frac{\sqrt{\mathrm{mean}((y_{true} - y_{pred})^2)}}
              {\mathrm{std}(y_{true})}

    0 is perfect; 1 is no better than predicting the mean of ``y_true``. Arrays,
    tensors, or lists of them (concatenated), of the same shape.
    """
    true, pred = _flat(y_true), _flat(y_pred)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(
            f"y_true and y_pred must be non-empty and of one size, got {true.size} and {pred.size}"
        )
    scale = true.std()
    if scale == 0:
        raise ValueError("y_true is constant, so NRMSE (RMSE / std(y_true)) is undefined")
    return float(np.sqrt(np.mean((true - pred) ** 2)) / scale)
