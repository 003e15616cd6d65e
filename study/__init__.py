"""Optuna studies over the trainers, tracked in MLflow."""
