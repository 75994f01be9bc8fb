"""Prefect tasks only: thin adapters that load inputs, call iau_core, record through stores/ and return plain values."""
