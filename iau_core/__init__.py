"""Influence Approximation Unlearning: the science, free of orchestration (torch, numpy, pandas, sklearn)."""
