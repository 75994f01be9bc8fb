"""The crash tests' hook (not a test module): run one nightly batch in-process, as `iau nightly` does, and SIGKILL
this process right after the step named on the command line, so a test can check that a rerun finishes the batch
exactly once. The kill lives here, in the steps a test hands the batch, not in production code.

    IAU_PROJECT_DIR=... python tests/nightly_kill.py <step> [KEY=VALUE ...]
"""

from __future__ import annotations

import os
import signal
import sys

from iau_core.config import parse_overrides
from iau_core.runtime import prepare_process
from ledger import ledger_url
from ops.batch import process_pending
from ops.batch_steps import PlainSteps
from ops.project import open_project
from stores.project import project_root


class KillAfter(PlainSteps):
    """The plain steps, with the process killed (no cleanup, no finally) once `step` has been recorded."""

    def __init__(self, step: str) -> None:
        super().__init__(started_by=f"tests/nightly_kill.py {step} (pid {os.getpid()})")
        self.step = step

    def after_step(self, name: str) -> None:
        if name == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    step, overrides = sys.argv[1], parse_overrides(sys.argv[2:])
    root = project_root()
    project = open_project(root, overrides, ledger_url(root))
    prepare_process(project.params.threads)
    steps = KillAfter(step)
    with project.ledger.nightly_lock(owner=steps.started_by):
        outcome = process_pending(project, steps)
    raise SystemExit(f"the batch ended without reaching step {step!r}: {outcome.status}")


if __name__ == "__main__":
    main()
