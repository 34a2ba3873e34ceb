"""Scores of trained models: classification and forecasting metrics."""

from rnnkit.metrics.classification import (
    accuracy,
    confusion_matrix,
    f1_per_class,
    format_confusion,
    macro_f1,
    plot_confusion,
)
from rnnkit.metrics.forecast import (
    METRICS,
    Backtest,
    backtest,
    format_table,
    mae,
    mase,
    naive_forecast,
    rmse,
    seasonal_naive_forecast,
    seasonal_scale,
    smape,
)

__all__ = [
    "METRICS",
    "Backtest",
    "accuracy",
    "backtest",
    "confusion_matrix",
    "f1_per_class",
    "format_confusion",
    "format_table",
    "macro_f1",
    "mae",
    "mase",
    "naive_forecast",
    "plot_confusion",
    "rmse",
    "seasonal_naive_forecast",
    "seasonal_scale",
    "smape",
]
