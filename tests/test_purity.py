"""iau_core must run on a box with only torch: it never imports the orchestration layer."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_iau_core_imports_no_orchestration():
    code = (
        "import sys, pkgutil, importlib, iau_core\n"
        "for m in pkgutil.walk_packages(iau_core.__path__, 'iau_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('prefect', 'mlflow', 'dvc') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
