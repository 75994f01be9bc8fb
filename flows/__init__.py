"""Prefect flows: composition only; they read like the recipe."""

# Importing iau_core sets the offline settings (iau_core/runtime.py) before any flow module imports prefect, which
# reads its settings once, at import: `python -m flows.unlearn` outside the Makefile gets them too.
import iau_core  # noqa: F401
