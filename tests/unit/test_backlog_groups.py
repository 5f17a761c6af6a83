"""How a replay groups the stored events whose data it reads in one query."""

from orchestrator.services.backlog import GROUP_BYTES, SMALL_BYTES, _groups


def seqs(groups) -> list[list[int]]:
    return [[row[0] for row in group] for group in groups]


def test_small_events_share_a_read_and_a_large_one_is_read_alone():
    page = [(1, "a", 900), (2, "b", 1500), (3, "message", 40_000), (4, "c", 800), (5, "d", 700)]
    assert seqs(_groups(page)) == [[1, 2], [3], [4, 5]]


def test_a_group_stops_at_its_byte_budget():
    size = SMALL_BYTES - 1
    page = [(n, "e", size) for n in range(1, 30)]
    groups = seqs(_groups(page))
    assert all(len(g) * size <= GROUP_BYTES for g in groups)
    assert sum(groups, []) == list(range(1, 30))
