"""Influence Approximation Unlearning: the science, free of orchestration (torch, numpy, pandas, sklearn).

Importing it changes nothing in the process's environment: each entry point sets what it needs
(iau_core.runtime.prepare_process, before torch runs; flows/__init__.py, before Prefect reads its settings).
"""
