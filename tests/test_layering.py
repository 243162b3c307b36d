"""Dependencies point one way (docs/architecture.md): the wire and model contract at the bottom,
the shipped parts (edge app, trainer, Lambdas) and the CDK app on it, the tooling on top.

Every import in each package's files, including imports inside functions, is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("model_contract", "edge_app", "training_job", "lambdas", "infra", "hybridstream")
ALLOWED = {
    "model_contract": set(),  # stdlib + numpy only
    "edge_app": {"model_contract"},
    "training_job": {"model_contract"},
    "lambdas": {"model_contract"},
    "infra": {"model_contract"},
    "hybridstream": set(PROJECT),  # the CLI, local stack, demo, chaos, fleet tooling: never shipped to a device
}
# inside the tooling: hybridstream.<subpackage> -> the hybridstream subpackages it may import. The local
# servers are what the demo, chaos, the benchmarks and the tests start servers through: nothing above them
TOOLING_ALLOWED = {
    "servers": {"servers"},
}
SHIPPED = ("model_contract", "edge_app", "training_job", "infra", "lambdas")  # what leaves the repository
WIRE = (
    "model_contract/topics.py",
    "model_contract/layout.py",
    "model_contract/messages.py",
    "model_contract/forecasts.py",
)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", PROJECT)
def test_a_package_imports_only_what_is_below_it(package):
    wrong = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for module in _imports(path):
            top = module.split(".")[0]
            if top in PROJECT and top != package and top not in ALLOWED[package]:
                wrong.append(f"{rel}: import {module}")
    assert wrong == [], f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of the project'}"


def test_no_shipped_package_imports_the_tooling():
    """Devices, the trainer, the Lambdas and the CDK app never import ``hybridstream`` (a dev tool that
    needs it lives in ``hybridstream/devtools/``, e.g. ``make bench-train``'s train_bench.py)."""
    wrong = [
        f"{path.relative_to(REPO).as_posix()}: import {module}"
        for package in SHIPPED
        for path in sorted((REPO / package).rglob("*.py"))
        for module in _imports(path)
        if module.split(".")[0] == "hybridstream"
    ]
    assert wrong == []


def test_the_wire_contract_is_standard_library_only():
    import sys

    stdlib = set(sys.stdlib_module_names) | {"model_contract"}
    for rel in WIRE:
        outside = {m for m in _imports(REPO / rel) if m.split(".")[0] not in stdlib}
        assert outside == set(), rel


def _tooling_subpackages() -> set[str]:
    root = REPO / "hybridstream"
    return {p.stem for p in root.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}


@pytest.mark.parametrize("sub", TOOLING_ALLOWED)
def test_a_tooling_subpackage_imports_only_what_is_below_it(sub):
    subpackages = _tooling_subpackages()
    wrong = []
    for path in sorted((REPO / "hybridstream" / sub).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                below = len(parts) < 2 or parts[1] not in subpackages or parts[1] in TOOLING_ALLOWED[sub]
                if parts[0] == "hybridstream" and not below:
                    wrong.append(f"{path.relative_to(REPO).as_posix()}: import {name}")
    assert wrong == [], f"hybridstream/{sub} may import only hybridstream.{sorted(TOOLING_ALLOWED[sub])}"
