"""The compiled kernel of :class:`~model_contract.online_linear.OnlineLinear`: built on first use, else numpy.

``online_linear_kernel.c`` (beside this file) is OnlineLinear's learn step and forecast in C, and the
:class:`~model_contract.context_stack.ContextStack`'s steps around it (its guard, the model, the coefficients;
the expert-weighting layer of ``edge_app.context_stacking``, ``blend: pair`` or ``experts``: its twin model and
weights, in the same call). On the first :func:`kernel` call it is compiled with the system C compiler (``cc -O3
-shared -fPIC -ffp-contract=off``: IEEE arithmetic, no fused multiply-adds, no fast-math) into a private cache
directory and loaded with cffi; each record then costs one C call instead of ~30 numpy calls. The library's name
carries a hash of the source, the flags and the platform, so a changed source or another machine builds anew.
The directory is created with mode 0700 and a library is loaded only from a directory (and file) owned by this
user that no one else can write.

Without a compiler or cffi, or if the build fails, every model runs the numpy code (the same algorithm; its dot
products may sum in another order, a few ulps): logged once, and :func:`status` says which backend runs and why
(the edge's metrics and exit summary carry it as ``linear_kernel``). ``HYBRIDSTREAM_LINEAR_KERNEL=numpy`` forces
the numpy code; ``HYBRIDSTREAM_KERNEL_CACHE`` sets the cache directory (default
``$XDG_CACHE_HOME/hybridstream/kernels``, ``~/.cache/...`` without it).

>>> status()["backend"] in ("c", "numpy")
True
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("online_linear_kernel.c")
FLAGS = ("-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
ENV_BACKEND = "HYBRIDSTREAM_LINEAR_KERNEL"  # "numpy": never build or load the kernel
ENV_CACHE = "HYBRIDSTREAM_KERNEL_CACHE"
BUILD_TIMEOUT_S = 120.0
MAX_D = 4096  # the C source's MAX_D: a model with more inputs + 1 runs the numpy code

CDEF = """
typedef struct {
    long long d, ti, ninputs;
    const long long *inputs;
    long long max_input;
    double lam, ds, prior, clip, max_change, max_trace;
    double *s;
    double *mean, *var, *sd, *w, *P;
    int err;
} ol_model;
double ol_predict(ol_model *m, const double *x, long long n, long long last);
int ol_learn(ol_model *m, const double *x, long long n, long long last, double y);
typedef struct {
    ol_model *m;
    long long rowlen, k, nm, last, use_batch, use_speed;
    double ed;
    double *g;
    double *row;
    long long ninputs;
    const long long *inputs;
    long long max_input;
    double limit;
    ol_model *twin;
    long long ne;
    double *e;
    double eta, ed2, edv;
} cs_stack;
int cs_learn(cs_stack *c, const double *ctx, long long n, double batch, double speed, double y);
double cs_predict(cs_stack *c, const double *win, long long n, double batch, double speed);
"""


class Kernel:
    """The loaded library: ``ffi`` (cffi), ``lib``, its ``learn`` / ``predict`` (``ol_learn`` / ``ol_predict``)
    and ``view``: a C-contiguous float64 array as the ``double[]`` they take, without a copy (ValueError if it is
    not contiguous; the caller checks the dtype)."""

    def __init__(self, ffi: Any, lib: Any, path: Path) -> None:
        self.ffi, self.lib, self.path = ffi, lib, path
        self.learn, self.predict = lib.ol_learn, lib.ol_predict
        self.stack_learn, self.stack_predict = lib.cs_learn, lib.cs_predict
        backend = getattr(ffi, "_backend", None)  # cffi's C backend: its from_buffer without ffi's Python wrapper
        if backend is not None and hasattr(backend, "from_buffer"):
            self.view = functools.partial(backend.from_buffer, ffi.typeof("double[]"))
        else:  # pragma: no cover - another cffi
            self.view = functools.partial(ffi.from_buffer, "double[]")


_lock = threading.Lock()
_state: dict[str, Any] = {"done": False, "kernel": None, "reason": ""}


def kernel() -> Kernel | None:
    """The compiled kernel (built and loaded on the first call), or None: the numpy code runs (see :func:`status`)."""
    if _state["done"]:
        return _state["kernel"]
    with _lock:
        if not _state["done"]:
            k, reason = _load()
            _state.update(kernel=k, reason=reason, done=True)
            if k is None:
                log.warning("online linear model: numpy code (no compiled kernel: %s)", reason)
            else:
                log.info("online linear model: compiled kernel %s", k.path)
    return _state["kernel"]


def status() -> dict[str, str]:
    """``{"backend": "c" | "numpy", "reason": why numpy ('' for c), "path": the library ('' for numpy)}``."""
    k = kernel()
    path = "" if k is None else str(k.path)
    return {"backend": "numpy" if k is None else "c", "reason": _state["reason"], "path": path}


def reset_for_tests() -> None:
    """Forget the loaded kernel: the next :func:`kernel` call decides again (reads the environment again)."""
    with _lock:
        _state.update(done=False, kernel=None, reason="")


def _load() -> tuple[Kernel | None, str]:
    if os.environ.get(ENV_BACKEND, "").strip().lower() == "numpy":
        return None, f"{ENV_BACKEND}=numpy"
    try:
        import cffi  # noqa: PLC0415
    except ImportError:
        return None, "cffi is not installed"
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    for again in (False, True):
        try:
            path, built = _build(again)
        except (OSError, RuntimeError, KeyError, subprocess.SubprocessError) as exc:  # KeyError: no home (pwd entry)
            return None, f"{type(exc).__name__}: {exc}"
        try:
            lib = ffi.dlopen(str(path))
        except OSError as exc:
            if built or again:
                return None, f"cannot load {path}: {exc}"
            # a cached library that does not load (cut short by a power failure, another compiler's): built again
            log.warning("online linear kernel: cannot load the cached %s (%s): building it again", path, exc)
            continue
        return Kernel(ffi, lib, path), ""
    raise AssertionError("unreachable")  # pragma: no cover


def cache_dir() -> Path:
    """Where built libraries are kept (created with mode 0700; RuntimeError if others could write there)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "hybridstream" / "kernels"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(root)
    _check_ancestors(root)
    return root


def _check_ancestors(root: Path) -> None:
    """RuntimeError if another user could swap ``root`` (or a folder above it) for their own between the checks and
    the load: every folder above it, as given and resolved, is owned by this user or root and writable by no one
    else, unless sticky (as /tmp: others cannot rename what is not theirs there)."""
    if not hasattr(os, "getuid"):  # pragma: no cover - not POSIX
        return
    for parent in (*Path(os.path.abspath(root)).parents, *root.resolve().parents):
        st = parent.stat()
        if st.st_uid not in (0, os.getuid()):
            raise RuntimeError(f"{parent} (above {root}) is not owned by this user or root: not loading a library")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            mode = f"{stat.S_IMODE(st.st_mode):o}"
            raise RuntimeError(f"{parent} (above {root}) is writable by others (mode {mode}): not loading a library")


def _check_private(path: Path) -> None:
    """RuntimeError unless ``path`` is owned by this user and no one else can write it."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not owned by this user: not loading a library from it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = f"{stat.S_IMODE(st.st_mode):o}"
        raise RuntimeError(f"{path} is writable by others (mode {mode}): not loading a library from it")


def library_name() -> str:
    """The library's file name: a hash of the source, the flags and the platform."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join(FLAGS).encode())
    tag = f"{sys.platform}-{platform.machine()}-{8 * struct.calcsize('P')}bit"
    key.update(tag.encode())
    return f"online_linear_kernel-{key.hexdigest()[:16]}-{tag}.so"


def _build(again: bool = False) -> tuple[Path, bool]:
    """(the library in the cache directory, whether it was compiled now): compiled there first if missing, or
    ``again`` (atomically: built under a temporary name, written to disk, then renamed)."""
    root = cache_dir()
    path = root / library_name()
    if path.exists() and not again:
        _check_private(path)
        return path, False
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    _remove_stale_builds(root)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=root)
    os.close(fd)
    try:
        done = subprocess.run(  # noqa: S603 (the compiler found on PATH, fixed arguments)
            [cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o700)
        _fsync(tmp)  # on disk before the rename: a power cut must not leave an empty library under the real name
        os.replace(tmp, path)
        _fsync(root)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _check_private(path)
    return path, True


def _remove_stale_builds(root: Path) -> None:
    """Remove the temporary files of builds that were killed (SIGKILL: no cleanup ran): older than any live build."""
    now = time.time()
    for old in root.glob(".build-*.so"):
        try:
            if now - old.stat().st_mtime > 2 * BUILD_TIMEOUT_S:
                old.unlink()
        except OSError:  # another process removed it meanwhile
            pass


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
