"""Code-quality checks run as tests (asyncpg's habit): ruff over the whole tree."""

import shutil
import subprocess
import sys

import pytest
from common import ROOT


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    out = subprocess.run([ruff, "check", "core", "server", "tests", "bench"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_float_on_money_paths():
    """Money, points and rates are integers: no float or double in the engine's code."""
    offenders = []
    for path in [ROOT / "core" / "_fastpath.pyx", ROOT / "core" / "_fastpath.pxd",
                 ROOT / "core" / "rules.py", ROOT / "core" / "domain" / "points.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if "float" in code or "double" in code:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_python_version_supported():
    assert sys.version_info >= (3, 10)
