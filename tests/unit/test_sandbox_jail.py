"""The jail's command line, the runtime's mounts and the limits' settings, without starting anything."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.sandbox import seccomp
from orchestrator.sandbox.interpreter import Interpreter, JailFailure
from orchestrator.sandbox.jail import driver_source, environment, host_view, jail_command
from orchestrator.sandbox.limits import Limits, describe_bytes
from orchestrator.sandbox.runtime import Mount, MountKind, Runtime, runtime_from
from orchestrator.sandbox.seccomp import INSTRUCTION
from orchestrator.settings import Settings

LIMITS = Limits(
    timeout_seconds=5,
    cpu_seconds=4,
    memory_bytes=256 << 20,
    processes=8,
    file_bytes=1 << 20,
    disk_bytes=8 << 20,
    output_bytes=4096,
    return_bytes=4 << 20,
)
RUNTIME = Runtime(
    "/opt/py/bin/python3.11",
    "3.11",
    (
        Mount(MountKind.RO_BIND, "/usr/lib", "/usr/lib"),
        Mount(MountKind.SYMLINK, "/lib", "usr/lib"),
        Mount(MountKind.RO_BIND, "/opt/py", "/opt/py"),
        Mount(MountKind.HIDE, "/opt/py/lib/python3.11/site-packages"),
    ),
)


def command() -> list[str]:
    return jail_command(
        RUNTIME, LIMITS, info_fd=7, request_fd=8, reply_fd=9, bwrap="/usr/bin/bwrap", seccomp_fd=10
    )


def options(argv: list[str], flag: str) -> list[list[str]]:
    """The arguments following each occurrence of a bwrap option."""
    width = {"--ro-bind": 2, "--symlink": 2, "--setenv": 2, "--dev-bind": 2}.get(flag, 1)
    return [argv[i + 1 : i + 1 + width] for i, arg in enumerate(argv) if arg == flag]


def test_the_jail_unshares_everything_and_keeps_no_privilege():
    argv = command()
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent"):
        assert flag in argv
    assert "--new-session" in argv and options(argv, "--cap-drop") == [["ALL"]]
    assert options(argv, "--uid") == [["1000"]] and options(argv, "--gid") == [["1000"]]
    assert "--share-net" not in argv and "--cap-add" not in argv


def test_the_environment_is_cleared_and_only_harmless_variables_are_set():
    argv = command()
    assert argv.index("--clearenv") < argv.index("--setenv")
    names = {name for name, _ in options(argv, "--setenv")}
    assert names == set(environment(RUNTIME))
    assert not {name for name in names if any(word in name for word in ("URL", "KEY", "TOKEN", "SECRET"))}
    assert dict(options(argv, "--setenv"))["PATH"] == "/opt/py/bin"


def test_nothing_of_the_host_is_writable_and_only_the_runtime_is_shown():
    argv = command()
    assert "--bind" not in argv and "--dev-bind" not in argv
    assert options(argv, "--ro-bind") == [["/usr/lib", "/usr/lib"], ["/opt/py", "/opt/py"]]
    assert options(argv, "--symlink") == [["usr/lib", "/lib"]]
    hidden = argv.index("/opt/py/lib/python3.11/site-packages")
    assert argv[hidden - 3 : hidden + 1] == [
        "--size",
        "4096",
        "--tmpfs",
        "/opt/py/lib/python3.11/site-packages",
    ]
    assert options(argv, "--remount-ro")[-1] == ["/"]


def test_tmp_mnt_data_and_dev_shm_are_tmpfs_of_the_disk_limit_and_code_starts_in_mnt_data():
    argv = command()
    sized = [argv[i + 3] for i, arg in enumerate(argv) if arg == "--size" and argv[i + 1] == str(8 << 20)]
    assert sized == ["/tmp", "/dev/shm", "/mnt/data"]
    assert options(argv, "--chdir") == [["/mnt/data"]]
    assert options(argv, "--proc") == [["/proc"]] and options(argv, "--dev") == [["/dev"]]


def test_dev_is_read_only_but_for_its_sized_shm_and_the_system_call_filter_is_loaded():
    argv = command()
    assert argv.index("--dev") < argv.index("/dev/shm")
    assert argv[argv.index("/dev/shm") + 1 : argv.index("/dev/shm") + 3] == ["--remount-ro", "/dev"]
    assert options(argv, "--seccomp") == [["10"]]


def test_the_driver_runs_isolated_on_the_runtime_with_its_pipes_and_limits():
    argv = command()
    start = argv.index("/opt/py/bin/python3.11")
    assert argv[start : start + 4] == ["/opt/py/bin/python3.11", "-I", "-u", "-c"]
    assert argv[start + 4] == driver_source()
    assert argv[start + 5 : start + 7] == ["8", "9"]
    config = json.loads(argv[start + 7])
    assert config["rlimits"] == {
        "RLIMIT_AS": 256 << 20,
        "RLIMIT_NPROC": 9,
        "RLIMIT_FSIZE": 1 << 20,
        "RLIMIT_NOFILE": 1024,
        "RLIMIT_CORE": 0,
    }
    assert config["return_bytes"] == 4 << 20
    assert config["return_files"] == 50
    assert options(argv, "--info-fd") == [["7"]]


def test_the_driver_needs_nothing_but_the_standard_library():
    imports = {
        line.split()[1].split(".")[0] for line in driver_source().splitlines() if line.startswith("import ")
    }
    assert imports <= set(__import__("sys").stdlib_module_names)


# The runtime's mounts, on fake layouts


def layout(root, *paths: str) -> None:
    for path in paths:
        target = root / path.lstrip("/")
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")


def facts(
    root, *, prefix: str, base: str, executable: str, packages: list[str], base_packages: list[str]
) -> dict:
    return {
        "executable": str(root / executable.lstrip("/")),
        "prefix": str(root / prefix.lstrip("/")),
        "base_prefix": str(root / base.lstrip("/")),
        "version": "3.11",
        "stdlib": [str(root / "py/lib/python3.11")] * 2,
        "packages": [str(root / p.lstrip("/")) for p in packages],
        "base_packages": [str(root / p.lstrip("/")) for p in base_packages],
        "libpython": [str(root / "py/lib"), "libpython3.11.so.1.0"],
    }


def by_kind(runtime: Runtime, kind: MountKind, root) -> set[str]:
    return {
        os.path.relpath(m.target, root)
        for m in runtime.mounts
        if m.kind is kind and m.target.startswith(str(root))
    }


def test_the_default_runtime_shows_its_standard_library_and_hides_its_site_packages(tmp_path):
    layout(tmp_path, "py/bin/python3.11", "py/lib/python3.11/os.py", "py/lib/python3.11/site-packages/")
    layout(tmp_path, "py/lib/libpython3.11.so.1.0", "py/secret.txt")
    site = "py/lib/python3.11/site-packages"
    runtime = runtime_from(
        facts(
            tmp_path,
            prefix="py",
            base="py",
            executable="py/bin/python3.11",
            packages=[site],
            base_packages=[site],
        ),
        explicit=False,
    )
    assert by_kind(runtime, MountKind.RO_BIND, tmp_path) == {
        "py/lib/python3.11",
        "py/bin/python3.11",
        "py/lib/libpython3.11.so.1.0",
    }
    assert by_kind(runtime, MountKind.HIDE, tmp_path) == {site}


def test_a_venv_shows_itself_and_the_symlinks_to_its_interpreter_and_hides_the_base_packages(tmp_path):
    layout(tmp_path, "py/bin/python3.11", "py/lib/python3.11/os.py", "py/lib/python3.11/site-packages/")
    layout(tmp_path, "py/lib/libpython3.11.so.1.0", "venv/lib/python3.11/site-packages/")
    (tmp_path / "py/bin/python3").symlink_to("python3.11")
    (tmp_path / "venv/bin").mkdir()
    (tmp_path / "venv/bin/python").symlink_to(tmp_path / "py/bin/python3")
    runtime = runtime_from(
        facts(
            tmp_path,
            prefix="venv",
            base="py",
            executable="venv/bin/python",
            packages=["venv/lib/python3.11/site-packages"],
            base_packages=["py/lib/python3.11/site-packages"],
        ),
        explicit=True,
    )
    assert by_kind(runtime, MountKind.RO_BIND, tmp_path) == {
        "venv",
        "py/lib/python3.11",
        "py/bin/python3.11",
        "py/lib/libpython3.11.so.1.0",
    }
    assert by_kind(runtime, MountKind.SYMLINK, tmp_path) == {"py/bin/python3"}
    assert by_kind(runtime, MountKind.HIDE, tmp_path) == {"py/lib/python3.11/site-packages"}


def test_an_explicit_interpreter_that_is_not_a_venv_keeps_its_packages(tmp_path):
    layout(tmp_path, "py/bin/python3.11", "py/lib/python3.11/site-packages/", "py/lib/libpython3.11.so.1.0")
    site = "py/lib/python3.11/site-packages"
    runtime = runtime_from(
        facts(
            tmp_path,
            prefix="py",
            base="py",
            executable="py/bin/python3.11",
            packages=[site],
            base_packages=[site],
        ),
        explicit=True,
    )
    assert by_kind(runtime, MountKind.HIDE, tmp_path) == set()


def test_the_system_libraries_are_shown_read_only():
    runtime = runtime_from(
        {
            "executable": "/nonexistent/python",
            "prefix": "/nonexistent",
            "base_prefix": "/nonexistent",
            "version": "3.11",
            "stdlib": [],
            "packages": [],
            "base_packages": [],
            "libpython": None,
        },
        explicit=False,
    )
    shown = {m.target for m in runtime.mounts}
    assert {path for path in ("/usr/lib", "/lib", "/etc/ld.so.cache") if os.path.lexists(path)} <= shown
    assert not {"/etc", "/home", "/root", "/usr", "/usr/bin", "/work"} & shown


def test_a_runtime_behind_a_private_home_is_blocked_there_and_a_readable_one_is_not():
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # under /tmp (1777): pytest's own directory is 0700
    try:
        top.chmod(0o755)
        layout(
            top, "home/py/bin/python3.11", "home/py/lib/python3.11/os.py", "home/py/lib/libpython3.11.so.1.0"
        )
        site = "home/py/lib/python3.11/site-packages"
        found = facts(
            top,
            prefix="home/py",
            base="home/py",
            executable="home/py/bin/python3.11",
            packages=[site],
            base_packages=[site],
        )
        found["stdlib"] = [str(top / "home/py/lib/python3.11")] * 2
        found["libpython"] = [str(top / "home/py/lib"), "libpython3.11.so.1.0"]
        assert runtime_from(found, explicit=False).blocked == ()
        (top / "home").chmod(0o700)
        assert runtime_from(found, explicit=False).blocked == (str(top / "home"),)
    finally:
        shutil.rmtree(top)


def test_as_root_the_jail_starts_as_nobody_in_a_view_where_only_the_runtime_shows_through_the_home():
    runtime = Runtime(
        "/root/py/bin/python3.11",
        "3.11",
        (
            Mount(MountKind.RO_BIND, "/usr/lib", "/usr/lib"),
            Mount(MountKind.RO_BIND, "/root/py/lib/python3.11", "/root/py/lib/python3.11"),
            Mount(MountKind.RO_BIND, "/root/py/bin/python3.11", "/root/py/bin/python3.11"),
            Mount(MountKind.HIDE, "/root/py/lib/python3.11/site-packages"),
        ),
    )
    runtime.__dict__["blocked"] = ("/root",)  # as _blocking finds it where /root is 0700
    argv = host_view(runtime, bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv")
    assert argv[:6] == ["/usr/bin/bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--die-with-parent"]
    assert options(argv, "--tmpfs") == [["/root"]]
    assert options(argv, "--dir") == [["/root/py"], ["/root/py/lib"], ["/root/py/bin"]]
    assert options(argv, "--ro-bind") == [
        ["/root/py/lib/python3.11", "/root/py/lib/python3.11"],
        ["/root/py/bin/python3.11", "/root/py/bin/python3.11"],
    ]
    assert argv[-5:] == ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


# The system call filter


def decoded(program: bytes) -> list[tuple[int, int, int, int]]:
    return [INSTRUCTION.unpack_from(program, offset) for offset in range(0, len(program), INSTRUCTION.size)]


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_refuses_io_uring_and_the_listed_calls_and_every_foreign_abi(machine):
    program = decoded(seccomp.program(cgroup=False, machine=machine))
    column = list(seccomp.ARCHITECTURES).index(machine)
    assert program[0] == (0x20, 0, 0, 4) and program[1][3] == seccomp.ARCHITECTURES[machine]
    assert program[2] == (0x06, 0, 0, 0x00050000 | errno.ENOSYS)
    refusals = {
        compare[3]: verdict[3]
        for compare, verdict in zip(program, program[1:], strict=False)
        if compare[0] == 0x15 and compare[1:3] == (0, 1)
    }
    assert refusals[425] == refusals[426] == refusals[427] == 0x00050000 | errno.ENOSYS
    assert refusals[seccomp.CALLS["memfd_create"][column]] == 0x00050000 | errno.EPERM
    assert refusals[seccomp.CALLS["keyctl"][column]] == 0x00050000 | errno.EPERM
    assert len(refusals) == len(seccomp.CALLS)
    assert program[-1] == (0x06, 0, 0, 0x7FFF0000)


def test_with_a_cgroup_counting_memory_memfd_is_allowed():
    refused = seccomp.refused(cgroup=True)
    assert "memfd_create" not in refused and "io_uring_setup" in refused and "shmget" in refused
    assert "memfd_create" in seccomp.refused(cgroup=False)


def test_an_unknown_architecture_has_no_filter():
    with pytest.raises(seccomp.Unsupported):
        seccomp.program(cgroup=False, machine="sparc64")


# Limits from settings


def test_sizes_take_units_and_limits_come_from_the_settings():
    settings = Settings(
        code_memory_bytes="200MiB", code_file_bytes="1GB", code_output_bytes=4096, code_disk_bytes="64 KiB"
    )
    limits = Limits.from_settings(settings)
    assert (limits.memory_bytes, limits.file_bytes, limits.output_bytes) == (200 << 20, 10**9, 4096)
    assert limits.disk_bytes == 64 << 10
    assert Limits.from_settings(Settings()).timeout_seconds == 60


def test_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CODE_MEMORY_BYTES", "512MiB")
    monkeypatch.setenv("ORCHESTRATOR_CODE_PROCESSES", "3")
    monkeypatch.setenv("ORCHESTRATOR_CODE_SESSION_IDLE_SECONDS", "10")
    settings = Settings()
    assert (int(settings.code_memory_bytes), settings.code_processes) == (512 << 20, 3)
    assert settings.code_session_idle_seconds == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code_memory_bytes", "lots"),
        ("code_memory_bytes", 0),
        ("code_processes", 0),
        ("code_timeout_seconds", 0),
    ],
)
def test_a_nonsensical_limit_is_refused_at_start_up(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


@pytest.mark.parametrize(
    ("count", "text"), [(100, "100 bytes"), (4096, "4 KiB"), (256 << 20, "256 MiB"), (3 << 29, "1.5 GiB")]
)
def test_sizes_are_described_as_people_write_them(count, text):
    assert describe_bytes(count) == text


def test_a_missing_bwrap_is_a_jail_failure_that_leaves_no_descriptor_open():
    with pytest.raises(JailFailure):
        Interpreter(RUNTIME, LIMITS, bwrap="/nonexistent/bwrap").start()
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(JailFailure, match="cannot start bwrap"):
        Interpreter(RUNTIME, LIMITS, bwrap="/nonexistent/bwrap").start()
    assert sorted(os.listdir("/proc/self/fd")) == before
