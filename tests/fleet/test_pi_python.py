"""The Python a Pi runs the project's code with: every supported Raspberry Pi OS's own ``python3``.

The EdgeApp component runs ``edge_app/`` and ``model_contract/`` (infra/greengrass.py), the ``edge``
mode Trainer ``infra/training.py``'s TRAINER_PACKAGES and TRAINER_FILES, each in a venv of the OS's
``python3`` (infra/recipes.py ``venv_install_script``). The oldest supported release, Raspberry Pi OS 12
(bookworm), ships Python 3.11 (tests/fleet/debian_releases.py), pyproject.toml's ``requires-python``.
No Python but the venv's runs here, so the code is checked statically with vermin
(https://github.com/netromdk/vermin: ``--target=3.11-`` fails on anything newer than 3.11;
``--eval-annotations``: edge_app/registry.py evaluates annotations with ``typing.get_type_hints``).

Why 32-bit and Raspberry Pi OS 11 are refused (``fleet enroll``, ``install.sh``): their edge runtime
would be Python 3.9 (tflite-runtime's only armv7l wheel is cp39). Measured 2026-12-07 with
``vermin --target=3.9- --violations edge_app model_contract``: 14 of the 55 files need 3.10 or 3.11
(datetime.UTC, tomllib, zip(strict=...), dataclass(slots=...)), five more test ``isinstance(x, A | B)``
at run time, and registry.py's get_type_hints fails on ``X | None`` annotations under 3.9.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from hybridstream.fleet import enroll
from infra.greengrass import EDGE_APP_PACKAGES
from infra.recipes import ARCHITECTURES, MIN_PYTHON
from infra.training import TRAINER_FILES, TRAINER_PACKAGES
from tests.fleet.debian_releases import RELEASES

ROOT = Path(__file__).resolve().parents[2]
VERMIN = str(Path(sys.executable).with_name("vermin"))  # requirements-dev.txt (no ``python -m vermin``)
INSTALL_SH = ROOT / "hybridstream" / "fleet" / "pi" / "install.sh"


def test_the_code_a_pi_runs_needs_no_newer_python_than_the_oldest_supported_release():
    oldest = min((RELEASES[r].python for r in enroll.SUPPORTED["aarch64"]), key=lambda v: tuple(map(int, v.split("."))))
    assert oldest == enroll.MIN_PYTHON
    paths = sorted({str(ROOT / p) for p in EDGE_APP_PACKAGES + TRAINER_PACKAGES + TRAINER_FILES})
    missing = [p for p in paths if not Path(p).exists()]
    assert not missing, f"vermin skips a path that does not exist (and still exits 0): {missing}"
    result = subprocess.run(
        [
            VERMIN,
            f"--target={oldest}-",
            "--violations",
            "--no-tips",
            "--eval-annotations",
            "--no-parse-comments",
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"needs a Python newer than {oldest} (bookworm's):\n{result.stdout}{result.stderr}"


def test_one_minimum_python_everywhere():
    """pyproject.toml, `fleet enroll`, install.sh and the components' Install agree on the minimum, and on
    each release's python3; no component has a 32-bit manifest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">={enroll.MIN_PYTHON}"
    assert re.search(r'^MIN_PYTHON="([0-9.]+)"', INSTALL_SH.read_text(), re.M).group(1) == enroll.MIN_PYTHON
    assert {name: release.python for name, release in RELEASES.items()} == enroll.OS_PYTHON
    assert ".".join(map(str, MIN_PYTHON)) == enroll.MIN_PYTHON
    assert "arm" not in enroll.SUPPORTED and "arm" not in ARCHITECTURES
