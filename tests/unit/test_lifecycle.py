from orchestrator.domain.lifecycle import ACTIVE, TRANSITIONS, RunStatus, can_transition, sources_of, stamps


def test_terminal_statuses_have_no_way_out():
    for status in RunStatus:
        if status.is_terminal:
            assert status not in TRANSITIONS


def test_cancelling_only_leads_to_cancelled():
    assert sources_of(RunStatus.CANCELLED) == {RunStatus.CANCELLING}
    assert TRANSITIONS[RunStatus.CANCELLING] == {RunStatus.CANCELLED}


def test_requires_action_resumes_through_queued_only():
    assert can_transition(RunStatus.REQUIRES_ACTION, RunStatus.QUEUED)
    assert not can_transition(RunStatus.REQUIRES_ACTION, RunStatus.IN_PROGRESS)
    assert not can_transition(RunStatus.COMPLETED, RunStatus.QUEUED)


def test_the_active_set_is_the_contracts():
    assert {s.value for s in ACTIVE} == {"queued", "in_progress", "requires_action", "cancelling"}


def test_completion_clears_expiry_and_stamps_completed_at():
    assert stamps(RunStatus.COMPLETED, 42) == {
        "completed_at": 42,
        "expires_at": None,
        "required_action": None,
    }
    assert stamps(RunStatus.IN_PROGRESS, 7) == {"started_at": 7}
