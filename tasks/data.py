"""The flow's first task: data/ is exactly the version data.dvc names (stores/data.py does the DVC work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from stores.data import ensure_data


@task(name="ensure-data", cache_policy=NO_CACHE)
def ensure_data_task(repo_root: str) -> str:
    """Check (pull, or rebuild) data/ against data.dvc; return the md5 recorded as `data_version`."""
    return ensure_data(repo_root)
