"""Every artifact the CDK app ships holds only what runs there, and all of it can be imported.

The app is synthesized (``tests/infra/conftest.py``: every mode, offline) and each directory
asset it staged into the cloud assembly is inspected exactly as it would be uploaded: the
edge component (``edge_app/`` + ``model_contract/``), the trainer (``pip install`` source;
also the Greengrass ``Trainer`` artifact in ``edge`` mode) and every Lambda package. For each
shipped ``.py`` file every import (parsed with :mod:`ast`) must resolve within the artifact,
the standard library, or what its requirements file installs. Imports guarded by
``try: ... except ImportError`` (optional back-ends) and ``if TYPE_CHECKING:`` blocks are
not required.

The Lambda Python runtimes include the AWS SDK for Python (boto3 / botocore):
https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html ("The Python runtimes include
the AWS SDK for Python (Boto3)"), so a Lambda may import those without listing them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# requirement (distribution) name -> the top-level modules it installs, where they differ
REQUIREMENT_IMPORTS: dict[str, tuple[str, ...]] = {
    "confluent-kafka": ("confluent_kafka",),
    "awsiotsdk": ("awsiot", "awscrt"),
    "ai-edge-litert": ("ai_edge_litert",),
    "tflite-runtime": ("tflite_runtime",),
    "pyyaml": ("yaml",),
    "boto3": ("boto3", "botocore"),
    "tensorflow": ("tensorflow", "keras"),  # TensorFlow 2.16+ installs Keras 3 as its dependency
    "tensorflow-cpu": ("tensorflow", "keras"),
}
LAMBDA_RUNTIME = frozenset({"boto3", "botocore"})
# development code that must never ship in a deployed artifact
DEV_ONLY = ("hybridstream/devtools", "hybridstream/servers", "hybridstream/evaluation", "infra", "tests")


def requirement_modules(path: Path) -> set[str]:
    """The top-level modules a requirements file installs (every platform marker counted).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.txt"
    >>> _ = p.write_text("# c\\nconfluent-kafka>=2.6\\nnumpy<2; platform_machine == 'armv7l'\\n-r other.txt\\n")
    >>> sorted(requirement_modules(p))
    ['confluent_kafka', 'numpy']
    """
    out: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0).lower().replace("_", "-")
        out.update(REQUIREMENT_IMPORTS.get(name, (name.replace("-", "_").replace(".", "_"),)))
    return out


@dataclass(frozen=True)
class Import:
    file: str  # relative to the artifact root
    line: int
    module: str  # absolute dotted name


@dataclass
class Artifact:
    kind: str  # edge component | trainer | lambda
    root: Path
    provided: set[str] = field(default_factory=set)  # top-level modules installed beside it

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


class _Imports(ast.NodeVisitor):
    """Required imports of one module: skips ``try/except ImportError`` bodies and ``if TYPE_CHECKING``."""

    def __init__(self, package: str) -> None:
        self.package = package  # the importing module's package (for relative imports)
        self.found: list[tuple[int, str]] = []
        self._optional = 0

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h.type) for h in node.handlers)
        self._optional += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._optional -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def visit_If(self, node: ast.If) -> None:
        type_checking = isinstance(node.test, ast.Name | ast.Attribute) and ast.unparse(node.test).endswith(
            "TYPE_CHECKING"
        )
        self._optional += type_checking
        for stmt in node.body:
            self.visit(stmt)
        self._optional -= type_checking
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        if not self._optional:
            self.found += [(node.lineno, alias.name) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self._optional or node.module == "__future__":
            return
        if node.level:
            base = self.package.split(".") if self.package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            module = ".".join([*base, *([node.module] if node.module else [])])
            if not node.module:  # from . import x: x is a module of the package
                self.found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                return
            self.found.append((node.lineno, module))
        else:
            self.found.append((node.lineno, node.module))


def _catches_import_error(exc: ast.expr | None) -> bool:
    if exc is None:
        return True
    names = [ast.unparse(e) for e in (exc.elts if isinstance(exc, ast.Tuple) else [exc])]
    return any(n in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException") for n in names)


def imports_of(root: Path) -> list[Import]:
    """Every required import of every ``.py`` file under ``root``, as absolute module names."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        package = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
        visitor = _Imports(package)
        visitor.visit(ast.parse(path.read_text(), filename=str(rel)))
        out += [Import(str(rel), line, module) for line, module in visitor.found]
    return out


def _module_in(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def unresolved(artifact: Artifact) -> list[str]:
    """``file:line: module`` for each import the artifact cannot satisfy."""
    bad = []
    for imp in imports_of(artifact.root):
        top = imp.module.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        if _module_in(artifact.root, top):  # shipped: the module itself must be there too
            if not _module_in(artifact.root, imp.module):
                bad.append(f"{imp.file}:{imp.line}: {imp.module} (not in the artifact)")
            continue
        if top not in artifact.provided:
            bad.append(f"{imp.file}:{imp.line}: {imp.module} (neither shipped nor in its requirements)")
    return bad


def artifacts_of(outdir: Path) -> list[Artifact]:
    """Every directory asset with Python code in a synthesized cloud assembly, classified."""
    out = []
    for root in sorted(outdir.glob("asset.*")):
        if not root.is_dir() or not any(root.rglob("*.py")):
            continue
        if (root / "training_job").is_dir():  # first: today's trainer source also holds edge_app/
            out.append(Artifact("trainer", root, requirement_modules(root / "training_job" / "requirements.txt")))
        elif (root / "edge_app").is_dir():
            reqs = sorted((root / "edge_app").glob("requirements*.txt"))
            out.append(Artifact("edge component", root, set().union(*map(requirement_modules, reqs))))
        elif (root / "handler.py").is_file():
            provided = (
                requirement_modules(root / "requirements.txt") if (root / "requirements.txt").is_file() else set()
            )
            out.append(Artifact("lambda", root, provided | LAMBDA_RUNTIME))
        else:
            out.append(Artifact("unknown", root))
    return out


@pytest.fixture(scope="module")
def shipped(built) -> dict[str, list[Artifact]]:
    return {mode: artifacts_of(b.outdir) for mode, b in built.items()}


def test_every_mode_ships_the_expected_artifacts(shipped):
    for mode, arts in shipped.items():
        kinds = [a.kind for a in arts]
        # the edge component, the EC2 trainer (in edge mode also the Pi's Trainer: the same asset)
        assert kinds.count("edge component") == 1 and kinds.count("trainer") == 1, (mode, kinds)
        assert kinds.count("lambda") >= 4 and "unknown" not in kinds, (mode, kinds)


def _problems(shipped, kinds: tuple[str, ...]) -> dict[str, list[str]]:
    found = {
        f"{mode} {a.kind} ({a.root.name[:18]})": unresolved(a)
        for mode, arts in shipped.items()
        for a in arts
        if a.kind in kinds
    }
    return {k: v for k, v in found.items() if v}


def test_every_import_in_the_edge_component_and_the_trainer_resolves(shipped):
    assert _problems(shipped, ("edge component", "trainer", "unknown")) == {}


def test_every_import_in_every_lambda_package_resolves(shipped):
    assert _problems(shipped, ("lambda",)) == {}


def test_the_device_artifact_holds_only_what_runs_on_the_device(shipped):
    for arts in shipped.values():
        (edge,) = {a.root: a for a in arts if a.kind == "edge component"}.values()
        files = edge.files()
        tops = {f.split("/")[0] for f in files}
        assert tops == {"edge_app", "model_contract"}, tops
        for dev in ("edge_app/bench.py", "edge_app/devtools.py", "edge_app/replay.py"):
            assert dev not in files
        assert "edge_app/requirements.txt" in files and "edge_app/cli.py" in files
        assert "model_contract/online_linear_kernel.c" in files  # the Pi builds it on the first start
        assert not [f for f in files if "__pycache__" in f or f.startswith("tests/")]


def test_the_trainer_ships_neither_infra_nor_the_dev_side(shipped):
    for arts in shipped.values():
        (trainer,) = [a for a in arts if a.kind == "trainer"]
        files = trainer.files()
        assert "pyproject.toml" in files and "training_job/requirements.txt" in files
        for dev in DEV_ONLY:
            assert not [f for f in files if f.startswith(dev + "/")], dev
        assert not [f for f in files if f.startswith("edge_app/")], "the trainer does not run the edge app"
        assert "training_job/bench.py" not in files  # make bench-train: a dev tool
        # `hybridstream train worker` (the recipe and the EC2 unit): the CLI dispatcher only
        assert sorted(f for f in files if f.startswith("hybridstream/")) == [
            "hybridstream/__init__.py",
            "hybridstream/__main__.py",
            "hybridstream/cli.py",
        ]


def test_the_trainers_cli_lists_only_the_train_group(shipped):
    """In the trainer's artifact, ``hybridstream --help`` shows ``train`` and nothing that is not there
    (run on the artifact alone: the venv's packages without the repository's editable install)."""
    (trainer,) = [a for a in shipped["edge"] if a.kind == "trainer"]
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.path += sys.argv[2:]\n"
        "from hybridstream.cli import main\n"
        "main(['--help'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(trainer.root), *site],
        capture_output=True, text=True, timeout=120, cwd=trainer.root,
    )  # fmt: skip
    groups = re.findall(r"^    (\w+) ", out.stdout, re.M)
    assert groups == ["train"], out.stdout + out.stderr
    train_help = subprocess.run(
        [sys.executable, "-S", "-c", code.replace("['--help']", "['train', 'worker', '--help']"), str(trainer.root),
         *site], capture_output=True, text=True, timeout=120, cwd=trainer.root,
    )  # fmt: skip
    assert "--queue" in train_help.stdout, train_help.stdout + train_help.stderr


def test_the_import_check_catches_a_dev_import(tmp_path):
    """The check itself: a shipped module importing a dev tool or an unlisted package fails."""
    (tmp_path / "edge_app").mkdir()
    (tmp_path / "edge_app" / "__init__.py").write_text("")
    (tmp_path / "edge_app" / "x.py").write_text(
        "import json\nfrom . import y\nfrom hybridstream.devtools import edge\nimport requests\n"
        "try:\n    import tflite_runtime\nexcept ImportError:\n    pass\n"
    )
    (tmp_path / "edge_app" / "y.py").write_text("import confluent_kafka\nfrom edge_app import z\n")
    bad = unresolved(Artifact("edge component", tmp_path, {"confluent_kafka"}))
    assert bad == [
        "edge_app/x.py:3: hybridstream.devtools (neither shipped nor in its requirements)",
        "edge_app/x.py:4: requests (neither shipped nor in its requirements)",
    ]
    bad = unresolved(Artifact("edge component", tmp_path, {"confluent_kafka", "hybridstream", "requests"}))
    assert bad == []  # `from edge_app import z`: z may be an attribute; only modules are checked
