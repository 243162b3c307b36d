"""Greengrass and AWS rules the recipes and deployments rely on, encoded offline (issue 10).

No nucleus runs here: each rule comes from the nucleus's public source or the AWS documentation
(linked in each test) and is checked on the synthesized recipes and template, or by running the
recipes' scripts with stand-in commands on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybridstream.greengrass import ipc
from hybridstream.greengrass.recipe import (
    ARCHITECTURES,
    ComponentContext,
    Interpolator,
    NoMatchingManifest,
    nucleus_architecture,
    select_manifest,
)
from infra import recipes

# what a nucleus reports on the devices we support (PlatformResolver): 64-bit Pi OS, x86 boxes; and on
# the 32-bit Pi OS we refuse, on a 32-bit or a 64-bit kernel (the JVM is 32-bit either way: "arm"; the
# detail is uname -m)
DEVICES = {
    "pi-64": {"os": "linux", "architecture": "aarch64"},
    "pi-32": {"os": "linux", "architecture": "arm", "architecture.detail": "armv7l"},
    "pi-32-on-64-bit-kernel": {"os": "linux", "architecture": "arm"},  # uname -m aarch64: no detail
    "x86-64": {"os": "linux", "architecture": "amd64"},
}


def _recipes(built_mode) -> dict[str, dict]:
    return dict(built_mode.stack.greengrass.recipes)


def test_manifests_use_the_nucleus_platform_names(built):
    """Defect 6. The nucleus reports ``architecture`` as amd64, x86, arm or aarch64 (from the JVM's
    os.arch); "armv7l" is only ``architecture.detail``, and a recipe with no matching manifest fails
    the deployment. Sources: PlatformResolver.getArchInfo in
    https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/config/PlatformResolver.java
    and the recipe reference's Manifests/Platform:
    https://docs.aws.amazon.com/greengrass/v2/developerguide/component-recipe-reference.html#recipe-reference-manifests
    """
    assert [nucleus_architecture(a) for a in ("amd64", "x86_64", "arm", "aarch64")] == [
        "amd64",
        "amd64",
        "arm",
        "aarch64",
    ]
    for mode, b in built.items():
        for name, recipe in _recipes(b).items():
            for manifest in recipe["Manifests"]:
                assert manifest["Platform"]["architecture"] in ARCHITECTURES, (mode, name)
            for device, platform in DEVICES.items():
                if platform["architecture"] == "arm":
                    with pytest.raises(NoMatchingManifest):  # 32-bit is refused: the deployment installs nothing
                        select_manifest(recipe, platform)
                    continue
                assert select_manifest(recipe, platform)["Platform"]["architecture"] == platform["architecture"], (
                    mode,
                    name,
                    device,
                )


def _shims(folder: Path, *, bits: int, machine: str, py: str, calls: Path) -> Path:
    """A ``python3`` stand-in: python3 answers the install's probes as a ``bits``-bit
    ``machine`` Python ``py``, makes a venv whose python records its pip arguments in ``calls``."""
    folder.mkdir(parents=True, exist_ok=True)
    python = folder / "python3"
    python.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        '  mkdir -p "$3/bin"\n'
        f'  printf \'#!/bin/sh\\necho "$*" >> {calls}\\n\' > "$3/bin/python"\n'
        '  chmod +x "$3/bin/python"; exit 0\n'
        "fi\n"
        'case "$2" in\n'
        f'  *struct*) echo "{bits} {machine} {py}" ;;\n'
        f'  *sys.version*) echo "{py}.0 (stand-in)" ;;\n'
        "esac\n"
    )
    python.chmod(0o755)
    return folder


def _render(recipe: dict, platform: dict, work: Path, src: Path) -> dict:
    """The selected manifest's lifecycle with the recipe variables filled in as the nucleus does."""
    ctx = ComponentContext(
        name=recipe["ComponentName"],
        version=recipe["ComponentVersion"],
        configuration=(recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {},
        artifacts_path=str(src),
        decompressed_path=str(src.parent),
        work_path=str(work),
        dependencies=tuple(recipe.get("ComponentDependencies") or {}),
    )
    interpolator = Interpolator(thing_name="pi-1", root_path=str(work.parent))
    interpolator.components[ctx.name] = ctx
    return interpolator.value(select_manifest(recipe, platform)["Lifecycle"], ctx)


def _edge_recipe() -> dict:
    app = recipes.ZipArtifact(uri="s3://b/app.zip", stem="app")
    return recipes.edge_app_recipe(
        name="hybridstream.EdgeApp",
        version="1.0.0",
        app=app,
        settings=recipes.EdgeAppSettings(mode="edge"),
        prerequisites_component="hybridstream.Prerequisites",
    )


def _run_install(tmp_path: Path, platform: dict, **probe) -> tuple[subprocess.CompletedProcess, list[str]]:
    work, src = tmp_path / "work", tmp_path / "unarchived" / "app"
    (src / "edge_app").mkdir(parents=True, exist_ok=True)
    (src / "edge_app" / "requirements.txt").write_text("# requirements.txt\nnumpy\n")
    work.mkdir(exist_ok=True)
    calls = tmp_path / "pip-calls"
    shims = _shims(tmp_path / "bin", calls=calls, **probe)
    script = _render(_edge_recipe(), platform, work, src)["Install"]["Script"]
    env = {"PATH": f"{shims}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=30)
    return done, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize(
    ("device", "probe"),
    [
        ("pi-64", {"bits": 64, "machine": "aarch64", "py": "3.11"}),
        ("pi-64-trixie", {"bits": 64, "machine": "aarch64", "py": "3.13"}),
        ("x86-64", {"bits": 64, "machine": "x86_64", "py": "3.11"}),
    ],
)
def test_install_is_a_no_op_after_the_first_success(tmp_path, device, probe):
    """Install runs at every start (Install "runs each time the component starts" and pip never upgrades itself:
    https://docs.aws.amazon.com/greengrass/v2/developerguide/component-recipe-reference.html#recipe-lifecycle);
    the second run is a no-op (the stamp).
    """
    platform = DEVICES[device.removesuffix("-trixie")]
    done, calls = _run_install(tmp_path, platform, **probe)
    assert done.returncode == 0, done.stderr
    assert len(calls) == 1 and calls[0].startswith("-m pip install"), calls
    assert "/edge_app/requirements.txt" in calls[0]
    assert "--upgrade" not in calls[0] and "--disable-pip-version-check" in calls[0]
    again, calls = _run_install(tmp_path, platform, **probe)  # the next boot
    assert again.returncode == 0 and len(calls) == 1, calls  # no second pip run
    assert "up to date" in again.stdout


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        # a 32-bit Python, also on a 64-bit kernel (platform_machine aarch64): no runtime for it
        ({"bits": 32, "machine": "armv7l", "py": "3.9"}, "32-bit Raspberry Pi OS is not supported"),
        ({"bits": 32, "machine": "aarch64", "py": "3.11"}, "32-bit Raspberry Pi OS is not supported"),
        # 64-bit Raspberry Pi OS 11 (bullseye): Python 3.9
        ({"bits": 64, "machine": "aarch64", "py": "3.9"}, "needs Python >= 3.11, this is Python 3.9"),
    ],
)
def test_install_refuses_a_python_the_edge_cannot_run_on(tmp_path, probe, message):
    """The code the Pi runs needs Python >= 3.11 (tests/fleet/test_pi_python.py) and tflite-runtime's only
    armv7l wheel is cp39 (ai-edge-litert has none). A 32-bit JVM gets no manifest at all; a device that
    slipped past `fleet enroll` and install.sh anyway (a 64-bit JVM beside a 32-bit python3, a 64-bit
    bullseye) gets a clear message before pip runs."""
    done, calls = _run_install(tmp_path, DEVICES["pi-64"], **probe)
    assert done.returncode != 0 and message in done.stderr and calls == []
    assert "install 64-bit Raspberry Pi OS (bookworm or trixie)" in done.stderr


def test_ipc_policies_need_no_interpolation(built):
    """Defect 8. The nucleus interpolates a component's *configuration* (its ``accessControl``
    included) only when ``interpolateComponentConfiguration`` is true (default false), and only with
    system parameters; the authorization handler matches the policy text as stored. Sources:
    shouldInterpolateConfiguration in
    https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/componentmanager/KernelConfigResolver.java
    and the MQTT_STYLE look-up in
    https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/authorization/AuthorizationHandler.java
    docs:
    https://docs.aws.amazon.com/greengrass/v2/developerguide/greengrass-nucleus-component.html
    (interpolateComponentConfiguration) and
    https://docs.aws.amazon.com/greengrass/v2/developerguide/interprocess-communication.html#ipc-authorization-policies
    """
    for mode, b in built.items():
        for d in b.resources("AWS::GreengrassV2::Deployment").values():
            nucleus = d["Properties"]["Components"].get("aws.greengrass.Nucleus")
            assert nucleus is None, mode  # no deployment turns interpolation on: policies must not need it
        recipe = _recipes(b)["hybridstream.EdgeApp"]
        acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
        resources = [r for policy in acl[ipc.MQTT_PROXY].values() for r in policy["resources"]]
        assert not any("{" in r for r in resources), mode
        for kind in ("windows", "metrics", "readings"):  # what the edge app publishes, as the nucleus holds it
            assert ipc.authorized(acl, ipc.PUBLISH, f"hybridstream/pi-1/{kind}"), (mode, kind)
        assert ipc.authorized(acl, ipc.SUBSCRIBE, "hybridstream/models/speed-pi-1/published"), mode
        assert not ipc.authorized(acl, ipc.PUBLISH, "hybridstream/models/speed-pi-1/published"), mode
        assert not ipc.authorized(acl, ipc.SUBSCRIBE, "hybridstream/pi-2/windows"), mode
    # what the old recipe had: a literal variable refuses every publish
    old = {ipc.MQTT_PROXY: {"p": {"operations": [ipc.PUBLISH], "resources": ["hybridstream/{iot:thingName}/*"]}}}
    assert not ipc.authorized(old, ipc.PUBLISH, "hybridstream/pi-1/windows")


def test_only_the_prerequisites_component_bootstraps(built, tmp_path):
    """Defect 10. A Bootstrap step makes the nucleus stop every component and restart itself
    (softShutdown, then exit 0 is treated as a restart request:
    https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/deployment/activator/KernelUpdateActivator.java
    ), and it runs again whenever its component's version changes
    (GenericExternalService.isBootstrapRequired). So only the rarely changing Prerequisites component
    has one (its version does not depend on any artifact: test_versions_derive_from_content); Kafka 4
    needs Java 17 (Debian 11's default is 11), checked by version, not by presence.
    Docs: https://docs.aws.amazon.com/greengrass/v2/developerguide/component-recipe-reference.html#bootstrap-lifecycle-definition
    """
    for mode, b in built.items():
        with_bootstrap = [
            name
            for name, recipe in _recipes(b).items()
            if any("Bootstrap" in (m.get("Lifecycle") or {}) for m in recipe["Manifests"])
        ]
        assert with_bootstrap == ["hybridstream.Prerequisites"], mode
        prereq = _recipes(b)["hybridstream.Prerequisites"]
        assert not any(m["Artifacts"] for m in prereq["Manifests"])
        for name, recipe in _recipes(b).items():
            if name.endswith((".EdgeApp", ".KafkaBroker", ".Trainer")):
                dep = recipe["ComponentDependencies"]["hybridstream.Prerequisites"]
                assert dep["DependencyType"] == "HARD", (mode, name)
    kafka = _recipes(built["edge-cloud"])["hybridstream.KafkaBroker"]
    install = kafka["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    java_check = install.split('cd "{work:path}"', 1)[0]  # the Java gate, before anything is written
    for version, ok in (('openjdk version "11.0.20" 2023-07-18', False), ('openjdk version "17.0.15"', True)):
        shim = tmp_path / f"java-{ok}"
        shim.mkdir()
        (shim / "java").write_text(f"#!/bin/sh\necho '{version}' >&2\n")
        (shim / "java").chmod(0o755)
        done = subprocess.run(
            ["sh", "-c", java_check], env={"PATH": f"{shim}:/usr/bin:/bin"}, capture_output=True, text=True
        )
        assert (done.returncode == 0) is ok, done.stderr
        if not ok:
            assert "needs Java >= 17" in done.stderr and "openjdk-17-jre-headless" in done.stderr
    bootstrap = prereq["Manifests"][0]["Lifecycle"]["Bootstrap"]["Script"]
    lock = f"-o DPkg::Lock::Timeout={recipes.APT_LOCK_TIMEOUT} "
    for java, installed, wanted in (
        (
            'openjdk version "11.0.20"',
            False,
            f"update|{lock}install -y --no-install-recommends python3-venv openjdk-17-jre-headless",
        ),
        ('openjdk version "17.0.15"', True, ""),
        (None, True, f"update|{lock}install -y --no-install-recommends openjdk-17-jre-headless"),  # no java at all
    ):
        got = _run_bootstrap(tmp_path / f"apt-{java is None}-{installed}", bootstrap, java, installed, "bookworm")
        assert got.returncode == 0, got.stderr
        assert got.apt == wanted, (java, installed, got.apt)


@dataclass
class _Ran:
    returncode: int
    stderr: str
    apt: str  # apt-get calls, "|"-joined
    sleeps: int


def _run_bootstrap(shim: Path, script: str, java: str | None, installed: bool, release: str, locked: int = 0) -> _Ran:
    """The Prerequisites Bootstrap under /bin/sh with stand-ins for java, dpkg, apt-get (its update fails
    ``locked`` times, as when another apt holds the lists lock), apt-cache (``release``'s packages) and sleep."""
    from tests.fleet.debian_releases import APT_CACHE_SHIM, RELEASES

    shim.mkdir()
    calls, counter = shim / "apt-calls", shim / "locked"
    counter.write_text(str(locked))
    scripts = {
        "apt-get": f"""#!/bin/sh
if [ "$1" = update ]; then
  echo update >> {calls}
  n=$(cat {counter}); [ "$n" -gt 0 ] && {{ echo $((n - 1)) > {counter}; echo "E: Could not get lock" >&2; exit 100; }}
  exit 0
fi
echo "$*" >> {calls}
""",
        "apt-cache": APT_CACHE_SHIM,
        "dpkg": f"#!/bin/sh\nexit {0 if installed else 1}\n",
        "sleep": f"#!/bin/sh\necho sleep >> {shim / 'sleeps'}\n",
    }
    if java:
        scripts["java"] = f"#!/bin/sh\necho '{java}' >&2\n"
    for name, text in scripts.items():
        (shim / name).write_text(text)
        (shim / name).chmod(0o755)
    for tool in ("sed", "head", "grep", "cat"):  # only these from the system: no real java, dpkg or apt-get
        (shim / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(shim), "FAKE_APT_PACKAGES": " ".join(RELEASES[release].jre_headless)}
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    apt = "|".join(calls.read_text().split("\n")).strip("|") if calls.exists() else ""
    sleeps = len((shim / "sleeps").read_text().split()) if (shim / "sleeps").exists() else 0
    return _Ran(done.returncode, done.stderr, apt, sleeps)


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_prerequisites_install_a_java_the_release_has(built, tmp_path, release):
    """Issue 20, item 1. Debian 13 (trixie), the base of the current Raspberry Pi OS, has openjdk-21 and -25
    but no openjdk-17; bookworm has only openjdk-17 (tests/fleet/debian_releases.py, from Debian's
    package lists). A Bootstrap that names openjdk-17 stops under ``set -e`` on trixie ("no installation
    candidate") and no component after it installs. It takes the first of JAVA_PACKAGES apt has."""
    from tests.fleet.debian_releases import RELEASES

    prereq = _recipes(built["edge-cloud"])["hybridstream.Prerequisites"]
    for manifest in prereq["Manifests"]:
        arch = manifest["Platform"]["architecture"]
        script = manifest["Lifecycle"]["Bootstrap"]["Script"]
        got = _run_bootstrap(tmp_path / f"{arch}-{release}", script, None, True, release)
        assert got.returncode == 0, got.stderr
        wanted = next(p for p in recipes.JAVA_PACKAGES if p in RELEASES[release].jre_headless)
        assert got.apt.split("|")[-1].split()[-1] == wanted, (arch, got.apt)
    assert recipes.JAVA_PACKAGES[0] in RELEASES["bookworm"].jre_headless
    assert recipes.JAVA_PACKAGES[1] in RELEASES["trixie"].jre_headless
    none = _run_bootstrap(tmp_path / "old", script.replace("openjdk-17-jre-headless ", ""), None, True, "bookworm")
    assert none.returncode == 1
    assert "no Java >= 17 package in the apt sources" in none.stderr and "install" not in none.apt


def test_prerequisites_wait_for_another_apt(built, tmp_path):
    """Issue 20, item 7. On a freshly booted Pi unattended-upgrades may hold apt's locks: the Bootstrap
    retries ``apt-get update`` (which ignores DPkg::Lock::Timeout, see the next test) and installs with
    ``-o DPkg::Lock::Timeout`` (apt waits for the dpkg frontend lock) instead of failing the deployment."""
    script = _recipes(built["edge-cloud"])["hybridstream.Prerequisites"]["Manifests"][0]["Lifecycle"]["Bootstrap"]
    got = _run_bootstrap(tmp_path / "locked", script["Script"], None, True, "trixie", locked=2)
    assert got.returncode == 0, got.stderr
    assert got.sleeps == 2 and got.apt.startswith("update|update|update|-o DPkg::Lock::Timeout=")
    assert script["Timeout"] > recipes.APT_UPDATE_TRIES * 10 + recipes.APT_LOCK_TIMEOUT


def test_apt_lock_timeout_covers_install_not_update(tmp_path):
    """Why the apt lines look as they do, measured on this machine's real apt (Debian 12's apt 2.6, as on a
    bookworm Pi) in a scratch configuration: with another process holding the lock, ``apt-get install``
    (here ``autoremove``: the same dpkg frontend lock) waits with ``-o DPkg::Lock::Timeout=N``, while
    ``apt-get update`` fails at once on the lists lock whatever the option. (apt's own documentation
    names the option only in its configure-index: /usr/share/doc/apt/examples/configure-index.)"""
    import fcntl
    import threading
    import time

    apt_get = shutil.which("apt-get")
    assert apt_get, "apt-get missing: these tests run on Debian"
    state = tmp_path / "state"
    for d in (
        "etc/apt.conf.d",
        "etc/sources.list.d",
        "etc/preferences.d",
        "state/lists/partial",
        "cache/archives/partial",
    ):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "etc" / "sources.list").write_text("")
    (state / "status").write_text("")
    conf = tmp_path / "apt.conf"
    dirs = {"Etc": tmp_path / "etc", "State": state, "State::status": state / "status", "Cache": tmp_path / "cache"}
    conf.write_text("".join(f'Dir::{k} "{v}";\n' for k, v in dirs.items()))
    env = {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}

    def held(lock: Path, *cmd: str) -> tuple[int, float]:
        lock.touch()
        with open(lock, "w") as fh:
            fcntl.lockf(fh, fcntl.LOCK_EX)
            release = threading.Timer(1.5, fcntl.lockf, (fh, fcntl.LOCK_UN))
            release.start()
            began = time.monotonic()
            done = subprocess.run([apt_get, "-o", "DPkg::Lock::Timeout=20", *cmd], env=env, capture_output=True)
            waited = time.monotonic() - began
            release.cancel()
            release.join()
            return done.returncode, waited

    code, waited = held(state / "lock-frontend", "-y", "autoremove")
    assert code == 0 and waited >= 1.0
    code, waited = held(state / "lists" / "lock", "update")
    assert code != 0 and waited < 1.0


def _template_recipes(b) -> list[dict]:
    out = []
    for res in b.resources("AWS::GreengrassV2::ComponentVersion").values():
        recipe = res["Properties"]["InlineRecipe"]
        parts = recipe["Fn::Join"][1] if isinstance(recipe, dict) else [recipe]
        out.append(json.loads("".join(p if isinstance(p, str) else "bucket" for p in parts)))
    return out


def test_job_timeouts_cover_the_install_timeouts(built):
    """Defect 11. An IoT job execution that stays IN_PROGRESS longer than the job's in-progress timeout
    is TIMED_OUT (a failure: the canary's abort rule cancels the rollout). A device may run every
    component's Bootstrap and Install one after the other (default 120 s each when a step sets no
    Timeout), plus the deployment's component-update and configuration-validation timeouts.
    Docs: https://docs.aws.amazon.com/iot/latest/developerguide/jobs-configurations-details.html#job-timeouts
    and the recipe reference's Timeout defaults: https://docs.aws.amazon.com/greengrass/v2/developerguide/component-recipe-reference.html#recipe-reference-lifecycle
    """
    for mode, b in built.items():
        total = 0
        for recipe in _template_recipes(b):  # the template's own recipes, not the construct's
            worst = 0
            for m in recipe["Manifests"]:
                lc = m.get("Lifecycle") or {}
                worst = max(
                    worst,
                    sum(int(lc[k].get("Timeout", 120)) for k in ("Bootstrap", "Install") if k in lc),
                )
            total += worst
        for d in b.resources("AWS::GreengrassV2::Deployment").values():
            props = d["Properties"]
            policies = props["DeploymentPolicies"]
            budget = (
                total
                + policies["ComponentUpdatePolicy"]["TimeoutInSeconds"]
                + policies["ConfigurationValidationPolicy"]["TimeoutInSeconds"]
            )
            minutes = props["IotJobConfiguration"]["TimeoutConfig"]["InProgressTimeoutInMinutes"]
            assert minutes * 60 >= budget, (mode, props["DeploymentName"], minutes, budget)
            assert minutes <= 10080  # IoT jobs' maximum in-progress timeout (7 days)


def _cloudformation_attempt(template: dict, existing: set[tuple[str, str]]) -> tuple[bool, set[tuple[str, str]]]:
    """A create attempt that fails after the component versions were made, then rolls back, as
    CloudFormation does: create each version (ConflictException when it exists), then delete what
    the attempt created unless its DeletionPolicy is Retain. Returns (created ok, what is left)."""
    created = []
    for res in template["Resources"].values():
        if res["Type"] != "AWS::GreengrassV2::ComponentVersion":
            continue
        recipe = res["Properties"]["InlineRecipe"]
        parts = recipe["Fn::Join"][1] if isinstance(recipe, dict) else [recipe]
        body = json.loads("".join(p if isinstance(p, str) else "bucket" for p in parts))
        key = (body["ComponentName"], body["ComponentVersion"])
        if key in existing:
            return False, existing  # ConflictException: the version already exists
        existing = existing | {key}
        created.append((key, res.get("DeletionPolicy", "Delete")))
    kept = {key for key, policy in created if policy == "Retain"}
    return True, (existing - {key for key, _ in created}) | kept


def test_component_versions_survive_a_rolled_back_first_deploy_and_a_destroy(built):
    """Defect 2. Component versions are immutable and content-derived here: CreateComponentVersion
    of an existing name+version fails with ConflictException
    (https://docs.aws.amazon.com/greengrass/v2/APIReference/API_CreateComponentVersion.html). A failed
    create rolls back, and ``cdk destroy`` deletes, per DeletionPolicy
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-deletionpolicy.html);
    a replaced version follows UpdateReplacePolicy
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-updatereplacepolicy.html),
    kept: a fleet pinned to the previous release still needs it.
    """
    for mode, b in built.items():
        ok, left = _cloudformation_attempt(b.raw, set())  # first deploy: fails later, rolls back
        assert ok and not left, mode
        ok, left = _cloudformation_attempt(b.raw, left)  # the retry (or a redeploy after destroy)
        assert ok, mode
        for res in b.resources("AWS::GreengrassV2::ComponentVersion").values():
            assert res["UpdateReplacePolicy"] == "Retain", mode
    # the old template (Retain on delete) fails the retry
    old = json.loads(json.dumps(built["edge-cloud"].raw))
    for res in old["Resources"].values():
        if res["Type"] == "AWS::GreengrassV2::ComponentVersion":
            res["DeletionPolicy"] = "Retain"
    ok, left = _cloudformation_attempt(old, set())
    assert not _cloudformation_attempt(old, left)[0]


def test_a_device_is_targeted_by_one_deployment(built):
    """Defect 4 (deployment side). A core device in several thing groups gets every group's
    deployment, and the nucleus must find one version of each component that meets every
    deployment's requirement; with the fleet pinned and the canaries on the new release none does
    and the canary job fails (https://docs.aws.amazon.com/greengrass/v2/developerguide/manage-deployments.html,
    "Deployments to thing groups": the latest deployment of each group applies). So the two
    deployments target different groups, and provisioning puts a device into exactly one of them.
    """
    for mode, b in built.items():
        targets = [
            json.dumps(d["Properties"]["TargetArn"]) for d in b.resources("AWS::GreengrassV2::Deployment").values()
        ]
        assert len(targets) == 2 and len(set(targets)) == 2, mode
        (template,) = b.resources("AWS::IoT::ProvisioningTemplate").values()
        body = template["Properties"]["TemplateBody"]
        text = body if isinstance(body, str) else json.dumps(body)
        parsed = json.loads(text) if isinstance(body, str) else None
        if parsed is None:  # Fn::Join / Fn::Sub: the thing's ThingGroups list is still a literal JSON fragment
            assert text.count('\\"ThingGroups\\"') >= 1, mode
            continue
        things = [r for r in parsed["Resources"].values() if r["Type"] == "AWS::IoT::Thing"]
        assert len(things) == 1 and len(things[0]["Properties"]["ThingGroups"]) == 1, mode


def test_runner_renders_like_the_nucleus(tmp_path):
    """The runner's interpolation follows KernelConfigResolver (https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/componentmanager/KernelConfigResolver.java):
    a replacement is not interpolated again, configuration placeholders in the configuration stay
    text without interpolateComponentConfiguration, cross-component look-ups need a dependency."""
    ctx = ComponentContext("a", "1.0.0", {"name": "speed-{iot:thingName}", "n": 3}, "/art", "/unz", "/work", ("b",))
    other = ComponentContext("b", "1.0.0", {}, "/art-b", "/unz-b", "/work-b")
    i = Interpolator(thing_name="pi-1", root_path="/gg", components={"a": ctx, "b": other, "c": other})
    assert i.string("{configuration:/name}", ctx) == "speed-{iot:thingName}"  # not interpolated twice
    assert i.string("{iot:thingName}:{configuration:/n}:{work:path}", ctx) == "pi-1:3:/work"
    assert i.string("{b:artifacts:decompressedPath}", ctx) == "/unz-b"
    assert i.string("{c:artifacts:decompressedPath}", ctx) == "{c:artifacts:decompressedPath}"  # not a dependency
    assert i.value({"x": "{configuration:/n}"}, ctx, with_configuration=False) == {"x": "{configuration:/n}"}
