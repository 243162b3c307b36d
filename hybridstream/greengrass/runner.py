"""The recipe runner: deploys components into a throwaway Greengrass root and runs their lifecycles
on this machine, the way a nucleus would (see :mod:`hybridstream.greengrass.recipe` for the rules).

    core = LocalCore(tmp / "gg", thing_name="pi-1")
    core.deploy(recipe, artifacts={"s3://bucket/<hash>.zip": Path("<hash>.zip")}, merge={...})
    core.install("hybridstream.EdgeApp")                 # Bootstrap (if any) + Install
    core.install("hybridstream.EdgeApp", network=False)  # again, in a network namespace with only loopback
    core.start("hybridstream.EdgeApp")                   # Run, in the background (its own session)
    core.stop("hybridstream.EdgeApp")                    # Shutdown script, then SIGTERM / SIGKILL

Layout (as the nucleus's): ``<root>/packages/artifacts/<name>/<version>/<file>``, zip artifacts
unpacked to ``<root>/packages/artifacts-unarchived/<name>/<version>/<zip stem>/``, work folders
``<root>/work/<name>/`` (the scripts' working directory), logs ``<root>/logs/<name>.log``. Each
process gets ``SVCUID`` + ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` for the IPC
server (:mod:`hybridstream.greengrass.ipc`), ``AWS_IOT_THING_NAME``, ``AWS_REGION``, and the
lifecycle's ``Setenv``. Public components (``aws.greengrass.*``) are taken as present.

What it does not do: download from S3 (artifacts are given as local files), run steps as
``ggc_user`` or as root for ``RequiresPrivilege`` (everything runs as the caller), restart
failed components, or emulate the token exchange service.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hybridstream.greengrass.ipc import CloudStub, IpcServer
from hybridstream.greengrass.recipe import (
    ComponentContext,
    Interpolator,
    resolve_configuration,
    select_manifest,
    this_platform,
)

DEFAULT_INSTALL_TIMEOUT = 120  # seconds (Lifecycle.DEFAULT_INSTALL_STAGE_TIMEOUT_SEC in the nucleus)
DEFAULT_BOOTSTRAP_TIMEOUT = 120  # GenericExternalService.DEFAULT_BOOTSTRAP_TIMEOUT_SEC
DEFAULT_SHUTDOWN_TIMEOUT = 15


class LifecycleError(RuntimeError):
    """A lifecycle step failed (exit code, timeout): the nucleus would mark the component ERRORED."""


@dataclass
class StepResult:
    step: str
    returncode: int
    seconds: float
    skipped: bool = False


@dataclass
class Component:
    recipe: dict[str, Any]
    manifest: dict[str, Any]
    context: ComponentContext
    lifecycle: dict[str, Any]
    state: str = "NEW"
    process: subprocess.Popen | None = None
    token: str = ""
    results: list[StepResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.context.name


def _step(lifecycle: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = lifecycle.get(key)
    if value is None:
        return None
    return {"Script": value} if isinstance(value, str) else dict(value)


class LocalCore:
    """A Greengrass root with its IPC server; ``interpolate_component_configuration`` mirrors the
    nucleus option of that name (default false, as on a freshly installed core)."""

    def __init__(
        self,
        root: Path,
        thing_name: str,
        *,
        platform: Mapping[str, str] | None = None,
        interpolate_component_configuration: bool = False,
        cloud: CloudStub | None = None,
        env: Mapping[str, str] | None = None,
        region: str = "eu-west-1",
    ) -> None:
        self.root = Path(root).resolve()
        self.thing_name = thing_name
        self.platform = dict(platform or this_platform())
        self.interpolate_configuration = interpolate_component_configuration
        self.region = region
        self.env = dict(env or {})
        for sub in ("packages/artifacts", "packages/artifacts-unarchived", "work", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.interpolator = Interpolator(thing_name=thing_name, root_path=str(self.root))
        self.components: dict[str, Component] = {}
        self.ipc = IpcServer(self.root / "ipc.socket", cloud).start()

    @property
    def cloud(self) -> CloudStub:
        return self.ipc.cloud

    # -- deployment -------------------------------------------------------------------------
    def deploy(
        self,
        recipe: Mapping[str, Any],
        artifacts: Mapping[str, Path] | None = None,
        merge: Mapping[str, Any] | None = None,
    ) -> Component:
        """Select the manifest, place (and unzip) its artifacts, resolve the configuration and
        register the component's IPC authorization policies. ``artifacts`` maps an artifact URI
        (or its file name) to a local file."""
        recipe = dict(recipe)
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        manifest = select_manifest(recipe, self.platform)
        art_dir = self.root / "packages" / "artifacts" / name / version
        unz_dir = self.root / "packages" / "artifacts-unarchived" / name / version
        art_dir.mkdir(parents=True, exist_ok=True)
        unz_dir.mkdir(parents=True, exist_ok=True)
        given = dict(artifacts or {})
        for artifact in manifest.get("Artifacts", []):
            uri = artifact["Uri"]
            filename = PurePosixPath(uri).name
            source = given.get(uri) or given.get(filename)
            if source is None:
                raise FileNotFoundError(f"{name}: no local file for artifact {uri}")
            target = art_dir / filename
            shutil.copy2(source, target)
            if str(artifact.get("Unarchive", "NONE")).upper() == "ZIP":
                dest = unz_dir / PurePosixPath(filename).stem
                shutil.rmtree(dest, ignore_errors=True)
                with zipfile.ZipFile(target) as z:
                    z.extractall(dest)
        work = self.root / "work" / name
        work.mkdir(parents=True, exist_ok=True)
        deps = tuple((recipe.get("ComponentDependencies") or {}).keys())
        context = ComponentContext(
            name=name,
            version=version,
            configuration=resolve_configuration(recipe, merge),
            artifacts_path=str(art_dir),
            decompressed_path=str(unz_dir),
            work_path=str(work),
            dependencies=deps,
        )
        self.interpolator.components[name] = context
        if self.interpolate_configuration:  # system parameters only, as KernelConfigResolver does
            context.configuration = self.interpolator.value(context.configuration, context, with_configuration=False)
        component = Component(recipe=recipe, manifest=manifest, context=context, lifecycle={})
        component.token = self.ipc.register(name, context.configuration.get("accessControl"))
        self.components[name] = component
        return component

    def _lifecycle(self, component: Component) -> dict[str, Any]:
        """The selected manifest's lifecycle, interpolated now (every dependency is deployed)."""
        raw = component.manifest.get("Lifecycle") or {}
        component.lifecycle = self.interpolator.value(raw, component.context)
        return component.lifecycle

    def _env(self, component: Component, step: Mapping[str, Any], use_core_env: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if use_core_env:
            env.update(self.env)
        env.update(
            {
                "SVCUID": component.token,
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(self.ipc.path),
                "AWS_IOT_THING_NAME": self.thing_name,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "GG_ROOT_CA_PATH": str(self.root / "rootCA.pem"),
                "HOME": component.context.work_path,
            }
        )
        for scope in (component.lifecycle.get("Setenv") or {}, step.get("Setenv") or {}):
            env.update({k: str(v) for k, v in scope.items()})
        return env

    def _skip(self, step: Mapping[str, Any]) -> bool:
        rule = str(step.get("Skipif", "")).strip()
        if not rule:
            return False
        kind, _, arg = rule.partition(" ")
        if kind == "onpath":
            return shutil.which(arg.strip()) is not None
        if kind == "exists":
            return Path(arg.strip()).exists()
        raise LifecycleError(f"unknown Skipif {rule!r}")

    def _command(self, script: str, network: bool) -> tuple[list[str], str | None]:
        if network:
            return ["sh", "-c", script], None
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise LifecycleError("network=False needs root and iproute2 (ip netns)")
        ns = f"gg-offline-{os.getpid()}-{time.monotonic_ns() % 100000}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        return ["ip", "netns", "exec", ns, "sh", "-c", script], ns

    def _run_step(
        self, component: Component, key: str, default_timeout: int, network: bool = True, core_env: bool = True
    ) -> StepResult:
        step = _step(component.lifecycle, key)
        if step is None:
            return StepResult(key, 0, 0.0, skipped=True)
        if self._skip(step):
            result = StepResult(key, 0, 0.0, skipped=True)
            component.results.append(result)
            return result
        timeout = int(step.get("Timeout", default_timeout))
        cmd, ns = self._command(str(step.get("Script", "")), network)
        started = time.monotonic()
        log_path = self.log_path(component.name)
        try:
            with log_path.open("ab") as log:
                log.write(f"--- {key} ({'network' if network else 'offline'}) ---\n".encode())
                log.flush()
                try:
                    proc = subprocess.run(
                        cmd,
                        cwd=component.context.work_path,
                        env=self._env(component, step, core_env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,
                        start_new_session=True,
                    )
                except subprocess.TimeoutExpired as exc:
                    component.state = "ERRORED"
                    raise LifecycleError(f"{component.name} {key} timed out after {timeout}s (log {log_path})") from exc
        finally:
            if ns:
                subprocess.run(["ip", "netns", "delete", ns], check=False)
        result = StepResult(key, proc.returncode, time.monotonic() - started)
        component.results.append(result)
        if proc.returncode != 0:
            component.state = "ERRORED"
            tail = log_path.read_text(errors="replace")[-3000:]
            raise LifecycleError(f"{component.name} {key} exited {proc.returncode}; log tail:\n{tail}")
        return result

    # -- lifecycle ----------------------------------------------------------------------------
    def install(self, name: str, *, network: bool = True, bootstrap: bool = True) -> list[StepResult]:
        """Bootstrap (when asked and present) then Install; ``network=False`` runs them in a fresh
        network namespace that has only loopback (what a Pi that boots offline has), and without the
        core's extra ``env`` (e.g. a local wheelhouse for pip): only what the first install left."""
        component = self.components[name]
        self._lifecycle(component)
        results = []
        if bootstrap:
            results.append(self._run_step(component, "Bootstrap", DEFAULT_BOOTSTRAP_TIMEOUT, network, network))
        results.append(self._run_step(component, "Install", DEFAULT_INSTALL_TIMEOUT, network, network))
        component.state = "INSTALLED"
        return results

    def start(self, name: str) -> subprocess.Popen | None:
        """Startup (waited for) or Run (in the background, its own session). None when neither exists
        (the component is then FINISHED, as a data-only component is on a core)."""
        component = self.components[name]
        if not component.lifecycle:
            self._lifecycle(component)
        if _step(component.lifecycle, "Startup"):
            self._run_step(component, "Startup", DEFAULT_INSTALL_TIMEOUT)
            component.state = "RUNNING"
            return None
        step = _step(component.lifecycle, "Run")
        if step is None or self._skip(step):
            component.state = "FINISHED"
            return None
        log = self.log_path(name).open("ab")
        log.write(b"--- Run ---\n")
        log.flush()
        component.process = subprocess.Popen(
            ["sh", "-c", str(step.get("Script", ""))],
            cwd=component.context.work_path,
            env=self._env(component, step),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        component.state = "RUNNING"
        return component.process

    def running(self, name: str) -> bool:
        process = self.components[name].process
        return process is not None and process.poll() is None

    def stop(self, name: str, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> int | None:
        """Shutdown script (if any), then SIGTERM to the Run process group, SIGKILL after ``timeout``."""
        component = self.components[name]
        if _step(component.lifecycle, "Shutdown"):
            with contextlib.suppress(LifecycleError):
                self._run_step(component, "Shutdown", int(timeout))
        process = component.process
        code = None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait(10)
        elif process is not None:
            code = process.returncode
        component.state = "FINISHED"
        return code

    def close(self) -> None:
        """Stop every running component and the IPC server."""
        for name in list(self.components):
            if self.running(name):
                self.stop(name)
        self.ipc.stop()

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def __enter__(self) -> LocalCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m hybridstream.greengrass.runner --help``: what the runner is (the API is Python)."""
    parser = argparse.ArgumentParser(
        prog="python -m hybridstream.greengrass.runner",
        description="Offline stand-in for a Greengrass core: deploy recipes into a throwaway root and run "
        "their lifecycles (Python API: hybridstream.greengrass.runner.LocalCore; the local release of the "
        "project's components: hybridstream.greengrass.release). --platform prints what a nucleus would "
        "report on this machine.",
    )
    parser.add_argument("--platform", action="store_true", help="print the nucleus platform of this machine")
    args = parser.parse_args(argv)
    if args.platform:
        print(this_platform())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
