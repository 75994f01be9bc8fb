"""What a reader meets: figures and text tables built from results. Pure: no Prefect, no MLflow, no DVC; the
callers log or publish what these return (tests/test_layers.py)."""
