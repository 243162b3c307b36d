"""What Debian's archive holds for each release a Raspberry Pi may run (Raspberry Pi OS 11/12/13 are
built on Debian 11 bullseye, 12 bookworm, 13 trixie), as the tests of the installers assume it.

Source: the Packages indices of Debian's archive, suites ``<release>`` and ``<release>-security``,
component ``main``, for ``binary-arm64`` and ``binary-armhf`` (the same names on both), read on
2026-12-06 with apt itself and a scratch configuration (this machine's apt config untouched)::

    APT_CONFIG=<scratch apt.conf with Dir::State/Dir::Etc in a scratch dir, APT::Architectures arm64 armhf>
    apt-get update
    grep -E '^Package: openjdk-[0-9]+-jre-headless$' <scratch>/state/lists/*_Packages

``python`` is the version of each release's ``python3`` package (same lists).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    debian: str
    python: str
    jre_headless: tuple[str, ...]  # every openjdk-*-jre-headless with a candidate


RELEASES = {
    "bullseye": Release("11", "3.9", ("openjdk-11-jre-headless", "openjdk-17-jre-headless")),
    "bookworm": Release("12", "3.11", ("openjdk-17-jre-headless",)),
    "trixie": Release("13", "3.13", ("openjdk-21-jre-headless", "openjdk-25-jre-headless")),
}

# apt-cache policy as apt prints it (LC_ALL=C): a Candidate line with a version, "(none)", or nothing
APT_CACHE_SHIM = """#!/bin/sh
[ "$1" = policy ] || exit 0
for p in $FAKE_APT_PACKAGES; do
  if [ "$p" = "$2" ]; then printf '%s:\\n  Installed: (none)\\n  Candidate: 1.0-1\\n' "$2"; exit 0; fi
done
exit 0
"""
