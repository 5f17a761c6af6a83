"""Where the sandbox finds cgroups for its jails, on fake /proc and cgroup trees (plain directories)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.sandbox import cgroup
from orchestrator.sandbox.cgroup import CgroupUnavailable, JailCgroup


def fake_proc(tmp_path: Path, mounts: list[tuple[str, str, str, str]], memberships: list[str]) -> Path:
    """A /proc/self with `mounts` (point, root, type, super options) and `memberships` (cgroup lines)."""
    me = tmp_path / "proc" / "self"
    me.mkdir(parents=True)
    lines = [
        f"{n} 1 0:{n} {root} {point} rw,relatime - {kind} {kind} {options}"
        for n, (point, root, kind, options) in enumerate(mounts, start=30)
    ]
    (me / "mountinfo").write_text("\n".join(["22 1 8:1 / / rw - ext4 /dev/vda rw", *lines]) + "\n")
    (me / "cgroup").write_text("\n".join(memberships) + "\n")
    return tmp_path / "proc"


def unified(tmp_path: Path, own: str, *, controllers: str, subtree: str, procs: list[int]) -> Path:
    hierarchy = tmp_path / "unified"
    directory = hierarchy / own.lstrip("/")
    directory.mkdir(parents=True)
    (directory / "cgroup.controllers").write_text(controllers + "\n")
    (directory / "cgroup.subtree_control").write_text(subtree + "\n")
    (directory / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in procs))
    return fake_proc(tmp_path, [(str(hierarchy), "/", "cgroup2", "rw")], [f"0::{own}"])


def test_a_v2_cgroup_whose_memory_controller_is_handed_down_gets_the_jails(tmp_path):
    proc = unified(tmp_path, "/svc", controllers="cpu memory pids", subtree="memory", procs=[os.getpid()])
    assert cgroup.find("auto", proc=proc) == cgroup.Cgroups(tmp_path / "unified" / "svc", 2)


def test_a_v2_cgroup_holding_only_this_process_moves_it_into_a_leaf_and_hands_memory_down(tmp_path):
    proc = unified(tmp_path, "/svc", controllers="memory", subtree="", procs=[os.getpid()])
    found = cgroup.find("auto", proc=proc)
    parent = tmp_path / "unified" / "svc"
    assert found == cgroup.Cgroups(parent, 2)
    assert (parent / cgroup.LEAF / "cgroup.procs").read_text() == str(os.getpid())
    assert (parent / "cgroup.subtree_control").read_text() == "+memory"


def test_from_its_leaf_the_process_finds_the_same_parent_again(tmp_path):
    proc = unified(tmp_path, "/svc", controllers="memory", subtree="memory", procs=[])
    (tmp_path / "proc" / "self" / "cgroup").write_text(f"0::/svc/{cgroup.LEAF}\n")
    assert cgroup.find("auto", proc=proc).parent == tmp_path / "unified" / "svc"


def test_a_v2_cgroup_shared_with_other_processes_or_without_memory_is_not_used_and_says_why(tmp_path):
    shared = unified(tmp_path / "a", "/svc", controllers="memory", subtree="", procs=[os.getpid(), 1])
    with pytest.raises(CgroupUnavailable, match="holds other processes too"):
        cgroup.find("auto", proc=shared)
    undelegated = unified(tmp_path / "b", "/svc", controllers="cpu pids", subtree="", procs=[])
    with pytest.raises(CgroupUnavailable, match="memory controller is not delegated"):
        cgroup.find("auto", proc=undelegated)


def test_a_v1_memory_hierarchy_where_children_can_be_made_gets_the_jails(tmp_path):
    hierarchy = tmp_path / "memory"
    (hierarchy / "jobs" / "7").mkdir(parents=True)
    proc = fake_proc(
        tmp_path,
        [(str(tmp_path / "unified"), "/", "cgroup2", "rw"), (str(hierarchy), "/", "cgroup", "rw,memory")],
        ["4:memory:/jobs/7", "0::/"],
    )
    (tmp_path / "unified").mkdir()
    assert cgroup.find("auto", proc=proc) == cgroup.Cgroups(hierarchy / "jobs" / "7", 1)
    assert list((hierarchy / "jobs" / "7").iterdir()) == []  # the probe is gone


def test_a_mount_of_part_of_a_hierarchy_maps_the_process_path_under_it(tmp_path):
    hierarchy = tmp_path / "memory"
    (hierarchy / "7").mkdir(parents=True)
    proc = fake_proc(tmp_path, [(str(hierarchy), "/jobs", "cgroup", "rw,memory")], ["4:memory:/jobs/7"])
    assert cgroup.find("auto", proc=proc).parent == hierarchy / "7"


def test_off_and_no_hierarchy_at_all_are_unavailable(tmp_path):
    with pytest.raises(CgroupUnavailable, match="off"):
        cgroup.find("off", proc=tmp_path)
    proc = fake_proc(tmp_path, [], ["0::/"])
    with pytest.raises(CgroupUnavailable, match="no cgroup v2 hierarchy; no cgroup v1 memory hierarchy"):
        cgroup.find("required", proc=proc)


@pytest.mark.parametrize(
    "version, name, text",
    [
        (1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        (2, "memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\noom_group_kill 0\n"),
    ],
)
def test_the_kernels_kills_are_read_from_either_interface(tmp_path, version, name, text):
    jail = JailCgroup(tmp_path, version)
    assert jail.oom_kills() == 0
    (tmp_path / name).write_text(text)
    assert jail.oom_kills() == 3


@pytest.mark.parametrize(
    "version, files",
    [(1, ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]), (2, ["memory.max", "memory.swap.max"])],
)
def test_a_jails_limit_covers_swap_too(tmp_path, version, files):
    for name in files:
        (tmp_path / name).write_text("max\n")
    JailCgroup(tmp_path, version).limit(64 << 20)
    assert [(tmp_path / name).read_text() for name in files] == [
        str(64 << 20),
        str(0 if version == 2 else 64 << 20),
    ]


def test_the_empty_cgroups_of_jails_whose_host_died_are_removed_and_live_ones_kept(tmp_path):
    proc = unified(tmp_path, "/svc", controllers="memory", subtree="memory", procs=[os.getpid()])
    parent = tmp_path / "unified" / "svc"
    dead, live = parent / f"{cgroup.PREFIX}999999999-0", parent / f"{cgroup.PREFIX}{os.getpid()}-0"
    dead.mkdir()
    live.mkdir()
    cgroup.find("auto", proc=proc)
    assert (dead.exists(), live.exists()) == (False, True)
