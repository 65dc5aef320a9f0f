"""Big changes must not look small: GitHub's compare lists at most 300 files.

Past 300 the full list comes from the pull request's files (up to 3,000) when that pull request holds the
whole release; without one (or with one that holds only part of the release) the change
evidence says it is a lower bound ("≥ 300 files") and the change rules never pass on the part they saw.
"""

from __future__ import annotations

import httpx

from github_app.sandbox import SandboxState, generate_key_pair, running_sandbox
from tests.scenarios import APP_ID, INSTALLATION, LABEL, REPO, cobertura, decide, junit, stored, zipped
from tests.world import running_world


def big_change_state(files: int, *, pull_request: bool, lines_per_file: int = 3) -> SandboxState:
    """A clean release whose one commit since the last good deployment changes ``files`` files."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    state.add_repo(REPO, default_branch="main")
    base = state.add_commit(REPO, message="Release 1.0", author="alice", branch="main",
                            files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    head = state.add_commit(REPO, message="Reformat everything", author="bob", branch="main", parents=[base.sha],
                            files=[{"filename": f"api/module_{i:04d}.py", "additions": lines_per_file}
                                   for i in range(files)])  # fmt: skip
    previous = state.add_deployment(REPO, base.sha, "production", creator="alice", waiting=False)
    state.add_deployment_status(REPO, previous.id, "success")
    for name in ("build", "lint"):
        state.add_check_run(REPO, head.sha, name, conclusion="success")
    ci = state.add_workflow_run(REPO, head.sha, name="CI")
    state.add_artifact(REPO, ci.id, "test-results", zipped({"junit.xml": junit(50), "coverage.xml": cobertura(0.9)}))
    state.set_collaborator(REPO, "dora", "write")
    if pull_request:
        state.add_pull_request(REPO, 9, head_sha=head.sha, head_ref="reformat", base_ref="main", user="bob")
        state.repo(REPO).pulls[9].base_sha = base.sha
    dep = state.add_deployment(REPO, head.sha, "production", creator="dora", ref="main")
    dep.name = LABEL
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state


def finding(decision: dict, rule_id: str) -> dict:
    return next(f for f in decision["findings"] if f["rule_id"] == rule_id)


def test_a_truncated_compare_without_a_pull_request_is_a_lower_bound_and_never_passes(database_url):
    # 450 files of 3 lines: 1,350 lines, above GNG-CHG-001's 1,000; the 300 files GitHub lists hold only 900
    with running_world(database_url, big_change_state(450, pull_request=False)) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        summary = world.check_run(LABEL).output["summary"]
    ch = ev.change
    assert ch.files_truncated and ch.files_changed == 300
    assert "≥ 300 files" in ch.reason and "≥ 300 files" in summary
    assert finding(decision, "GNG-CHG-001")["status"] == "unknown"  # 900 seen, the rest unknown: never passed
    assert finding(decision, "GNG-CHG-002")["status"] == "failed" and "at least 300" in finding(
        decision, "GNG-CHG-002")["message"]
    assert gate.answer != "approved"


def test_a_truncated_compare_reads_the_full_list_from_the_pull_request(database_url):
    with running_world(database_url, big_change_state(450, pull_request=True)) as world:
        decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        pages = world.state.calls("GET", "/repos/acme/api/pulls/9/files")
    ch = ev.change
    assert not ch.files_truncated and ch.files_changed == 450 and ch.additions == 1350
    assert len(pages) == 5  # 100 a page
    assert finding(decision, "GNG-CHG-001")["status"] == "failed"  # 1,350 lines, all of them counted
    assert any(p.source == "github.pulls.files" and "#9" in p.detail for p in ch.provenance)


def test_a_pull_request_past_3000_files_is_still_a_lower_bound(database_url):
    with running_world(database_url, big_change_state(3100, pull_request=True, lines_per_file=1)) as world:
        gate = decide(world, LABEL)
        ev, _, _ = stored(world, LABEL)
    assert ev.change.files_truncated and ev.change.files_changed == 3000
    assert "≥ 3000 files" in ev.change.reason
    assert gate.answer != "approved"


def test_the_sandbox_caps_compare_at_300_and_pull_files_at_3000():
    state = big_change_state(3100, pull_request=True, lines_per_file=1)
    _, dep = state.deployment(LABEL)
    base = state.repo(REPO).pulls[9].base_sha
    with running_sandbox(state) as sandbox:
        headers = {"Authorization": f"token {token_for_state(sandbox.url, state)}"}
        compared = httpx.get(f"{sandbox.url}/repos/{REPO}/compare/{base}...{dep.sha}", headers=headers).json()
        first = httpx.get(f"{sandbox.url}/repos/{REPO}/pulls/9/files", headers=headers)
        last = httpx.get(f"{sandbox.url}/repos/{REPO}/pulls/9/files", params={"per_page": 100, "page": 30},
                         headers=headers)  # fmt: skip
        beyond = httpx.get(f"{sandbox.url}/repos/{REPO}/pulls/9/files", params={"per_page": 100, "page": 31},
                           headers=headers)  # fmt: skip
    assert len(compared["files"]) == 300
    assert len(first.json()) == 30 and 'rel="next"' in first.headers["link"]  # 30 a page by default
    assert len(last.json()) == 100 and 'rel="next"' not in last.headers.get("link", "")
    assert beyond.json() == []


def token_for_state(url: str, state: SandboxState) -> str:
    from github_app.sandbox import make_app_jwt

    assert state.app is not None and state.app.private_key_pem
    jwt = make_app_jwt(state.app.private_key_pem, state.app.id, now=state.now())
    response = httpx.post(f"{url}/app/installations/{INSTALLATION}/access_tokens",
                          headers={"Authorization": f"Bearer {jwt}"})  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_a_pull_request_that_holds_only_part_of_the_release_leaves_the_list_a_lower_bound(database_url):
    """Two merges since the last good deployment: a migration, then a 450-file pull request based after it.

    The pull request's 450 files are more than the 300 the comparison lists, but they are not the release:
    the migration came in before the pull request's base. Before the fix its list was taken as the whole
    change, so the migration was never seen and the migration rule passed.
    """
    state = big_change_state(450, pull_request=True)
    repo = state.repo(REPO)
    _, dep = state.deployment(LABEL)
    base = repo.pulls[9].base_sha
    migration = state.add_commit(REPO, message="Drop the orders table", author="carol", branch="main", parents=[base],
                                 files=[{"filename": "db/migrations/0042_drop_orders.sql", "additions": 4}])  # fmt: skip
    repo.commits[dep.sha].parents = [migration.sha]  # the big change was written on top of the migration
    repo.pulls[9].base_sha = migration.sha
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    ch = ev.change
    assert ch.files_truncated, ch.reason  # the pull request does not cover the release: still a lower bound
    assert any(p.source == "github.pulls.files" and "outside this pull request" in p.detail for p in ch.provenance)
    migration_rule = next(f for f in decision["findings"] if "migration" in f["message"])
    assert migration_rule["status"] in ("failed", "unknown"), migration_rule  # never passed on part of the files
    assert gate.answer != "approved"
