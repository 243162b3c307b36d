"""A thing's previous windows: the speed model trains on the last K windows, not only the one that just closed.

A window's file name is ``<device>_<yyyymmddTHHMMSSZ>_<rows>.csv`` (:func:`model_contract.layout.window_key`):
the windows before it are those of the same device with an earlier start stamp, newest first. Where they are:

* cloud (``train worker --queue``): ``windows/<thing>/`` in the windows bucket, listed (the trainer role's
  ``s3:ListBucket`` on that bucket, which holds the windows and the edge's ``forecasts/<thing>/``: no new
  permission; only ``windows/<thing>/`` is listed) and read with ``GetObject``. The day folders
  ``yyyy/mm/dd/`` are listed from the window's day backwards until K-1 are found (:func:`walk_back`: a few
  listings a window, not the thing's whole history);
* edge (``train worker --watch DIR``): ``DIR/done/windows/<thing>/``, where the watcher moves each window it
  trained (its ``.spec.json`` beside it), day folders walked back the same way; a window elsewhere under DIR
  (no thing in its path) looks only in its own folder under ``DIR/done/``, so another thing's windows are
  never joined.

Each earlier window is checked as any window is (:func:`training_job.windows.parse_window`, its own carried
spec); it is used only when that spec is the current window's and it ends before the next newer one begins.
One that is missing, forbidden, unreadable, bad, of another spec or overlapping is skipped and counted in the
manifest's ``extra["speed_windows"]`` (:class:`History`) and the log: it never fails the model. The history
ends at a gap: an earlier window that ends more than :data:`MAX_GAP_WINDOWS` window lengths before the next one
begins (the thing was off, or re-provisioned) is not joined, nor anything before it. Any other S3 error (the
endpoint is down, a 5xx) propagates, so the window is retried rather than trained on fewer windows under
another version.

>>> window_stamp("windows/pi-1/2017/01/14/T1_20170114T000000Z_1000.csv")
('T1', '20170114T000000Z')
>>> earlier(["a/T1_20170101T000000Z_9.csv", "a/T1_20170103T000000Z_9.csv", "a/T2_20170102T000000Z_9.csv",
...          "a/T1_20170102T000000Z_9.csv"], "b/T1_20170103T000000Z_9.csv", 5)
['a/T1_20170102T000000Z_9.csv', 'a/T1_20170101T000000Z_9.csv']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_contract import FeatureSpec
from model_contract.layout import window_id_from_key, window_id_parts
from model_contract.window_spec import SIDECAR_SUFFIX, sidecar_metadata
from training_job.windows import Window, WindowError, parse_window, window_spec

log = logging.getLogger(__name__)

DEFAULT_SPEED_WINDOWS = 6  # docs/combination.md: fine-tuned on the last 6 windows, the speed model adds the most
HISTORY_KEY = "speed_windows"  # the manifest's extra field
SUFFIXES = (".csv", ".jsonl", ".ndjson")
MAX_PROBLEMS = 5
# an earlier window is joined only when it ends at most this many window lengths before the next one begins: one
# lost or bad window between them is bridged, a longer pause (the thing was off, or re-provisioned) ends the history
MAX_GAP_WINDOWS = 1.5
# S3 error codes that say an earlier window is not there or not ours to read (skipped); any other error propagates
_SKIPPED = ("NoSuchKey", "NoSuchBucket", "404", "NotFound", "403", "AccessDenied")

# loads one earlier window by name: (bytes, its metadata or None); None when it does not exist; Unreadable when it
# cannot be read for a lasting reason; any other exception (S3 down) propagates, so the window is retried
Loader = Callable[[str], "tuple[bytes, Mapping[str, str] | None] | None"]


def window_stamp(name: str) -> tuple[str, str] | None:
    """(device, start stamp) of a window file name or key; None for any other name."""
    parts = window_id_parts(window_id_from_key(name))
    return None if parts is None else (parts[0], parts[1])


def earlier(names: Iterable[str], current: str, count: int) -> list[str]:
    """The ``count`` newest window names of ``current``'s device that start before it, newest first."""
    mine = window_stamp(current)
    if mine is None or count < 1:
        return []
    found = []
    for name in names:
        stamp = window_stamp(name)
        if name.lower().endswith(SUFFIXES) and stamp is not None and stamp[0] == mine[0] and stamp[1] < mine[1]:
            found.append((stamp[1], name))
    return [name for _, name in sorted(found, reverse=True)[:count]]


@dataclass
class History:
    """What the speed model was trained on beyond the window that closed (the manifest's ``extra["speed_windows"]``)."""

    asked: int
    used: int = 1
    rows: int = 0
    sources: list[str] = field(default_factory=list)  # the earlier windows used, oldest first
    skipped: dict[str, int] = field(default_factory=dict)  # missing, bad, other_spec, overlap, unlisted
    problems: list[str] = field(default_factory=list)

    def skip(self, kind: str, message: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        log.warning("earlier window skipped (%s): %s", kind, message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"asked": self.asked, "used": self.used, "rows": self.rows, "sources": self.sources}
        if self.skipped:
            out |= {"skipped": dict(self.skipped), "problems": list(self.problems)}
        return out


class Unreadable(Exception):
    """An earlier window that a :data:`Loader` cannot read for a lasting reason (forbidden, a bad sidecar): skipped."""


def span(window: Window) -> float:
    """The seconds a window covers: first to last row plus one step (its median); 0 without timestamps."""
    if len(window.epochs) < 2:
        return 0.0
    return float(window.epochs[-1] - window.epochs[0] + np.median(np.diff(window.epochs)))


def join(current: Window, older: list[Window]) -> Window:
    """One window of ``older`` (oldest first) then ``current``: the current window's source, digest and device."""
    if not older:
        return current
    parts = [*older, current]
    joined = Window(
        np.vstack([w.matrix for w in parts]),
        [t for w in parts for t in w.timestamps],
        current.spec,
        device=current.device,
        source=current.source,
        sha256=current.sha256,
        thing=current.thing,
        epochs=[e for w in parts for e in w.epochs],
        spec_source=current.spec_source,
    )
    return joined


def gather(
    current: Window, candidates: list[str], load: Loader, asked: int, min_rows: int, history: History | None = None
) -> tuple[Window, History]:
    """``current`` joined with the usable windows among ``candidates`` (newest first), and what happened."""
    history = history or History(asked)
    spec: FeatureSpec = current.spec
    older: list[Window] = []
    starts = current.epochs[0] if current.epochs else float("inf")
    limit = span(current) * MAX_GAP_WINDOWS
    for name in candidates:
        try:
            got = load(name)
        except Unreadable as exc:  # forbidden or unreadable: skipped; anything else (S3 down) is the caller's
            history.skip("unreadable", f"{name}: {exc}")
            continue
        if got is None:
            history.skip("missing", f"{name} does not exist")
            continue
        data, metadata = got
        try:
            theirs, _ = window_spec(metadata, spec)
            if theirs.to_dict() != spec.to_dict():
                history.skip("other_spec", f"{name} was recorded with feature spec {theirs.to_dict()}")
                continue
            fmt = "jsonl" if name.lower().endswith((".jsonl", ".ndjson")) else "auto"
            window = parse_window(data, spec, fmt=fmt, min_rows=min_rows, source=name, thing=current.thing)
        except WindowError as exc:
            history.skip("bad", f"{name}: {exc}")
            continue
        if window.epochs[-1] >= starts:
            history.skip("overlap", f"{name} ends at {window.last_ts}, after the next window begins")
            continue
        if starts - window.epochs[-1] > max(limit, span(window) * MAX_GAP_WINDOWS):
            history.skip("gap", f"{name} ends at {window.last_ts}, long before the next window begins: stopped there")
            break
        older.append(window)
        starts = window.epochs[0]
    older.reverse()
    joined = join(current, older)
    history.used = 1 + len(older)
    history.rows = joined.rows
    history.sources = [w.source for w in older]
    if older:
        log.info("speed model: %d windows, %d rows (%d earlier windows asked)", history.used, joined.rows, asked - 1)
    return joined, history


# -- where the earlier windows are ----------------------------------------------------------------------------


def from_s3(s3: Any, bucket: str, key: str, current: Window, asked: int, min_rows: int) -> tuple[Window, History]:
    """``current`` (``s3://bucket/key``) joined with the ``asked - 1`` windows before it in ``windows/<thing>/``."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    history = History(asked)
    if asked <= 1:
        return current, _only(current, history)
    prefix = "/".join(key.split("/")[:2]) + "/"  # windows/<thing>/
    try:
        names = s3_earlier(s3, bucket, key, asked - 1)
    except ClientError as exc:
        if _code(exc) not in _SKIPPED:
            raise  # a 5xx, throttling: the window is retried rather than trained on fewer windows
        history.skip("unlisted", f"cannot list s3://{bucket}/{prefix}: {_code(exc)}")
        return current, _only(current, history)

    def load(name: str) -> tuple[bytes, Mapping[str, str] | None] | None:
        try:
            obj = s3.get_object(Bucket=bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            if _code(exc) in _SKIPPED:
                raise Unreadable(_code(exc)) from None
            raise
        return obj["Body"].read(), obj.get("Metadata")

    joined, history = gather(current, names, load, asked, min_rows, history)
    history.sources = [f"s3://{bucket}/{s}" if not s.startswith("s3://") else s for s in history.sources]
    return joined, history


def from_folder(done: Path, rel: Path, current: Window, asked: int, min_rows: int) -> tuple[Window, History]:
    """``current`` (``rel`` under the watched folder) joined with the windows before it under ``done/<rel's folder>``
    (``windows/<thing>/``)."""
    history = History(asked)
    if asked <= 1:
        return current, _only(current, history)
    parts = rel.parts
    if _day(rel.as_posix()) is not None:  # windows/<thing>/yyyy/mm/dd/: that thing's day folders, newest first
        root = f"{done.joinpath(*parts[:2])}/"
        names = walk_back(_folder_children, _folder_files, root, f"{done / rel}", count=asked - 1)
    elif len(parts) > 2 and parts[0] == "windows":  # windows/<thing>/ in another layout: all of it
        base = done.joinpath(*parts[:2])
        names = [str(p) for p in base.rglob("*") if p.is_file()] if base.is_dir() else []
    else:  # elsewhere (no thing in the path): only the window's own folder, never other things' windows
        names = _folder_files(f"{done / rel.parent}/")

    def load(name: str) -> tuple[bytes, Mapping[str, str] | None] | None:
        path = Path(name)
        if not path.is_file():
            return None
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        try:
            return path.read_bytes(), sidecar_metadata(sidecar.read_text()) if sidecar.is_file() else None
        except (OSError, ValueError) as exc:  # unreadable, or a sidecar that is not a spec
            raise Unreadable(f"{type(exc).__name__}: {exc}") from None

    return gather(current, earlier(names, rel.name, asked - 1), load, asked, min_rows, history)


def _day(key: str) -> tuple[str, str, str] | None:
    """(yyyy, mm, dd) of a key in the layout ``windows/<thing>/yyyy/mm/dd/<window id>`` (its start's day), or None."""
    parts = key.split("/")
    stamp = window_stamp(key)
    if len(parts) < 6 or parts[-6] != "windows" or stamp is None:
        return None
    day = (parts[-4], parts[-3], parts[-2])
    return day if "".join(day) == stamp[1][:8] else None


def newest_days(children: Callable[[str], list[str]], root: str, day: tuple[str, str, str]) -> Iterator[str]:
    """The day folders ``root``yyyy/mm/dd/ up to ``day``, newest first, listing one level at a time."""
    for year in sorted((y for y in children(root) if y <= day[0]), reverse=True):
        for month in sorted((m for m in children(f"{root}{year}/") if (year, m) <= day[:2]), reverse=True):
            for d in sorted((d for d in children(f"{root}{year}/{month}/") if (year, month, d) <= day), reverse=True):
                yield f"{root}{year}/{month}/{d}/"


def walk_back(
    children: Callable[[str], list[str]], files: Callable[[str], list[str]], root: str, key: str, count: int
) -> list[str]:
    """:func:`earlier` over the day folders under ``root`` (``windows/<thing>/``), from ``key``'s day backwards,
    until ``count`` are found: a few listings a window, however long the thing's history (not all of it)."""
    day = _day(key)
    if day is None or count < 1:
        return []
    found: list[str] = []
    for folder in newest_days(children, root, day):
        found = earlier([*found, *files(folder)], key, count)
        if len(found) >= count:  # an older day holds only older windows
            break
    return found


def s3_earlier(s3: Any, bucket: str, key: str, count: int) -> list[str]:
    """The ``count`` keys of :func:`earlier` under ``key``'s ``windows/<thing>/``: by day folders when ``key`` is in
    :func:`model_contract.layout.window_key`'s layout, else the whole prefix listed."""
    prefix = "/".join(key.split("/")[:2]) + "/"  # windows/<thing>/

    def listed(where: str, by_folder: bool = True) -> list[dict[str, Any]]:
        args = {"Bucket": bucket, "Prefix": where} | ({"Delimiter": "/"} if by_folder else {})
        pages = s3.get_paginator("list_objects_v2").paginate(**args)
        return [item for page in pages for item in [*page.get("CommonPrefixes", []), *page.get("Contents", [])]]

    def children(where: str) -> list[str]:
        return [item["Prefix"][len(where) :].rstrip("/") for item in listed(where) if "Prefix" in item]

    def files(where: str) -> list[str]:
        return [item["Key"] for item in listed(where) if "Key" in item]

    if _day(key) is not None:
        return walk_back(children, files, prefix, key, count)
    return earlier([item["Key"] for item in listed(prefix, by_folder=False) if "Key" in item], key, count)


def _folder_children(where: str) -> list[str]:
    path = Path(where)
    return [p.name for p in path.iterdir() if p.is_dir()] if path.is_dir() else []


def _folder_files(where: str) -> list[str]:
    path = Path(where)
    return [str(p) for p in path.iterdir() if p.is_file()] if path.is_dir() else []


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _only(current: Window, history: History) -> History:
    history.used, history.rows = 1, current.rows
    return history
