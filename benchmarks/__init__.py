"""make bench: speed figures as measured ratios (python -m benchmarks)."""

# A study or the bench is an entry point: the offline settings and the OpenMP wait policy go into the environment
# here, before any of its modules imports torch (iau_core/runtime.py says why).
from iau_core.runtime import quiet_offline_env  # noqa: E402

quiet_offline_env()

from stores.project import project_root  # noqa: E402

# The project a study or the bench works on: IAU_PROJECT_DIR, or the one found from the current directory (they run
# from a clone's root: `.venv/bin/python -m studies.<name>`, `make bench`).
PROJECT_ROOT = project_root()
