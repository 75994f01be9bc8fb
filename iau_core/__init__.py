"""Influence Approximation Unlearning: the science, free of orchestration (torch, numpy, pandas, sklearn)."""

# Every entry point imports this package before torch: the offline settings and OpenMP's sleep-while-waiting
# policy must be in the environment before torch's OpenMP runtime reads it (iau_core/runtime.py).
from iau_core.runtime import quiet_offline_env as _quiet_offline_env

_quiet_offline_env()
