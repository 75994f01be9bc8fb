"""Measurement scripts behind the defaults in params.yaml and the numbers in docs/ (not run by CI)."""
