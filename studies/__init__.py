"""Measurement scripts behind the defaults in params.yaml and the numbers in the README (not run by CI)."""
