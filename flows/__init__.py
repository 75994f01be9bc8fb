"""Prefect flows: composition only; they read like the recipe."""

# A flow module is an entry point (`python -m flows.unlearn`, a Prefect worker's flow run): the offline settings
# (iau_core/runtime.py) go into the environment here, before any flow module imports prefect, which reads its
# settings once, at import.
from iau_core.runtime import quiet_offline_env

quiet_offline_env()
