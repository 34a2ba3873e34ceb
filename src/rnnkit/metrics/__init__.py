"""Scores of trained models: classification and forecasting metrics."""
