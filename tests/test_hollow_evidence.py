"""Evidence that reads as clean but says nothing: a failed scan, a hidden failure. It never lets a release through.

Each end-to-end test drives the running app over HTTP against the sandbox (signed webhook in, githubkit out)
and reads what the app stored for the deployment; the parser cases read the bytes directly.
"""

from __future__ import annotations

import io
import json

import pytest

from scorer.evidence import Availability
from scorer.parsers import ArtifactRejected
from scorer.parsers.security import parse_sarif
from tests.scenarios import LABEL, REPO, decide, release_state, stored, zipped
from tests.world import running_world

UNREAD = (Availability.INCOMPLETE, Availability.UNAVAILABLE)
TOOL = {"driver": {"name": "scanner", "rules": [{"id": "R1", "properties": {"security-severity": "9.8"}}]}}


def _ci_run_id(state: object) -> int:
    _, release = state.deployment(LABEL)  # type: ignore[attr-defined]
    return next(r.id for r in state.repo(REPO).workflow_runs.values()  # type: ignore[attr-defined]
                if r.head_sha == release.sha and r.name == "CI")


@pytest.mark.parametrize("run", [
    {"tool": TOOL},  # results absent: SARIF 2.1.0 3.14.23 says it defaults to null
    {"tool": TOOL, "results": None},  # the tool failed to start or to analyse
])
def test_a_sarif_run_without_a_results_array_is_a_failed_scan_not_a_clean_one(run: dict[str, object]) -> None:
    """Before the fix a run whose tool failed (results null or absent) counted as a scan that found nothing."""
    data = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "results": []}, run]}).encode()
    with pytest.raises(ArtifactRejected, match="results are null or absent"):
        parse_sarif(lambda: io.BytesIO(data), "scan.sarif")
    # the deeply nested form goes to the streaming reader: it refuses the same log
    deep = "[" * 3000 + "]" * 3000
    nested = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "properties": {"x": "@"}}, run]})
    nested = nested.replace('"@"', deep).encode()
    with pytest.raises(ArtifactRejected, match="results are null or absent"):
        parse_sarif(lambda: io.BytesIO(nested), "scan.sarif")


def test_a_sarif_run_with_an_empty_results_array_is_still_a_clean_scan() -> None:
    data = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "results": []}]}).encode()
    assert sum(parse_sarif(lambda: io.BytesIO(data), "scan.sarif").counts.values()) == 0


def test_a_scan_whose_tool_failed_never_approves(database_url: str) -> None:
    """The release's SARIF artifact records a scanner that never analysed (``results`` absent).

    Before the fix the report read as a clean scan: the security part was complete and the release approved.
    """
    state = release_state()
    failed_scan = {"version": "2.1.0", "runs": [{"tool": TOOL, "invocations": [{"executionSuccessful": True}]}]}
    state.add_artifact(REPO, _ci_run_id(state), "security-reports", zipped({"scan.sarif": json.dumps(failed_scan)}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.security.availability in UNREAD
    [refused] = [r for r in ev.refused if r.path.endswith("scan.sarif")]
    assert "results are null or absent" in refused.reason
