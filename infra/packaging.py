"""Stage source folders into one asset folder (no CDK imports): deterministic, offline.

CDK zips a directory's *contents*; to ship importable packages (``edge_app/``,
``model_contract/`` ...) side by side, we copy them into a fresh folder first. Caches, tests
and build output never ship.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

IGNORED = ("__pycache__", "*.pyc", "tests", ".pytest_cache", ".ruff_cache", "*.egg-info", ".venv", "bench-out")

_STAGE_ROOT: Path | None = None


def _stage_root() -> Path:
    global _STAGE_ROOT
    if _STAGE_ROOT is None:
        _STAGE_ROOT = Path(tempfile.mkdtemp(prefix="hybridstream-stage-"))
        atexit.register(shutil.rmtree, _STAGE_ROOT, True)
    return _STAGE_ROOT


def stage(name: str, sources: Mapping[str, Path], exclude: Iterable[str] = ()) -> Path:
    """Copy each source (file or folder) to ``<stage>/<dest>`` and return the stage folder.

    ``sources`` maps a destination relative path to a source path. Missing sources raise.
    ``exclude``: paths (relative to the stage folder, globs allowed) removed after copying,
    e.g. a development tool inside a shipped package. Every call gets a fresh folder (several
    apps may be built in one process, e.g. in tests); the asset hash depends on the content only.
    """
    target = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_stage_root()))
    for dest, src in sources.items():
        src = Path(src)
        out = target / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns(*IGNORED), dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, out)
        else:
            raise FileNotFoundError(f"cannot stage {src}: not found")
    for pattern in exclude:
        matched = list(target.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"cannot exclude {pattern} from {name}: not staged")
        for path in matched:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return target


def semver_from_hashes(*hashes: str, major: int = 1, minor: int = 0) -> str:
    """A component version from content hashes: a changed input always gives a new patch number.

    >>> semver_from_hashes("abc") == semver_from_hashes("abc")
    True
    >>> semver_from_hashes("abc") != semver_from_hashes("abd")
    True
    >>> semver_from_hashes("abc").startswith("1.0.")
    True
    """
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    # 7 hex digits (< 2**28): fits the numeric semver fields Greengrass accepts
    return f"{major}.{minor}.{int(digest[:7], 16)}"
