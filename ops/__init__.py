"""The operations' use cases as plain functions over an explicit `Project` (ops/project.py): no Prefect, no Typer.

cli/ and flows/ are adapters over them: `iau nightly` runs ops.batch in-process with its plain steps, the
deployment's flow (flows/nightly.py) runs the same state machine with Prefect tasks as its steps.
"""
