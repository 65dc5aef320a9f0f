"""The end-to-end gate: webhook in, evidence read from the sandbox, check run out, deployment answered."""

from __future__ import annotations

import pytest

from tests.world import World, running_world


@pytest.fixture
def world(database_url: str):
    with running_world(database_url) as w:
        yield w


def test_failing_tests_are_rejected_naming_the_failing_check(world: World):
    world.request_gate("failing-tests")
    gate = world.wait_decided("failing-tests")
    assert gate.answer == "rejected"
    run = world.check_run("failing-tests")
    assert run.conclusion == "failure"
    summary = run.output["summary"]
    assert "tests" in summary
    assert gate.reports and "evaluating" in gate.reports[0]
