"""Scores of trained models: classification, forecasting and sequence-to-sequence metrics."""

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
from rnnkit.metrics.seq2seq import bleu, char_error_rate, edit_distance, exact_match, token_accuracy

__all__ = [
    "METRICS",
    "Backtest",
    "accuracy",
    "backtest",
    "bleu",
    "char_error_rate",
    "confusion_matrix",
    "edit_distance",
    "exact_match",
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
    "token_accuracy",
]
