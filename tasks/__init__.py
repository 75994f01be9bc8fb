"""Prefect tasks: thin adapters that load inputs, call iau_core, record to MLflow and return plain values."""
