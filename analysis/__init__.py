"""Reads studies back from MLflow and exports plots and tables."""
