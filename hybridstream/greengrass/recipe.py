"""How a Greengrass nucleus reads a recipe: platform, manifest, configuration, interpolation.

Rules, from the nucleus's public source (aws-greengrass/aws-greengrass-nucleus):

- ``config/PlatformResolver.java``: ``os`` is ``linux`` (``/proc`` exists); ``architecture`` comes
  from the JVM's ``os.arch``: ``amd64`` (x86_64/amd64), ``x86`` (i386/x86), ``arm`` (anything
  containing "arm": a 32-bit JVM, also on a 64-bit kernel), ``aarch64``; ``architecture.detail``
  is ``uname -m`` when it is one of armv6l/armv7l/armv8l/... . A recipe whose manifests match
  none of these fails the deployment.
- ``componentmanager/KernelConfigResolver.java``: lifecycle strings are interpolated with the
  system parameters (``{artifacts:path}``, ``{artifacts:decompressedPath}``, ``{work:path}``,
  ``{kernel:rootPath}``, ``{iot:thingName}``), the component's ``{configuration:/json/pointer}``
  and, for direct dependencies only, ``{<component>:artifacts:...}`` / ``{<component>:configuration:...}``.
  Replacements are not interpolated again. The component *configuration* (including its
  ``accessControl``) is interpolated with system parameters only, and only when the nucleus has
  ``interpolateComponentConfiguration`` true (default false).
- Configuration: the recipe's ``DefaultConfiguration``, then the deployment's ``merge``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SAME = re.compile(r"\{([.\w-]+):([^:}]*)\}")
CROSS = re.compile(r"\{([.\w-]+):([.\w-]+):([^:}]*)\}")
ARCHITECTURES = ("amd64", "x86", "arm", "aarch64")  # every value PlatformResolver can report
ARM_DETAILS = ("armv6l", "armv7l", "armv8l", "armv6b", "armv7b", "armv8b")


def nucleus_architecture(jvm_os_arch: str) -> str:
    """``architecture`` as PlatformResolver.getArchInfo() derives it from the JVM's ``os.arch``.

    >>> [nucleus_architecture(a) for a in ("amd64", "x86_64", "i386", "arm", "aarch64", "riscv64")]
    ['amd64', 'amd64', 'x86', 'arm', 'aarch64', 'unknown']
    """
    arch = jvm_os_arch.lower()
    if arch in ("x86_64", "amd64"):
        return "amd64"
    if arch in ("i386", "x86"):
        return "x86"
    if "arm" in arch:
        return "arm"
    if arch == "aarch64":
        return "aarch64"
    return "unknown"


def this_platform() -> dict[str, str]:
    """The platform a nucleus would report on this machine (64-bit JVM assumed)."""
    import platform  # noqa: PLC0415

    machine = platform.machine()
    jvm = {"x86_64": "amd64", "aarch64": "aarch64", "i686": "x86"}.get(machine, machine)
    out = {"os": "linux", "architecture": nucleus_architecture(jvm)}
    if machine.lower() in ARM_DETAILS:
        out["architecture.detail"] = machine.lower()
    return out


def _value_matches(wanted: str, actual: str | None) -> bool:
    if wanted in ("*", "all"):
        return True
    if actual is None:
        return False
    if len(wanted) > 1 and wanted.startswith("/") and wanted.endswith("/"):
        return re.fullmatch(wanted[1:-1], actual) is not None
    return wanted == actual


def select_manifest(recipe: Mapping[str, Any], platform: Mapping[str, str]) -> dict[str, Any]:
    """The first manifest whose every platform key matches (PlatformHelper.findBestMatch); a
    recipe with no match fails the deployment: :class:`NoMatchingManifest`."""
    for manifest in recipe.get("Manifests", []):
        wanted = manifest.get("Platform") or {}
        if all(_value_matches(str(v), platform.get(k)) for k, v in wanted.items()):
            return manifest
    raise NoMatchingManifest(
        f"{recipe.get('ComponentName')}: no manifest matches platform {dict(platform)} "
        f"(manifests: {[m.get('Platform') for m in recipe.get('Manifests', [])]})"
    )


class NoMatchingManifest(LookupError):
    """The nucleus fails the deployment when a recipe has no manifest for the device."""


def merge(base: Any, update: Any) -> Any:
    """A deployment's ``merge`` over the configuration (maps merge, everything else replaces)."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for key, value in update.items():
            out[key] = merge(base.get(key), value)
        return out
    return copy.deepcopy(update)


def pointer(doc: Any, path: str) -> Any:
    """RFC 6901 JSON pointer look-up (``""`` is the whole document); KeyError when missing."""
    if path == "":
        return doc
    if not path.startswith("/"):
        raise KeyError(path)
    node = doc
    for raw in path[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            raise KeyError(path)
    return node


def _text(value: Any) -> str:
    """A configuration value as the nucleus inserts it: scalars as text, containers as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass
class ComponentContext:
    """What interpolation needs to know about one component on the device."""

    name: str
    version: str
    configuration: dict[str, Any]
    artifacts_path: str
    decompressed_path: str
    work_path: str
    dependencies: tuple[str, ...] = ()


@dataclass
class Interpolator:
    """Recipe-variable interpolation over a set of components (the nucleus's resolved services)."""

    thing_name: str
    root_path: str
    components: dict[str, ComponentContext] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)  # placeholders the nucleus would log and leave

    def _system(self, component: ComponentContext, namespace: str, key: str) -> str | None:
        table: dict[str, dict[str, Callable[[], str]]] = {
            "artifacts": {
                "path": lambda: component.artifacts_path,
                "decompressedPath": lambda: component.decompressed_path,
            },
            "work": {"path": lambda: component.work_path},
            "kernel": {"rootPath": lambda: self.root_path},
            "iot": {"thingName": lambda: self.thing_name},
        }
        getter = table.get(namespace, {}).get(key)
        return getter() if getter else None

    def _config(self, component: ComponentContext, path: str) -> str | None:
        try:
            return _text(pointer(component.configuration, path))
        except (KeyError, IndexError, ValueError):
            return None

    def string(self, text: str, component: ComponentContext, with_configuration: bool = True) -> str:
        """KernelConfigResolver.replace(): one pass for ``{ns:key}``, one for ``{component:ns:key}``."""
        out = text
        for m in SAME.finditer(text):
            namespace, key = m.group(1), m.group(2)
            if namespace == "configuration":
                value = self._config(component, key) if with_configuration else None
            else:
                value = self._system(component, namespace, key)
            if value is None:
                self.unresolved.append(m.group(0))
            else:
                out = out.replace(m.group(0), value)
        for m in CROSS.finditer(out):
            target, namespace, key = m.groups()
            other = self.components.get(target)
            if target not in component.dependencies or other is None:
                self.unresolved.append(m.group(0))
                continue
            if namespace == "configuration":
                value = self._config(other, key) if with_configuration else None
            else:
                value = self._system(other, namespace, key)
            if value is not None:
                out = out.replace(m.group(0), value)
        return out

    def value(self, value: Any, component: ComponentContext, with_configuration: bool = True) -> Any:
        if isinstance(value, str):
            return self.string(value, component, with_configuration)
        if isinstance(value, dict):
            return {k: self.value(v, component, with_configuration) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, component, with_configuration) for v in value]
        return value


def resolve_configuration(
    recipe: Mapping[str, Any], deployment_merge: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """DefaultConfiguration, then the deployment's merge (KernelConfigResolver.resolveConfigurationToApply)."""
    defaults = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    return merge(copy.deepcopy(defaults), dict(deployment_merge or {}))
