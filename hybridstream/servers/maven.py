"""Fetch a Java server's jars (with their dependencies) from Maven Central, cached in a folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.hybridstream</groupId><artifactId>{name}</artifactId><version>1</version>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


def fetch_jars(home: Path, coordinates: list[str], marker: str, quiet: bool = True, hint: str = "") -> Path:
    """Copy ``group:artifact:version`` coordinates and their runtime dependencies into ``home/libs``.

    Cached: returns at once when ``home/libs`` already holds a jar matching ``marker`` (a glob).
    The folder appears only complete (download into ``libs.tmp``, then rename).
    """
    libs = home / "libs"
    if libs.is_dir() and any(libs.glob(marker)):
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError(
            "mvn not found: install Maven (Debian: apt-get install maven)" + (f", {hint}" if hint else "")
        )
    home.mkdir(parents=True, exist_ok=True)
    deps = []
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        deps.append(
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    pom = home / "pom.xml"
    pom.write_text(_POM.format(name=home.name, dependencies="\n".join(deps)))
    tmp = home / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    subprocess.run(cmd, check=True)
    tmp.rename(libs)
    return libs
