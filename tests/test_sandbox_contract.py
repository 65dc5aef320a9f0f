"""Contract: every sandbox route answers as GitHub's OpenAPI description says, and githubkit parses it.

Each case drives the sandbox through a real githubkit client over HTTP. Every call the sandbox logs
during the case (including the implicit installation-token exchange) has its request body validated
against the operation's requestBody schema and its response body against the schema of the status
it answered, both with an OpenAPI 3.0 validator. The githubkit models must parse every response.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed
from jsonschema import ValidationError, validators
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, oas30_format_checker

from github_app.sandbox import SandboxState, running_sandbox
from github_app.sandbox.app import ROUTES
from github_app.sandbox.scenario import DEFAULT_CORPUS

FULL_SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "github" / "openapi" / "api.github.com.openapi.json"
# without the shared corpus, the vendored description cut down to the operations gonogo uses
TRIMMED_SPEC = Path(__file__).resolve().parent / "fixtures" / "corpus" / "github" / "openapi" / "api.github.com.openapi.trimmed.json"
SPEC_PATH = FULL_SPEC if FULL_SPEC.is_file() else TRIMMED_SPEC
DEMO = Path(__file__).resolve().parents[1] / "github_app" / "sandbox" / "scenarios" / "demo.yml"
INTERNAL_ROUTES = {"/_sandbox/blobs/{key}/{name}"}  # the pre-signed download host, not part of the API

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"GitHub's OpenAPI description is missing at "
                                                               f"{SPEC_PATH}")


# --------------------------------------------------------------------------- the OpenAPI side

def _nullable_enum(validator: Any, enums: list[Any], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    # GitHub's description marks fields like a check run's `conclusion` nullable but leaves null out of
    # their enum; OpenAPI 3.0.3 reads that as "null not allowed", yet GitHub sends null (an unfinished
    # check run has no conclusion). Honour the evident intent: nullable admits null.
    if instance is None and schema.get("nullable"):
        return
    if not any(instance == value and type(instance) is type(value) for value in enums):
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


READ_VALIDATOR = validators.extend(OAS30ReadValidator, {"enum": _nullable_enum})
WRITE_VALIDATOR = validators.extend(OAS30WriteValidator, {"enum": _nullable_enum})

class Spec:
    """GitHub's OpenAPI description, with operations found by concrete path and method."""

    def __init__(self, path: Path) -> None:
        self.doc = json.loads(path.read_text())
        self.components = self.doc["components"]
        self._patterns: list[tuple[re.Pattern[str], int, str]] = []
        for template in self.doc["paths"]:
            regex = "^" + re.sub(r"\\\{([^}]+)\\\}", lambda m: ".+" if m.group(1) == "path" else "[^/]+",
                                 re.escape(template)) + "$"
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            self._patterns.append((re.compile(regex), literal, template))

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        found = [(literal, template) for regex, literal, template in self._patterns
                 if regex.match(path) and method.lower() in self.doc["paths"][template]]
        assert found, f"{method} {path} is not an operation of GitHub's REST API"
        template = max(found)[1]
        return template, self.doc["paths"][template][method.lower()]

    def template_of(self, method: str, sandbox_template: str) -> str:
        concrete = re.sub(r"\{[^}]+\}", "x", sandbox_template)
        return self.operation(method, concrete)[0]

    def errors(self, schema: dict[str, Any], instance: Any, *, write: bool) -> list[str]:
        mapping = schema.get("discriminator", {}).get("mapping", {})
        if isinstance(instance, list) and "array" in mapping:
            # The contents operation discriminates on "type", which a directory listing (an array) lacks.
            schema = {"$ref": mapping["array"]}
        root = dict(schema)
        root["components"] = self.components  # lets "#/components/..." references resolve
        cls = WRITE_VALIDATOR if write else READ_VALIDATOR
        validator = cls(root, format_checker=oas30_format_checker)
        return [_describe(e) for e in validator.iter_errors(instance)]


def _describe(error: Any) -> str:
    """Say where an instance breaks the schema, descending into oneOf/anyOf alternatives."""
    where = "/".join(map(str, error.absolute_path)) or "<root>"
    if error.context:
        deepest = sorted(error.context, key=lambda e: len(e.absolute_path), reverse=True)[:3]
        return f"{where}: {error.validator} failed: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:160]}" for e in deepest)
    return f"{where}: {error.message[:300]}"


@pytest.fixture(scope="session")
def spec() -> Spec:
    return Spec(SPEC_PATH)


# --------------------------------------------------------------------------- the sandbox side

@dataclass
class World:
    state: SandboxState
    url: str
    private_key: str
    app_id: int
    installation_id: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    state = SandboxState.from_scenario(DEMO, corpus_root=DEFAULT_CORPUS)
    state.record_responses = True
    # Repositories of the installed organisation with the security features off, to meet GitHub's 403/404.
    legacy = state.add_repo("acme/legacy")
    legacy.code_scanning, legacy.dependabot, legacy.secret_scanning = "disabled", False, False
    state.add_commit("acme/legacy", message="Old code", branch="main")
    fresh = state.add_repo("acme/fresh")
    fresh.code_scanning = "no_analysis"
    state.add_commit("acme/fresh", message="New code", branch="main")
    shop = state.repo("acme/shop")
    shop.secret_scanning_alerts.append({"number": 1, "secret_type": "github_personal_access_token",
                                        "secret_type_display_name": "GitHub Personal Access Token"})
    assert state.app is not None and state.app.private_key_pem is not None
    with running_sandbox(state) as sandbox:
        yield World(state=state, url=sandbox.url, private_key=state.app.private_key_pem, app_id=state.app.id,
                    installation_id=4242)


def installation_client(world: World) -> GitHub[Any]:
    return GitHub(AppInstallationAuthStrategy(world.app_id, world.private_key, world.installation_id),
                  base_url=world.url + "/", auto_retry=False,
                  cache_strategy=MemCacheStrategy())


def app_client(world: World) -> GitHub[Any]:
    return GitHub(AppAuthStrategy(world.app_id, world.private_key), base_url=world.url + "/", auto_retry=False,
                  cache_strategy=MemCacheStrategy())


def sha(world: World, label: str) -> str:
    _, dep = world.state.deployment(label)
    return dep.sha


def parsed(response: Any) -> Any:
    """Make githubkit parse the body with its own model (raises if the shape is wrong)."""
    data = response.parsed_data
    assert data is not None or response.status_code == 204
    return data


async def expect_error(call: Awaitable[Any], status: int) -> None:
    with pytest.raises(RequestFailed) as info:
        await call
    assert info.value.response.status_code == status


# --------------------------------------------------------------------------- one case per route

Case = Callable[[World, GitHub[Any], GitHub[Any]], Awaitable[None]]
CASES: dict[tuple[str, str], Case] = {}
R = "/repos/{owner}/{repo}"


def case(method: str, path: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[(method, path)] = fn
        return fn
    return register


@case("GET", "/app")
async def _get_app(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await app.rest.apps.async_get_authenticated())
    assert data is not None and data.id == w.app_id


@case("POST", "/app/installations/{installation_id}/access_tokens")
async def _token(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await app.rest.apps.async_create_installation_access_token(
        w.installation_id, data={"repositories": ["shop"], "permissions": {"checks": "write"}}))
    assert data.token.startswith("ghs_") and data.repository_selection == "selected"
    await expect_error(app.rest.apps.async_create_installation_access_token(999), 404)


@case("GET", "/app/installations/{installation_id}")
async def _installation(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await app.rest.apps.async_get_installation(w.installation_id))
    assert data.account is not None and data.app_id == w.app_id


@case("GET", R + "/installation")
async def _repo_installation(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    assert parsed(await app.rest.apps.async_get_repo_installation("acme", "shop")).id == w.installation_id
    await expect_error(app.rest.apps.async_get_repo_installation("globex", "billing"), 404)


@case("GET", R)
async def _repo(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    assert parsed(await gh.rest.repos.async_get("acme", "shop")).default_branch == "main"


@case("GET", R + "/contents/{path:path}")
async def _contents(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_get_content("acme", "shop", ".github/gonogo.yml", ref="main"))
    assert data.type == "file" and "environments" in __import__("base64").b64decode(data.content).decode()
    listing = parsed(await gh.rest.repos.async_get_content("acme", "shop", ".github"))
    assert [entry.name for entry in listing] == ["gonogo.yml"]
    await expect_error(gh.rest.repos.async_get_content("acme", "shop", "nope.txt"), 404)
    # a file over 1 MB: 403 "too_large" as JSON, an empty "none" encoding as an object
    big = b"x" * 1_000_001
    w.state.set_file("acme/shop", "main", "big.lock", big)
    with pytest.raises(RequestFailed) as info:
        await gh.rest.repos.async_get_content("acme", "shop", "big.lock")
    assert info.value.response.status_code == 403
    assert info.value.response.json()["errors"][0]["code"] == "too_large"
    obj = await gh.rest.repos.async_get_content("acme", "shop", "big.lock",
                                                 headers={"Accept": "application/vnd.github.object"})
    assert obj.json()["encoding"] == "none" and obj.json()["content"] == "" and obj.json()["size"] == len(big)


@case("GET", R + "/compare/{basehead}")
async def _compare(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    base, head = w.state.repo("acme/shop").commits, sha(w, "failing-tests")
    first = next(iter(base))
    data = parsed(await gh.rest.repos.async_compare_commits("acme", "shop", f"{first}...{head}"))
    assert data.ahead_by == 2 and data.status == "ahead" and data.merge_base_commit.sha == first
    assert {f.filename for f in data.files or []} >= {"migrations/0007_discount_order.py"}


@case("GET", R + "/commits")
async def _commits(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_list_commits("acme", "shop", sha="main", author="alice"))
    assert data and all(c.author.login == "alice" for c in data)


@case("GET", R + "/commits/{ref}/check-runs")
async def _check_runs(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    resp = await gh.rest.checks.async_list_for_ref("acme", "shop", sha(w, "all-green"), per_page=2, page=1)
    data = parsed(resp)
    assert data.total_count == 3 and len(data.check_runs) == 2 and 'rel="next"' in resp.headers["link"]


@case("GET", R + "/commits/{ref}/statuses")
async def _statuses(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_list_commit_statuses_for_ref("acme", "shop", sha(w, "all-green")))
    assert [s.context for s in data] == ["ci/jenkins"]


@case("GET", R + "/commits/{ref}/status")
async def _combined(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_get_combined_status_for_ref("acme", "shop", sha(w, "checks-running")))
    assert data.state == "pending"


@case("GET", R + "/commits/{ref}/pulls")
async def _commit_pulls(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_list_pull_requests_associated_with_commit(
        "acme", "shop", sha(w, "failing-tests")))
    assert [p.number for p in data] == [12]


@case("GET", R + "/commits/{ref}")
async def _commit(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_get_commit("acme", "shop", sha(w, "all-green")))
    assert data.stats is not None and data.stats.additions == 66


@case("GET", R + "/pulls/{pull_number}")
async def _pull(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    assert parsed(await gh.rest.pulls.async_get("acme", "shop", 12)).head.sha == sha(w, "failing-tests")


async def _new_check_run(w: World, gh: GitHub[Any]) -> Any:
    return parsed(await gh.rest.checks.async_create("acme", "shop", data={
        "name": "gonogo", "head_sha": sha(w, "all-green"), "status": "in_progress", "external_id": "dep-1",
        "output": {"title": "Evaluating", "summary": "gonogo is evaluating the deployment",
                   "annotations": [{"path": "shop/cart.py", "start_line": 3, "end_line": 3,
                                    "annotation_level": "warning", "message": "Changed without tests"}]},
        "actions": [{"label": "Approve", "description": "Approve this deployment", "identifier": "approve"}]}))


@case("POST", R + "/check-runs")
async def _create_check_run(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = await _new_check_run(w, gh)
    assert data.status == "in_progress" and data.app.id == w.app_id and data.output.annotations_count == 1


@case("GET", R + "/check-runs/{check_run_id}")
async def _get_check_run(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    created = await _new_check_run(w, gh)
    assert parsed(await gh.rest.checks.async_get("acme", "shop", created.id)).name == "gonogo"


@case("PATCH", R + "/check-runs/{check_run_id}")
async def _update_check_run(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    created = await _new_check_run(w, gh)
    data = parsed(await gh.rest.checks.async_update("acme", "shop", created.id, data={
        "status": "completed", "conclusion": "action_required",
        "output": {"title": "Escalated", "summary": "| check | result |\n|---|---|\n| tests | success |"}}))
    assert data.conclusion == "action_required" and data.completed_at is not None


@case("GET", R + "/check-runs/{check_run_id}/annotations")
async def _annotations(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    created = await _new_check_run(w, gh)
    data = parsed(await gh.rest.checks.async_list_annotations("acme", "shop", created.id))
    assert [a.path for a in data] == ["shop/cart.py"]


@case("POST", R + "/statuses/{sha}")
async def _create_status(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_create_commit_status("acme", "shop", sha(w, "all-green"), data={
        "state": "success", "context": "gonogo", "description": "Go"}))
    assert data.state == "success"


@case("GET", R + "/actions/runs")
async def _runs(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.actions.async_list_workflow_runs_for_repo(
        "acme", "shop", head_sha=sha(w, "all-green")))
    assert {r.id for r in data.workflow_runs} == {7001, 8001}


@case("GET", R + "/actions/runs/{run_id}")
async def _run(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    assert parsed(await gh.rest.actions.async_get_workflow_run("acme", "shop", 7002)).conclusion == "failure"


@case("GET", R + "/actions/runs/{run_id}/artifacts")
async def _run_artifacts(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.actions.async_list_workflow_run_artifacts("acme", "shop", 7002))
    assert [a.name for a in data.artifacts] == ["sarif", "coverage", "test-results"]  # GitHub: newest first
    oldest_first = parsed(await gh.rest.actions.async_list_workflow_run_artifacts("acme", "shop", 7002, direction="asc"))
    assert [a.name for a in oldest_first.artifacts] == ["test-results", "coverage", "sarif"]


@case("POST", R + "/actions/runs/{run_id}/deployment_protection_rule")
async def _review(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    _, dep = w.state.deployment("all-green")
    assert dep.run_id is not None
    report = await gh.rest.actions.async_review_custom_gates_for_run(
        "acme", "shop", dep.run_id, data={"environment_name": "production", "comment": "gonogo is evaluating"})
    answer = await gh.rest.actions.async_review_custom_gates_for_run(
        "acme", "shop", dep.run_id, data={"environment_name": "production", "state": "approved",
                                          "comment": "All checks passed"})
    assert report.status_code == answer.status_code == 204
    assert w.state.gate("acme/shop", dep.run_id, "production").answer == "approved"


@case("GET", R + "/actions/artifacts/{artifact_id}")
async def _artifact(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    art_id = w.state.repo("acme/shop").workflow_runs[7001].artifact_ids[0]
    assert parsed(await gh.rest.actions.async_get_artifact("acme", "shop", art_id)).name == "test-results"


@case("GET", R + "/actions/artifacts/{artifact_id}/{archive_format}")
async def _download(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    art_id = w.state.repo("acme/shop").workflow_runs[7002].artifact_ids[0]
    response = await gh.rest.actions.async_download_artifact("acme", "shop", art_id, "zip")
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["junit-integration.xml", "junit-unit.xml"]


@case("GET", R + "/code-scanning/alerts")
async def _code_scanning(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.code_scanning.async_list_alerts_for_repo("acme", "shop", ref="main", state="fixed"))
    assert [a.rule.id for a in data] == ["py/sql-injection"]
    # a person's dismissal: who and when, listed by the time of the last change
    w.state.dismiss_alert("acme/shop", "code_scanning", 2, "rita", at=w.state.now() - 60, reason="won't fix")
    dismissed = parsed(await gh.rest.code_scanning.async_list_alerts_for_repo(
        "acme", "shop", ref="main", state="dismissed", sort="updated", direction="desc"))  # fmt: skip
    assert [(a.rule.id, a.dismissed_by.login if a.dismissed_by else None, a.dismissed_reason) for a in dismissed] == [
        ("py/clear-text-logging", "rita", "won't fix")]
    assert dismissed[0].dismissed_at is not None and dismissed[0].updated_at == dismissed[0].dismissed_at
    closed = parsed(await gh.rest.code_scanning.async_list_alerts_for_repo("acme", "shop", ref="main", state="closed",
                                                                           sort="updated", direction="asc"))
    assert [a.state for a in closed] == ["fixed", "dismissed"]  # fixed a day ago, dismissed a minute ago
    await expect_error(gh.rest.code_scanning.async_list_alerts_for_repo("acme", "legacy"), 403)
    await expect_error(gh.rest.code_scanning.async_list_alerts_for_repo("acme", "fresh"), 404)


@case("GET", R + "/dependabot/alerts")
async def _dependabot(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.dependabot.async_list_alerts_for_repo("acme", "shop", state="open",
                                                                     severity="medium,high"))
    assert [a.dependency.package.name for a in data] == ["jinja2"]
    await expect_error(gh.rest.dependabot.async_list_alerts_for_repo("acme", "legacy"), 403)
    # cursor pagination only, as GitHub since October 2025: `page` (and `first`/`last`) are refused with a 400,
    # and the Link header's next page carries an `after` cursor
    await expect_error(gh.arequest("GET", "/repos/acme/shop/dependabot/alerts", params={"page": 1}), 400)
    await expect_error(gh.arequest("GET", "/repos/acme/shop/dependabot/alerts", params={"first": 1}), 400)
    await expect_error(gh.arequest("GET", "/repos/acme/shop/dependabot/alerts", params={"after": "bogus"}), 400)
    w.state.repo("acme/shop").dependabot_alerts += [
        {"number": 100 + i, "package": f"pkg{i}", "severity": "low", "ghsa_id": f"GHSA-0000-0000-000{i}"} for i in range(3)]
    every = parsed(await gh.rest.dependabot.async_list_alerts_for_repo("acme", "shop", per_page=100))
    first = await gh.rest.dependabot.async_list_alerts_for_repo("acme", "shop", per_page=1)
    link = first.headers.get("link", "")
    assert len(every) >= 2 and 'rel="next"' in link and "after=" in link and "&page=" not in link and "?page=" not in link
    walked = [a.number async for a in gh.rest.paginate(gh.rest.dependabot.async_list_alerts_for_repo, owner="acme",
                                                        repo="shop", per_page=1)]
    assert walked == [a.number for a in every]  # newest first, each once
    # dismissed (by a person), auto-dismissed (by a rule) and fixed, each with its own time; sorted by the last change
    w.state.dismiss_alert("acme/shop", "dependabot", 100, "dora", at=w.state.now() - 30, reason="not_used")
    w.state.dismiss_alert("acme/shop", "dependabot", 101, None, at=w.state.now() - 20, state="auto_dismissed")
    w.state.dismiss_alert("acme/shop", "dependabot", 102, None, at=w.state.now() - 10, state="fixed")
    closed = parsed(await gh.rest.dependabot.async_list_alerts_for_repo(
        "acme", "shop", state="dismissed,auto_dismissed,fixed", sort="updated", direction="desc", per_page=100))
    assert [(a.number, a.state) for a in closed] == [(102, "fixed"), (101, "auto_dismissed"), (100, "dismissed")]
    assert closed[2].dismissed_by is not None and closed[2].dismissed_by.login == "dora"
    assert closed[2].dismissed_reason == "not_used" and closed[1].dismissed_by is None
    assert closed[1].auto_dismissed_at is not None and closed[0].fixed_at is not None


@case("GET", R + "/secret-scanning/alerts")
async def _secrets(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.secret_scanning.async_list_alerts_for_repo("acme", "shop", state="open"))
    assert [a.secret_type for a in data] == ["github_personal_access_token"]
    w.state.repo("acme/shop").secret_scanning_alerts.append({"number": 2, "secret_type": "aws_access_key_id"})
    w.state.dismiss_alert("acme/shop", "secret_scanning", 2, "dora", at=w.state.now() - 60, reason="used_in_tests")
    resolved = parsed(await gh.rest.secret_scanning.async_list_alerts_for_repo(
        "acme", "shop", state="resolved", resolution="used_in_tests,false_positive", sort="updated", direction="desc"))
    assert [(a.number, a.resolution, a.resolved_by.login if a.resolved_by else None) for a in resolved] == [
        (2, "used_in_tests", "dora")]
    assert resolved[0].resolved_at is not None
    assert not parsed(await gh.rest.secret_scanning.async_list_alerts_for_repo("acme", "shop", resolution="revoked"))
    await expect_error(gh.rest.secret_scanning.async_list_alerts_for_repo("acme", "legacy"), 404)


@case("GET", R + "/deployments")
async def _deployments(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_list_deployments("acme", "shop", environment="production"))
    assert {d.sha for d in data} >= {sha(w, "all-green"), sha(w, "checks-running")}


@case("POST", R + "/deployments")
async def _create_deployment(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_create_deployment("acme", "shop", data={
        "ref": "main", "environment": "qa", "description": "Manual deploy", "required_contexts": []}))
    assert data.environment == "qa"


@case("GET", R + "/deployments/{deployment_id}")
async def _deployment(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    _, dep = w.state.deployment("failing-tests")
    assert parsed(await gh.rest.repos.async_get_deployment("acme", "shop", dep.id)).environment == "staging"


@case("GET", R + "/deployments/{deployment_id}/statuses")
async def _deployment_statuses(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    _, dep = w.state.deployment("checks-running")
    w.state.add_deployment_status("acme/shop", dep.id, "queued", description="Queued")
    data = parsed(await gh.rest.repos.async_list_deployment_statuses("acme", "shop", dep.id))
    assert data[0].state == "queued"


@case("POST", R + "/deployments/{deployment_id}/statuses")
async def _create_deployment_status(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    _, dep = w.state.deployment("checks-running")
    data = parsed(await gh.rest.repos.async_create_deployment_status("acme", "shop", dep.id, data={
        "state": "in_progress", "description": "Rolling out", "log_url": "https://ci.example/run/1"}))
    assert data.state == "in_progress"


@case("GET", R + "/issues/{issue_number}/comments")
async def _comments(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    await gh.rest.issues.async_create_comment("acme", "shop", 12, data={"body": "first"})
    data = parsed(await gh.rest.issues.async_list_comments("acme", "shop", 12))
    assert data and data[-1].body == "first"


@case("POST", R + "/issues/{issue_number}/comments")
async def _create_comment(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.issues.async_create_comment("acme", "shop", 12, data={"body": "gonogo: escalated"}))
    assert data.user is not None and data.user.login == "gonogo[bot]"


@case("GET", R + "/issues/comments/{comment_id}")
async def _comment(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    made = parsed(await gh.rest.issues.async_create_comment("acme", "shop", 12, data={"body": "x"}))
    assert parsed(await gh.rest.issues.async_get_comment("acme", "shop", made.id)).body == "x"


@case("PATCH", R + "/issues/comments/{comment_id}")
async def _edit_comment(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    made = parsed(await gh.rest.issues.async_create_comment("acme", "shop", 12, data={"body": "x"}))
    data = parsed(await gh.rest.issues.async_update_comment("acme", "shop", made.id, data={"body": "y"}))
    assert data.body == "y"


@case("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}")
async def _membership(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.teams.async_get_membership_for_user_in_org("acme", "release-managers", "omar"))
    assert data.state == "active" and data.role == "maintainer"
    await expect_error(gh.rest.teams.async_get_membership_for_user_in_org("acme", "release-managers", "bob"), 404)


@case("GET", R + "/collaborators/{username}/permission")
async def _permission(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.repos.async_get_collaborator_permission_level("acme", "shop", "omar"))
    assert data.permission == "write" and data.role_name == "maintain"


@case("GET", R + "/collaborators/{username}")
async def _collaborator(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    w.state.repo("acme/shop").private = False  # anyone may read a public repository; only some were given access
    w.state.user("stranger")
    assert (await gh.rest.repos.async_check_collaborator("acme", "shop", "omar")).status_code == 204
    await expect_error(gh.rest.repos.async_check_collaborator("acme", "shop", "stranger"), 404)
    read = parsed(await gh.rest.repos.async_get_collaborator_permission_level("acme", "shop", "stranger"))
    assert (read.permission, read.role_name) == ("read", "read")


# --------------------------------------------------------------------------- pull request files, releases


@case("GET", R + "/pulls/{pull_number}/files")
async def _pull_files(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    data = parsed(await gh.rest.pulls.async_list_files("acme", "shop", 12))
    assert "migrations/0007_discount_order.py" in {f.filename for f in data}


@case("GET", R + "/releases")
async def _releases(w: World, gh: GitHub[Any], app: GitHub[Any]) -> None:
    w.state.add_release("acme/shop", "v1.0.0", sha(w, "all-green"), author="omar")
    data = parsed(await gh.rest.repos.async_list_releases("acme", "shop"))
    assert [r.tag_name for r in data] == ["v1.0.0"] and data[0].draft is False


# --------------------------------------------------------------------------- the tests

ROUTE_IDS = [(method, path) for method, path, *_ in ROUTES if path not in INTERNAL_ROUTES]


def test_every_route_has_a_contract_case() -> None:
    missing = [f"{m} {p}" for m, p in ROUTE_IDS if (m, p) not in CASES]
    assert not missing, f"routes without a contract case: {missing}"


def test_every_route_is_an_operation_of_github(spec: Spec) -> None:
    for method, path in ROUTE_IDS:
        assert spec.template_of(method, path).count("/") == path.replace("{path:path}", "{path}").count("/")


def test_the_vendored_description_holds_every_route() -> None:
    """A clone without the shared corpus checks the sandbox against the trimmed copy: it must hold every route
    (re-run tests/fixtures/corpus/tools/trim_openapi.py when the sandbox gains one)."""
    trimmed = Spec(TRIMMED_SPEC)
    for method, path in ROUTE_IDS:
        assert trimmed.template_of(method, path).count("/") == path.replace("{path:path}", "{path}").count("/")


@pytest.mark.parametrize(("method", "path"), ROUTE_IDS, ids=[f"{m} {p}" for m, p in ROUTE_IDS])
def test_route_matches_openapi_and_githubkit(world: World, spec: Spec, method: str, path: str) -> None:
    before = len(world.state.calls())
    gh, app = installation_client(world), app_client(world)
    asyncio.run(CASES[(method, path)](world, gh, app))
    calls = [c for c in world.state.calls()[before:] if not c.path.startswith(("/_sandbox/", "/_storage/"))]
    assert any(c.method == method for c in calls), "the case did not call its own route"
    problems: list[str] = []
    validated = 0
    for call in calls:
        template, operation = spec.operation(call.method, call.path)
        where = f"{call.method} {template} -> {call.status}"
        body_spec = operation.get("requestBody")
        if call.body is not None and body_spec:
            schema = spec.resolve(body_spec)["content"]["application/json"]["schema"]
            problems += [f"{where} request {e}" for e in spec.errors(schema, call.body, write=True)]
        responses = operation["responses"]
        documented = str(call.status) in responses
        if not documented:
            assert call.status >= 400, f"{where}: success status not in GitHub's description"
            schema = {"$ref": "#/components/schemas/basic-error"}
        else:
            content = spec.resolve(responses[str(call.status)]).get("content", {})
            schema = content.get("application/json", {}).get("schema")
        if call.status in (204, 302):
            assert call.response in (None, ""), f"{where}: expected an empty body"
            if call.status == 302:
                # to the storage host, another origin than the API: the token must not follow the redirect
                storage = world.state.storage_url or world.url
                assert call.response_headers and call.response_headers["location"].startswith(storage)
        elif schema is not None:
            problems += [f"{where} response {e}" for e in spec.errors(schema, call.response, write=False)]
            validated += 1
    assert validated or any(c.status in (204, 302) for c in calls), "no response body was checked"
    assert not problems, "\n".join(problems[:40])


def test_download_redirect_is_a_302_to_a_blob_without_auth(world: World) -> None:
    gh = installation_client(world)
    token = asyncio.run(_token_of(gh))
    art_id = world.state.repo("acme/shop").workflow_runs[7001].artifact_ids[0]
    with httpx.Client(base_url=world.url) as client:
        first = client.get(f"/repos/acme/shop/actions/artifacts/{art_id}/zip", headers={"Authorization": f"token {token}"})
        assert first.status_code == 302
        blob = client.get(first.headers["location"])  # no Authorization, like a pre-signed URL
    assert blob.status_code == 200 and zipfile.ZipFile(io.BytesIO(blob.content)).namelist() == ["junit-unit.xml"]


async def _token_of(gh: GitHub[Any]) -> str:
    await gh.rest.repos.async_get("acme", "shop")  # lets githubkit fetch and cache a token
    app = GitHub(AppAuthStrategy(gh.auth.app_id, gh.auth.private_key), base_url=str(gh.config.base_url),  # type: ignore[union-attr]
                 cache_strategy=MemCacheStrategy())
    data = (await app.rest.apps.async_create_installation_access_token(4242)).parsed_data
    return data.token
