"""Side effects on the stores: MLflow runs and the model registry, DVC data and its purge, artifacts loaded once
per process. Importable by tasks, flows and the CLI alike; never imports prefect (tests/test_layers.py)."""
