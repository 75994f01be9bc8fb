"""Throwaway stand-ins for a team's infrastructure, for the tests and the benchmark: real Prefect, MLflow and
PostgreSQL servers on loopback in temporary folders (always stopped), and project folders of their own (params,
data under DVC). Nothing in the pipeline imports this package."""
