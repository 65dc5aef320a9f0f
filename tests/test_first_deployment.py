"""A first deployment to an environment is measured from the merge base with the default branch, else the
previous release tag, else the parent commit; the evidence and the report say which."""

from __future__ import annotations

from github_app.sandbox import SandboxState, generate_key_pair
from scorer.evidence import Availability
from tests.scenarios import APP_ID, INSTALLATION, LABEL, REPO, cobertura, decide, junit, stored, zipped
from tests.world import running_world


def fresh_environment(*, branch_deploy: bool = False, release: bool = False) -> SandboxState:
    """main: c0 (v1.0 when ``release``), c1, c2; a deployment to staging, the environment's first."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    state.add_repo(REPO, default_branch="main")
    day = 86400
    c0 = state.add_commit(REPO, message="Release 1.0", author="alice", branch="main", date=state.now() - 9 * day,
                          files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    c1 = state.add_commit(REPO, message="Orders", author="bob", branch="main", date=state.now() - 5 * day,
                          files=[{"filename": "api/orders.py", "status": "added", "additions": 80}])  # fmt: skip
    head = state.add_commit(REPO, message="Paginate orders", author="bob", branch="main", date=state.now() - day,
                            files=[{"filename": "api/orders.py", "additions": 20, "deletions": 5}])  # fmt: skip
    if release:
        state.add_release(REPO, "v1.0", c0.sha, author="alice", created_at=state.now() - 8 * day)
    if branch_deploy:  # a feature branch off c1, deployed before it is merged
        f1 = state.add_commit(REPO, message="Try caching", author="carol", parents=[c1.sha], branch="cache",
                              files=[{"filename": "api/cache.py", "status": "added", "additions": 40}])  # fmt: skip
        head = state.add_commit(REPO, message="Tune cache", author="carol", parents=[f1.sha], branch="cache",
                                files=[{"filename": "api/cache.py", "additions": 4, "deletions": 2}])  # fmt: skip
    for name in ("build", "lint"):
        state.add_check_run(REPO, head.sha, name, conclusion="success")
    ci = state.add_workflow_run(REPO, head.sha, name="CI")
    state.add_artifact(REPO, ci.id, "test-results", zipped({"junit.xml": junit(50), "coverage.xml": cobertura(0.9)}))
    state.set_collaborator(REPO, "dora", "write")
    dep = state.add_deployment(REPO, head.sha, "staging", creator="dora", ref="cache" if branch_deploy else "main")
    dep.name = LABEL
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state


def _change(database_url: str, state: SandboxState):
    with running_world(database_url, state) as world:
        decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        summary = world.check_run(LABEL).output["summary"]
    return ev.change, decision, summary


def test_a_branch_deployed_first_is_measured_from_its_merge_base(database_url):
    state = fresh_environment(branch_deploy=True)
    c1 = state.repo(REPO).commits[state.repo(REPO).branches["cache"]].parents[0]
    merge_base = state.repo(REPO).commits[c1].parents[0]
    ch, decision, summary = _change(database_url, state)
    assert ch.availability is Availability.OK and ch.base_source == "merge_base"
    assert ch.base_sha == merge_base and ch.commits == 2
    assert [f.path for f in ch.files] == ["api/cache.py"]
    assert "merge base with main" in ch.reason and "merge base with main" in summary
    assert not [f for f in decision["findings"] if f["rule_id"].startswith("GNG-CHG") and f["status"] == "unknown"
                and "no earlier successful deployment" in f["message"]]  # fmt: skip


def test_a_default_branch_deployed_first_is_measured_from_the_previous_release(database_url):
    state = fresh_environment(release=True)
    ch, _, summary = _change(database_url, state)
    assert ch.base_source == "release_tag" and ch.base_sha == state.repo(REPO).tags["v1.0"]
    assert ch.commits == 2 and {f.path for f in ch.files} == {"api/orders.py"}
    assert "previous release v1.0" in ch.reason and "previous release v1.0" in summary


def test_without_a_release_the_parent_commit_is_the_base(database_url):
    state = fresh_environment()
    _, dep = state.deployment(LABEL)
    ch, decision, _ = _change(database_url, state)
    assert ch.base_source == "parent_commit" and ch.base_sha == state.repo(REPO).commits[dep.sha].parents[0]
    assert ch.commits == 1 and ch.additions == 20 and "parent commit" in ch.reason
    lines = next(f for f in decision["findings"] if f["rule_id"] == "GNG-CHG-001")
    assert lines["status"] == "passed"  # measured, not unknown
