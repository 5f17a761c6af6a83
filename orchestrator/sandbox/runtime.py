"""The Python the jail runs code with, and exactly which host paths the jail must show to run it.

ORCHESTRATOR_CODE_PYTHON names an interpreter; unset, it is this host's Python runtime (the one under the
project's virtualenv). The interpreter is asked once, on the host, where its parts live; the jail then
shows, read-only and at their own paths: the executable (and the symlinks leading to it), the standard
library, libpython, the system's shared libraries (/usr/lib, /lib*, /etc/ld.so.cache) and, for a venv,
the venv (its site-packages is the package set). The host runtime's own site-packages, where the
product and its dependencies are installed, is covered by an empty tmpfs, so neither they nor anything
else on the host is visible; the default runtime therefore has the standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum

SYSTEM_LIB_DIRS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")
ROOT_LIB_LINKS = ("/lib", "/lib64", "/lib32", "/libx32")
LOADER_CACHE = "/etc/ld.so.cache"

PROBE = r"""
import json, site, sys, sysconfig
base = {"base": sys.base_prefix, "platbase": sys.base_prefix, "installed_base": sys.base_prefix}
shared = sysconfig.get_config_var("Py_ENABLE_SHARED")
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "version": "%d.%d" % sys.version_info[:2],
    "stdlib": [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")],
    "packages": [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()],
    "base_packages": [
        sysconfig.get_path("purelib", vars=base), sysconfig.get_path("platlib", vars=base),
        *site.getsitepackages([sys.base_prefix]),
    ],
    "libpython": [sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")] if shared else None,
}))
"""


class MountKind(StrEnum):
    RO_BIND = "ro-bind"  # a host path, read-only, at the same path
    SYMLINK = "symlink"  # a symlink with the host's target
    HIDE = "hide"  # an empty tmpfs over a path a bind would otherwise show


@dataclass(frozen=True)
class Mount:
    kind: MountKind
    target: str
    source: str | None = None  # the bound path, or the symlink's target


@dataclass(frozen=True)
class Runtime:
    executable: str
    version: str
    mounts: tuple[Mount, ...]

    @property
    def bin_dir(self) -> str:
        return os.path.dirname(self.executable)

    @functools.cached_property
    def blocked(self) -> tuple[str, ...]:
        """The directories another user cannot pass through on the way to a path the jail binds (a home
        directory of mode 700 holding a pyenv, say): as root, the jail's `nobody` needs a way around them
        (jail.host_view)."""
        found = {_blocking(mount.source) for mount in self.mounts if mount.kind is MountKind.RO_BIND}
        found.discard(None)
        return tuple(sorted(d for d in found if not any(d.startswith(o.rstrip("/") + "/") for o in found)))


class RuntimeUnusable(Exception):
    """The configured interpreter cannot be used."""


def resolve_runtime(python: str | None) -> Runtime:
    """Ask the interpreter (ORCHESTRATOR_CODE_PYTHON, else this host's runtime) where its parts live."""
    executable = python or default_python()
    try:
        result = subprocess.run(
            [executable, "-I", "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeUnusable(f"cannot run the sandbox's Python {executable!r}: {error}") from None
    return runtime_from(json.loads(result.stdout), explicit=python is not None)


def default_python() -> str:
    """This host's Python runtime: the interpreter behind the project's venv, not the venv itself."""
    return getattr(sys, "_base_executable", None) or sys.executable


def runtime_from(facts: dict, *, explicit: bool) -> Runtime:
    """The mounts for an interpreter described by PROBE's output.

    An explicitly configured interpreter that is not a venv keeps its site-packages (that is its package
    set); otherwise the base runtime's site-packages is hidden.
    """
    binds: list[str] = [path for path in SYSTEM_LIB_DIRS if os.path.isdir(path)]
    mounts: list[Mount] = [Mount(MountKind.RO_BIND, path, path) for path in binds]
    mounts += _root_lib_links()
    venv = facts["prefix"] != facts["base_prefix"]
    keep = set(facts["packages"]) if explicit or venv else set()
    for path in ([facts["prefix"]] if venv else []) + facts["stdlib"] + sorted(keep if explicit else ()):
        _bind(path, binds, mounts)
    mounts += _chain(facts["executable"], binds)
    if facts["libpython"]:
        mounts += _chain(os.path.join(*facts["libpython"]), binds)
    if os.path.exists(LOADER_CACHE):
        mounts.append(Mount(MountKind.RO_BIND, LOADER_CACHE, LOADER_CACHE))
    hidden = {p for p in facts["base_packages"] + facts["packages"] if p not in keep and _inside(p, binds)}
    mounts += [Mount(MountKind.HIDE, path) for path in sorted(hidden) if os.path.isdir(path)]
    return Runtime(facts["executable"], facts["version"], tuple(mounts))


def _blocking(path: str) -> str | None:
    """The first directory above `path` that others may not search (no o+x), if any."""
    parts = path.split("/")[1:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/" + "/".join(parts[:depth])
        try:
            mode = os.stat(directory).st_mode
        except OSError:
            return None
        if not mode & stat.S_IXOTH:
            return directory
    return None


def _root_lib_links() -> list[Mount]:
    """/lib and friends: symlinks into /usr on merged-/usr systems, directories elsewhere."""
    mounts = []
    for path in ROOT_LIB_LINKS:
        if os.path.islink(path):
            mounts.append(Mount(MountKind.SYMLINK, path, os.readlink(path)))
        elif os.path.isdir(path):
            mounts.append(Mount(MountKind.RO_BIND, path, path))
    return mounts


def _bind(path: str, binds: list[str], mounts: list[Mount]) -> None:
    if os.path.exists(path) and not _inside(path, binds):
        binds.append(path)
        mounts.append(Mount(MountKind.RO_BIND, path, path))


def _chain(path: str, binds: list[str]) -> list[Mount]:
    """The symlinks leading from `path` to a file, and the file, except those a bind already shows."""
    mounts = []
    for _ in range(40):  # the kernel's own limit on symlink hops
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        if not _inside(path, binds):
            mounts.append(Mount(MountKind.SYMLINK, path, target))
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    if not _inside(path, binds):
        mounts.append(Mount(MountKind.RO_BIND, path, path))
    return mounts


def _inside(path: str, directories: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)
