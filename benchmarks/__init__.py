"""make bench: speed figures as measured ratios (python -m benchmarks)."""

# A study or the bench is an entry point: the offline settings and the OpenMP wait policy go into the environment
# here, before any of its modules imports torch (iau_core/runtime.py says why).
from iau_core.runtime import quiet_offline_env  # noqa: E402

quiet_offline_env()
