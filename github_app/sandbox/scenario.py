"""Seed a sandbox from a scenario file (YAML or JSON); see docs/sandbox.md for the format."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from github_app.sandbox.auth import generate_key_pair, public_key_of
from github_app.sandbox.state import SandboxState, fake_sha

DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed member times keep archives byte-identical across runs


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded; the message names the entry to fix."""


def zip_path(path: Path) -> bytes:
    """Zip a file, or a folder's files with paths relative to the folder, deterministically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        members = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for member in members:
            arcname = member.name if path.is_file() else member.relative_to(path).as_posix()
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.read_bytes())
    return buffer.getvalue()


def zip_files(files: dict[str, str | bytes]) -> bytes:
    """Zip in-memory files deterministically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def read_scenario(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Parse a scenario file (or take a dict); return it and the folder relative paths start from."""
    if isinstance(source, dict):
        return source, Path.cwd()
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"Cannot read scenario {path}: {exc.strerror}") from None
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ScenarioError(f"Scenario {path} must be a mapping at the top level")
    return data, path.resolve().parent


def load_scenario(state: SandboxState, source: str | Path | dict[str, Any], *,
                  corpus_root: str | Path | None = None) -> SandboxState:
    """Seed `state` from a scenario and return it."""
    data, base = read_scenario(source)
    corpus = Path(corpus_root) if corpus_root is not None else DEFAULT_CORPUS
    state.token_ttl = float(data.get("token_ttl", state.token_ttl))
    if "html_url" in data:
        state.html_url = str(data["html_url"]).rstrip("/")
    _load_app(state, data.get("app") or {}, base)
    for inst in data.get("installations") or []:
        state.add_installation(int(inst["id"]), inst["account"], account_type=inst.get("account_type", "Organization"),
                               repositories=inst.get("repositories"))
        if inst.get("suspended"):
            state.installations[int(inst["id"])].suspended = True
    for team in data.get("teams") or []:
        for member in team.get("members") or []:
            entry = member if isinstance(member, dict) else {"login": member}
            state.add_team_member(team["org"], team["slug"], entry["login"], role=entry.get("role", "member"),
                                  state=entry.get("state", "active"))
    for login in data.get("users") or []:
        state.user(login)
    for repo_data in data.get("repos") or []:
        _load_repo(state, repo_data, base, corpus)
    return state


def _load_app(state: SandboxState, app: dict[str, Any], base: Path) -> None:
    private_pem: str | None = None
    if app.get("public_key"):
        public_pem = str(app["public_key"])
    elif app.get("public_key_file"):
        public_pem = (base / app["public_key_file"]).read_text()
    elif app.get("private_key_file"):
        private_pem = (base / app["private_key_file"]).read_text()
        public_pem = public_key_of(private_pem)
    else:
        # No key given: generate one; tests and the demo read it from state.app.private_key_pem.
        private_pem, public_pem = generate_key_pair()
    state.set_app(int(app.get("id", 1234)), public_pem, slug=app.get("slug", "gonogo"),
                  name=app.get("name", "gonogo"), owner=app.get("owner", "gonogo-dev"), private_key_pem=private_pem)


def _load_repo(state: SandboxState, data: dict[str, Any], base: Path, corpus: Path) -> None:
    full_name = data["name"]
    repo = state.add_repo(full_name, default_branch=data.get("default_branch", "main"),
                          private=data.get("private", True), owner_type=data.get("owner_type", "Organization"))
    labels: dict[str, str] = {}

    def sha_of(ref: str) -> str:
        ref = str(ref)
        return labels.get(ref) or repo.branches.get(ref) or ref

    for index, commit in enumerate(data.get("commits") or []):
        where = f"{full_name} commits[{index}]"
        label = str(commit.get("id") or commit.get("sha") or f"c{index}")
        sha = str(commit.get("sha") or fake_sha(f"{full_name}:{label}"))
        branch = commit.get("branch", repo.default_branch)
        parents = [sha_of(p) for p in commit["parents"]] if "parents" in commit else None
        try:
            created = state.add_commit(full_name, sha=sha, message=commit.get("message", f"Commit {label}"),
                                       author=commit.get("author", "octocat"), parents=parents,
                                       files=commit.get("files") or [], date=commit.get("date"),
                                       branch=branch, author_name=commit.get("author_name"),
                                       author_email=commit.get("author_email"))
        except TypeError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        labels[label] = created.sha
    for branch, ref in (data.get("branches") or {}).items():
        repo.branches[branch] = sha_of(ref)
    for pair, shas in (data.get("compare") or {}).items():
        base_ref, head_ref = str(pair).split("...", 1)
        repo.compare_table[f"{sha_of(base_ref)}...{sha_of(head_ref)}"] = [sha_of(s) for s in shas]
    for ref, files in (data.get("files") or {}).items():
        for path, content in (files or {}).items():
            state.set_file(full_name, sha_of(ref) if ref in labels else str(ref), path, content)
    for login, permission in (data.get("collaborators") or {}).items():
        state.set_collaborator(full_name, login, permission)
    for pr in data.get("pull_requests") or []:
        state.add_pull_request(full_name, int(pr["number"]), head_sha=sha_of(pr["head_sha"]),
                               head_ref=pr.get("head_ref", "feature"), base_ref=pr.get("base_ref"),
                               title=pr.get("title", "Change things"), user=pr.get("user", "octocat"),
                               body=pr.get("body"), state=pr.get("state", "open"))
    for number in data.get("issues") or []:
        repo.issue_numbers.add(int(number))
    for run in data.get("check_runs") or []:
        state.add_check_run(full_name, sha_of(run["sha"]), run["name"], status=run.get("status", "completed"),
                            conclusion=run.get("conclusion", "success"), app_id=int(run.get("app_id", 15368)),
                            details_url=run.get("details_url"), output=run.get("output"))
    for status in data.get("statuses") or []:
        state.add_status(full_name, sha_of(status["sha"]), status["context"], status["state"],
                         description=status.get("description"), target_url=status.get("target_url"),
                         creator=status.get("creator", "ci-bot"))
    for run in data.get("workflow_runs") or []:
        _load_run(state, full_name, run, sha_of, base, corpus)
    repo.code_scanning = str(data.get("code_scanning", "enabled"))
    if repo.code_scanning not in ("enabled", "disabled", "no_analysis", "advanced_security_off"):
        raise ScenarioError(f"{full_name}: code_scanning must be enabled, disabled, no_analysis or "
                            "advanced_security_off")
    repo.dependabot = bool(data.get("dependabot", True))
    repo.secret_scanning = bool(data.get("secret_scanning", True))
    for key in ("code_scanning_alerts", "dependabot_alerts", "secret_scanning_alerts"):
        alerts = getattr(repo, key)
        for number, alert in enumerate(data.get(key) or [], start=1):
            entry = dict(alert)
            entry.setdefault("number", number)
            if "commit_sha" in entry:
                entry["commit_sha"] = sha_of(entry["commit_sha"])
            alerts.append(entry)
    for dep_data in data.get("deployments") or []:
        dep = state.add_deployment(full_name, sha_of(dep_data["sha"]), dep_data.get("environment", "production"),
                                   ref=dep_data.get("ref"), creator=dep_data.get("creator", "octocat"),
                                   task=dep_data.get("task", "deploy"), description=dep_data.get("description"),
                                   run_id=dep_data.get("run_id"), waiting=dep_data.get("waiting", True),
                                   payload=dep_data.get("payload"))
        for status in dep_data.get("statuses") or []:
            state.add_deployment_status(full_name, dep.id, status["state"],
                                        description=status.get("description", ""),
                                        environment_url=status.get("environment_url", ""))
        if dep_data.get("installation") is not None:
            dep.webhook_installation_id = int(dep_data["installation"])
        if dep_data.get("name"):
            dep.name = str(dep_data["name"])
            state.named_deployments[dep.name] = (repo.full_name, dep.id)


def _load_run(state: SandboxState, full_name: str, data: dict[str, Any], sha_of: Any, base: Path,
              corpus: Path) -> None:
    run = state.add_workflow_run(full_name, sha_of(data["sha"]), name=data.get("name", "CI"),
                                 run_id=data.get("id"), head_branch=data.get("branch"),
                                 status=data.get("status", "completed"), conclusion=data.get("conclusion", "success"),
                                 event=data.get("event", "push"), actor=data.get("actor", "octocat"),
                                 path=data.get("path", ".github/workflows/ci.yml"),
                                 pull_requests=data.get("pull_requests"))
    for art in data.get("artifacts") or []:
        name = art["name"]
        if "path" in art:
            source = base / art["path"]
        elif "corpus" in art:
            source = corpus / art["corpus"]
        else:
            source = None
        if source is not None:
            if not source.exists():
                raise ScenarioError(f"{full_name} run {run.id} artifact {name!r}: {source} does not exist"
                                    + (" (is ../shared/corpus present?)" if "corpus" in art else ""))
            data_bytes = zip_path(source)
        elif "files" in art:
            data_bytes = zip_files(art["files"])
        else:
            raise ScenarioError(f"{full_name} run {run.id} artifact {name!r}: give path, corpus or files")
        state.add_artifact(full_name, run.id, name, data_bytes, expired=bool(art.get("expired", False)))
