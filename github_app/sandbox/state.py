"""In-memory state of the GitHub sandbox: what exists, what was called, which faults are armed."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import itertools
import re
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from github_app.sandbox.hook_log import HookLog

FaultKind = Literal["status", "secondary_rate_limit", "rate_limit_429", "primary_rate_limit",
                    "secondary_rate_limit_no_retry_after", "rate_limit_429_no_retry_after",
                    "latency", "truncate", "drop", "corrupt", "late_504"]
FAULT_KINDS: tuple[str, ...] = ("status", "secondary_rate_limit", "rate_limit_429", "primary_rate_limit",
                                "secondary_rate_limit_no_retry_after", "rate_limit_429_no_retry_after",
                                "latency", "truncate", "drop", "corrupt", "late_504")


@functools.lru_cache(maxsize=65536)  # the same few times are rendered over and over
def iso(ts: float) -> str:
    """Format a UNIX time the way GitHub does (second precision, Z suffix)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | float | datetime | None, default: float) -> float:
    """Turn an ISO 8601 string, a datetime or a UNIX time into a UNIX time."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def stable_id(text: str, base: int = 1_000_000) -> int:
    """Derive a stable positive integer id from a name, so users keep their id across runs."""
    return base + zlib.crc32(text.encode()) % 90_000_000


def fake_sha(text: str) -> str:
    """Derive a deterministic 40-hex sha from a text."""
    return hashlib.sha1(text.encode()).hexdigest()


def matches(pattern: str | None, path: str) -> bool:
    """Match a path against a glob (when it has wildcards) or a substring."""
    if pattern is None:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(path, pattern)
    return pattern in path


# --------------------------------------------------------------------------- domain objects

def client_id_of(app_id: int) -> str:
    """The client ID the sandbox gives an app (GitHub takes it, like the numeric id, as a JWT's issuer)."""
    return f"Iv1.{app_id:016x}"


@dataclass
class AppRecord:
    id: int
    slug: str
    name: str
    owner: str
    public_key_pem: str
    private_key_pem: str | None = None  # only when the sandbox generated the key pair itself
    permissions: dict[str, str] | None = None  # None: the sandbox's usual grants (render.app)
    events: list[str] | None = None


@dataclass
class Installation:
    id: int
    account: str
    account_type: str = "Organization"
    repositories: list[str] | None = None  # None = all repositories of the account
    permissions: dict[str, str] = field(default_factory=lambda: {
        "checks": "write", "statuses": "read", "contents": "read", "actions": "read",
        "deployments": "write", "pull_requests": "read", "issues": "write", "metadata": "read",
        "security_events": "read", "vulnerability_alerts": "read", "secret_scanning_alerts": "read",
        "members": "read"})
    suspended: bool = False


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: list[str] | None


@dataclass
class FileChange:
    filename: str
    additions: int = 0
    deletions: int = 0
    status: str = "modified"
    previous_filename: str | None = None


@dataclass
class Commit:
    sha: str
    message: str
    author: str | None  # GitHub login; None when the email maps to no account
    author_name: str
    author_email: str
    date: float
    parents: list[str] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)


@dataclass
class Annotation:
    path: str
    start_line: int
    end_line: int
    annotation_level: str
    message: str
    title: str | None = None
    raw_details: str | None = None
    start_column: int | None = None
    end_column: int | None = None


@dataclass
class CheckRun:
    id: int
    head_sha: str
    name: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    details_url: str | None = None
    external_id: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)
    app_id: int = 15368
    check_suite_id: int = 0


@dataclass
class CommitStatus:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    created_at: float
    updated_at: float
    creator: str | None = "ci-bot"


@dataclass
class Artifact:
    id: int
    name: str
    data: bytes
    run_id: int
    created_at: float
    expires_at: float
    expired: bool = False
    blob_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))


@dataclass
class WorkflowRun:
    id: int
    name: str
    head_sha: str
    head_branch: str | None
    event: str = "push"
    status: str = "completed"
    conclusion: str | None = "success"
    run_number: int = 1
    run_attempt: int = 1
    workflow_id: int = 1
    path: str = ".github/workflows/ci.yml"
    created_at: float = 0.0
    updated_at: float = 0.0
    actor: str = "octocat"
    artifact_ids: list[int] = field(default_factory=list)
    run_started_at: float | None = None  # the current attempt's start (GitHub's run_started_at); None: created_at
    pull_request_numbers: list[int] = field(default_factory=list)


@dataclass
class DeploymentStatusRecord:
    id: int
    deployment_id: int
    state: str
    description: str
    environment: str
    target_url: str
    log_url: str
    environment_url: str
    created_at: float
    creator: str


@dataclass
class Deployment:
    id: int
    sha: str
    ref: str
    task: str
    environment: str
    description: str | None
    creator: str
    created_at: float
    payload: dict[str, Any] | str = field(default_factory=dict)
    production_environment: bool = True
    transient_environment: bool = False
    run_id: int | None = None  # the workflow run waiting on protection rules for this deployment
    statuses: list[DeploymentStatusRecord] = field(default_factory=list)
    name: str | None = None  # a scenario label, e.g. "all-green"
    webhook_installation_id: int | None = None  # send webhooks as this installation (e.g. an unknown one)


@dataclass
class GateReview:
    """One call to the protection-rule review endpoint, as the sandbox received it."""

    run_id: int
    run_attempt: int
    environment: str
    state: str | None  # approved / rejected / None for a status report
    comment: str
    at: float
    installation_id: int | None
    accepted: bool
    refusal: str | None = None


@dataclass
class Gate:
    """A workflow run waiting on the app's protection rule for one environment."""

    run_id: int
    environment: str
    deployment_id: int | None
    run_attempt: int = 1
    answer: str | None = None  # approved / rejected
    answer_comment: str | None = None
    reports: list[str] = field(default_factory=list)
    history: list[GateReview] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        """Tell whether the gate still waits for an answer."""
        return self.answer is None


@dataclass
class IssueComment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float


@dataclass
class PullRequest:
    number: int
    title: str
    user: str
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    state: str = "open"
    body: str | None = None
    created_at: float = 0.0
    id: int = 0


@dataclass
class Release:
    """A published (or draft) release of a tag."""

    id: int
    tag_name: str
    target: str  # the branch or sha the tag was made from
    name: str
    author: str
    created_at: float
    draft: bool = False
    prerelease: bool = False


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    private: bool = True
    owner_type: str = "Organization"
    branches: dict[str, str] = field(default_factory=dict)  # branch -> head sha
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref (branch or sha) -> path -> bytes
    commits: dict[str, Commit] = field(default_factory=dict)
    compare_table: dict[str, list[str]] = field(default_factory=dict)  # "base...head" -> commit shas
    check_runs: list[CheckRun] = field(default_factory=list)
    statuses: list[CommitStatus] = field(default_factory=list)
    workflow_runs: dict[int, WorkflowRun] = field(default_factory=dict)
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    code_scanning: str = "enabled"  # enabled / disabled / no_analysis / advanced_security_off
    code_scanning_alerts: list[dict[str, Any]] = field(default_factory=list)
    dependabot: bool = True
    dependabot_alerts: list[dict[str, Any]] = field(default_factory=list)
    secret_scanning: bool = True
    secret_scanning_alerts: list[dict[str, Any]] = field(default_factory=list)
    deployments: dict[int, Deployment] = field(default_factory=dict)
    gates: dict[tuple[int, str], Gate] = field(default_factory=dict)
    issue_numbers: set[int] = field(default_factory=set)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    comments: dict[int, IssueComment] = field(default_factory=dict)
    collaborators: dict[str, str] = field(default_factory=dict)  # login -> admin/maintain/write/triage/read
    created_at: float = 0.0
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> sha
    releases: list[Release] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """Return owner/name."""
        return f"{self.owner}/{self.name}"

    def resolve(self, ref: str) -> str | None:
        """Resolve a branch name, refs/heads/ name or (abbreviated) sha to a full sha."""
        if ref.startswith("refs/tags/") or ref in self.tags:
            return self.tags.get(ref.removeprefix("refs/tags/"))
        ref = ref.removeprefix("refs/heads/")
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.commits:
            return ref
        if len(ref) >= 7:
            found = [sha for sha in self.commits if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        return None


@dataclass
class Fault:
    """A fault armed on the routes whose method and path match."""

    method: str
    path_pattern: str | None
    kind: str
    times: int | None = 1  # None = every matching call until cleared
    status: int = 502
    retry_after: int = 1
    seconds: float = 0.0
    fired: int = 0
    query: dict[str, str] | None = None  # only requests whose query holds these parameters (e.g. state=dismissed)

    def applies(self, method: str, path: str, query: dict[str, str] | None = None) -> bool:
        """Tell whether this fault is still armed for a request."""
        if self.times is not None and self.fired >= self.times:
            return False
        if self.query and any((query or {}).get(k) != v for k, v in self.query.items()):
            return False
        return (self.method in ("*", method.upper())) and matches(self.path_pattern, path)


@dataclass(frozen=True)
class Call:
    """One request the sandbox received and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any
    at: float
    duration: float
    fault: str | None
    installation_id: int | None
    response: Any = None  # the parsed response body, only when state.record_responses is on
    response_headers: dict[str, str] | None = None
    api_version: str | None = None  # the X-GitHub-Api-Version the request named (None: GitHub's default)


# --------------------------------------------------------------------------- the state

class SandboxState:
    """Everything the sandbox knows; mutate it from tests, the HTTP app reads and writes it under `lock`."""

    def __init__(self, *, token_ttl: float = 3600.0, html_url: str = "https://github.com") -> None:
        self.lock = threading.RLock()
        self.app: AppRecord | None = None
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.repos: dict[str, Repo] = {}
        self.teams: dict[tuple[str, str], dict[str, dict[str, str]]] = {}  # (org, slug) -> login -> {role, state}
        self.users: dict[str, str] = {}  # login -> type (User / Bot / Organization)
        self.user_ids: dict[str, int] = {}  # login -> id, for a login that is not the account's first (a rename)
        self.token_ttl = token_ttl
        self.html_url = html_url.rstrip("/")
        self.api_url: str | None = None  # set by running_sandbox; used by payload builders
        self.storage_url: str | None = None  # the blob storage host artifact downloads redirect to (running_sandbox)
        self.leaked_tokens = 0  # requests that reached the storage host with an Authorization header
        self.latency: float = 0.0
        self.record_responses = False  # keep response bodies in the call log (contract tests; costs memory)
        self.clock_offset: float = 0.0
        self.faults: list[Fault] = []
        self._calls: list[Call] = []
        self.named_deployments: dict[str, tuple[str, int]] = {}  # label -> (owner/name, deployment id)
        self.hook = HookLog()  # the app's webhook URL and secret, and every delivery the sandbox made
        self.signed_in_user = "octocat"  # who the browser is signed in as on the web pages (app creation)
        self.manifest_codes: dict[str, dict[str, Any]] = {}  # one-time codes of apps created from a manifest
        # owner/name (lower case) -> environment name -> ids of the apps enabled as its custom protection rules
        self.environments: dict[str, dict[str, list[int]]] = {}
        self._ids = itertools.count(1000)

    # ----------------------------------------------------------------- time, ids
    def now(self) -> float:
        """Return the sandbox's current UNIX time (real time plus any advance)."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward, e.g. to expire installation tokens without sleeping."""
        self.clock_offset += seconds

    def next_id(self) -> int:
        """Return a fresh id, unique across all object kinds."""
        with self.lock:
            return next(self._ids)

    # ----------------------------------------------------------------- call log and faults
    def record(self, call: Call) -> None:
        """Append one call to the log."""
        with self.lock:
            self._calls.append(call)

    def calls(self, method: str | None = None, path_like: str | None = None) -> list[Call]:
        """Return logged calls, filtered by method and by a path glob (with * ? [) or substring."""
        with self.lock:
            return [c for c in self._calls
                    if (method is None or c.method == method.upper()) and matches(path_like, c.path)]

    def call_summary(self) -> dict[str, int]:
        """Count logged calls per method and route shape (shas and ids folded), most frequent first."""
        counts: dict[str, int] = {}
        for call in self.calls():
            shape = re.sub(r"/\d+(?=/|$)", "/{id}", re.sub(r"/[0-9a-f]{40}(?=/|$)", "/{sha}", call.path))
            key = f"{call.method} {shape}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def clear_calls(self) -> None:
        """Forget the call log."""
        with self.lock:
            self._calls.clear()

    def inject(self, method: str, path_pattern: str | None, kind: str, *, times: int | None = 1,
               status: int = 502, retry_after: int = 1, seconds: float = 0.0,
               query: dict[str, str] | None = None) -> Fault:
        """Arm a fault on matching routes for `times` calls (None = until cleared); `query`: only requests
        naming these parameters (`{"state": "dismissed"}` faults one listing of a route and not the other).

        kinds: status (answer `status`, e.g. 502), secondary_rate_limit (403 + retry-after),
        rate_limit_429 (429 + retry-after), primary_rate_limit (403, x-ratelimit-remaining 0),
        secondary_rate_limit_no_retry_after / rate_limit_429_no_retry_after (403 / 429 naming no time to wait),
        latency (sleep `seconds`, then answer normally), truncate (answer with the body cut in half),
        drop (close the connection without any response), corrupt (200 with JSON of the wrong shape),
        late_504 (carry the request out, then answer 504 as GitHub's edge does when the backend was slow).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        fault = Fault(method=method.upper(), path_pattern=path_pattern, kind=kind, times=times,
                      status=status, retry_after=retry_after, seconds=seconds, query=query)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self.lock:
            self.faults.clear()

    def take_faults(self, method: str, path: str, query: dict[str, str] | None = None) -> list[Fault]:
        """Return the faults that fire on this request, counting them as fired."""
        with self.lock:
            armed = [f for f in self.faults if f.applies(method, path, query)]
            # Latency faults add up; of the others only the oldest fires, so faults queue in order.
            terminal = [f for f in armed if f.kind != "latency"][:1]
            fired = [f for f in armed if f.kind == "latency"] + terminal
            for fault in fired:
                fault.fired += 1
            return fired

    # ----------------------------------------------------------------- seeding helpers
    def set_app(self, app_id: int, public_key_pem: str, *, slug: str = "gonogo", name: str = "gonogo",
                owner: str = "gonogo-dev", private_key_pem: str | None = None) -> AppRecord:
        """Register the GitHub App whose JWTs the sandbox accepts."""
        self.app = AppRecord(id=app_id, slug=slug, name=name, owner=owner, public_key_pem=public_key_pem,
                             private_key_pem=private_key_pem)
        self.user(owner, "Organization")
        self.user(f"{slug}[bot]", "Bot")
        return self.app

    def user(self, login: str, kind: str = "User") -> str:
        """Make a user known (collaborator permission answers 404 for unknown logins)."""
        self.users.setdefault(login, kind)
        return login

    def user_id(self, login: str) -> int:
        """The account's numeric id, which stays when its login changes."""
        return self.user_ids.get(login) or stable_id(login)

    def rename_user(self, old: str, new: str) -> None:
        """Rename an account, as its owner may at any time: the id, team memberships and permissions follow it."""
        with self.lock:
            self.user_ids[new] = self.user_id(old)
            self.users[new] = self.users.pop(old, "User")
            for members in self.teams.values():
                if old.lower() in members:
                    members[new.lower()] = members.pop(old.lower())
            for repo in self.repos.values():
                if old.lower() in repo.collaborators:
                    repo.collaborators[new.lower()] = repo.collaborators.pop(old.lower())

    def rename_branch(self, full_name: str, old: str, new: str) -> None:
        """Rename a branch, as a repository admin may: its head and files move to the new name, the old name
        resolves to nothing, and a renamed default branch stays the default."""
        with self.lock:
            repo = self.repo(full_name)
            if old in repo.branches:
                repo.branches[new] = repo.branches.pop(old)
            if old in repo.files:
                repo.files[new] = repo.files.pop(old)
            if repo.default_branch == old:
                repo.default_branch = new

    def add_installation(self, installation_id: int, account: str, *, account_type: str = "Organization",
                         repositories: list[str] | None = None) -> Installation:
        """Install the app on an account (optionally on selected repository names only)."""
        inst = Installation(id=installation_id, account=account, account_type=account_type,
                            repositories=repositories)
        self.installations[installation_id] = inst
        self.user(account, account_type)
        return inst

    def add_repo(self, full_name: str, *, default_branch: str = "main", private: bool = True,
                 owner_type: str = "Organization") -> Repo:
        """Create a repository."""
        owner, name = full_name.split("/", 1)
        repo = Repo(owner=owner, name=name, id=stable_id(full_name, 10_000_000), default_branch=default_branch,
                    private=private, owner_type=owner_type, created_at=self.now() - 400 * 86400)
        self.repos[full_name.lower()] = repo
        self.user(owner, owner_type)
        return repo

    def repo(self, full_name: str) -> Repo:
        """Return a repository by owner/name (case-insensitive)."""
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"no repository {full_name!r} in the sandbox; add it with add_repo") from None

    def add_commit(self, full_name: str, *, sha: str | None = None, message: str = "Change things",
                   author: str | None = "octocat", parents: list[str] | None = None,
                   files: Iterable[FileChange | dict[str, Any]] = (), date: float | str | None = None,
                   branch: str | None = None, author_name: str | None = None,
                   author_email: str | None = None) -> Commit:
        """Add a commit; with `branch`, it becomes that branch's head and its parent defaults to the old head."""
        repo = self.repo(full_name)
        if parents is None:
            parents = [repo.branches[branch]] if branch and branch in repo.branches else []
        sha = sha or fake_sha(f"{full_name}:{message}:{self.next_id()}")
        changes = [f if isinstance(f, FileChange) else FileChange(**f) for f in files]
        login = author
        commit = Commit(sha=sha, message=message, author=login, author_name=author_name or (login or "Someone"),
                        author_email=author_email or f"{login or 'someone'}@users.noreply.github.com",
                        date=parse_time(date, self.now()), parents=list(parents), files=changes)
        repo.commits[sha] = commit
        if login:
            self.user(login)
        if branch:
            repo.branches[branch] = sha
        return commit

    def add_check_run(self, full_name: str, head_sha: str, name: str, *, status: str = "completed",
                      conclusion: str | None = "success", app_id: int = 15368,
                      details_url: str | None = None, started_at: float | None = None,
                      completed_at: float | None = None, output: dict[str, Any] | None = None) -> CheckRun:
        """Seed a check run (by default from GitHub Actions, app id 15368)."""
        repo = self.repo(full_name)
        now = self.now()
        run = CheckRun(id=self.next_id(), head_sha=head_sha, name=name, status=status,
                       conclusion=conclusion if status == "completed" else None,
                       started_at=started_at if started_at is not None else now - 120,
                       completed_at=(completed_at if completed_at is not None else now - 10)
                       if status == "completed" else None,
                       details_url=details_url, app_id=app_id, check_suite_id=stable_id(f"{head_sha}:{app_id}"),
                       output=dict(output or {}))
        repo.check_runs.append(run)
        return run

    def add_status(self, full_name: str, sha: str, context: str, state: str, *, description: str | None = None,
                   target_url: str | None = None, creator: str = "ci-bot") -> CommitStatus:
        """Seed a commit status."""
        now = self.now()
        status = CommitStatus(id=self.next_id(), sha=sha, state=state, context=context, description=description,
                              target_url=target_url, created_at=now, updated_at=now, creator=creator)
        self.repo(full_name).statuses.append(status)
        self.user(creator)
        return status

    def add_workflow_run(self, full_name: str, head_sha: str, *, name: str = "CI", run_id: int | None = None,
                         head_branch: str | None = None, status: str = "completed",
                         conclusion: str | None = "success", event: str = "push", actor: str = "octocat",
                         path: str = ".github/workflows/ci.yml",
                         pull_requests: list[int] | None = None) -> WorkflowRun:
        """Seed a workflow run."""
        repo = self.repo(full_name)
        now = self.now()
        run_id = run_id or self.next_id()
        run = WorkflowRun(id=run_id, name=name, head_sha=head_sha,
                          head_branch=head_branch or repo.default_branch, event=event, status=status,
                          conclusion=conclusion if status == "completed" else None,
                          run_number=len(repo.workflow_runs) + 1, workflow_id=stable_id(path, 100_000),
                          path=path, created_at=now - 300, updated_at=now - 5, actor=actor,
                          pull_request_numbers=list(pull_requests or []))
        repo.workflow_runs[run_id] = run
        self.user(actor)
        return run

    def add_artifact(self, full_name: str, run_id: int, name: str, data: bytes, *,
                     expired: bool = False) -> Artifact:
        """Attach an artifact (the zip archive's bytes) to a workflow run."""
        repo = self.repo(full_name)
        now = self.now()
        art = Artifact(id=self.next_id(), name=name, data=data, run_id=run_id, created_at=now - 200,
                       expires_at=now + 90 * 86400, expired=expired)
        repo.artifacts[art.id] = art
        repo.workflow_runs[run_id].artifact_ids.append(art.id)
        return art

    def add_deployment(self, full_name: str, sha: str, environment: str = "production", *,
                       ref: str | None = None, creator: str = "octocat", task: str = "deploy",
                       description: str | None = None, run_id: int | None = None, waiting: bool = True,
                       payload: dict[str, Any] | None = None) -> Deployment:
        """Create a deployment; with `waiting`, a workflow run (created if `run_id` is None) waits on the app."""
        repo = self.repo(full_name)
        if repo.resolve(sha) is None:
            raise ValueError(f"sha {sha} is not a commit of {full_name}; add it with add_commit first")
        dep = Deployment(id=self.next_id(), sha=sha, ref=ref or repo.default_branch, task=task,
                         environment=environment, description=description, creator=creator,
                         created_at=self.now(), payload=dict(payload or {}))
        repo.deployments[dep.id] = dep
        self.user(creator)
        if waiting:
            if run_id is None or run_id not in repo.workflow_runs:
                run = self.add_workflow_run(full_name, sha, name="Deploy", run_id=run_id, status="waiting",
                                            head_branch=dep.ref, actor=creator, path=".github/workflows/deploy.yml")
                run_id = run.id
            dep.run_id = run_id
            repo.gates[(run_id, environment)] = Gate(run_id=run_id, environment=environment, deployment_id=dep.id,
                                                     run_attempt=repo.workflow_runs[run_id].run_attempt)
        return dep

    def add_deployment_status(self, full_name: str, deployment_id: int, state: str, *, description: str = "",
                              target_url: str = "", log_url: str = "", environment_url: str = "",
                              creator: str | None = None) -> DeploymentStatusRecord:
        """Append a status to a deployment."""
        repo = self.repo(full_name)
        dep = repo.deployments[deployment_id]
        rec = DeploymentStatusRecord(id=self.next_id(), deployment_id=deployment_id, state=state,
                                     description=description, environment=dep.environment,
                                     target_url=target_url or log_url, log_url=log_url or target_url,
                                     environment_url=environment_url, created_at=self.now(),
                                     creator=creator or dep.creator)
        dep.statuses.append(rec)
        return rec

    def end_run(self, full_name: str, run_id: int, conclusion: str = "cancelled") -> WorkflowRun:
        """End a workflow run's current attempt now (cancelled by default), stamping updated_at as GitHub does."""
        run = self.repo(full_name).workflow_runs[run_id]
        with self.lock:
            run.status, run.conclusion, run.updated_at = "completed", conclusion, self.now()
        return run

    def rerun(self, full_name: str, run_id: int) -> WorkflowRun:
        """Re-run a workflow run: a new attempt whose gates wait again for an answer."""
        repo = self.repo(full_name)
        run = repo.workflow_runs[run_id]
        run.run_attempt += 1
        run.status, run.conclusion = "waiting", None
        run.run_started_at = self.now()  # each attempt starts anew
        for (gate_run, _env), gate in repo.gates.items():
            if gate_run == run_id:
                gate.run_attempt = run.run_attempt
                gate.answer, gate.answer_comment = None, None
                gate.reports = []
        return run

    def add_pull_request(self, full_name: str, number: int, *, head_sha: str, head_ref: str = "feature",
                         base_ref: str | None = None, title: str = "Change things", user: str = "octocat",
                         body: str | None = None, state: str = "open") -> PullRequest:
        """Open a pull request (its number is also an issue number for comments)."""
        repo = self.repo(full_name)
        base_ref = base_ref or repo.default_branch
        pr = PullRequest(number=number, title=title, user=user, head_ref=head_ref, head_sha=head_sha,
                         base_ref=base_ref, base_sha=repo.branches.get(base_ref, head_sha), state=state,
                         body=body, created_at=self.now() - 3600, id=stable_id(f"{full_name}#{number}", 500_000_000))
        repo.pulls[number] = pr
        repo.issue_numbers.add(number)
        self.user(user)
        return pr

    def add_release(self, full_name: str, tag: str, sha: str, *, name: str | None = None, author: str = "octocat",
                    created_at: float | str | None = None, draft: bool = False,
                    prerelease: bool = False) -> Release:
        """Tag a commit and publish a release of the tag."""
        repo = self.repo(full_name)
        if sha not in repo.commits:
            raise ValueError(f"sha {sha} is not a commit of {full_name}; add it with add_commit first")
        repo.tags[tag] = sha
        release = Release(id=self.next_id(), tag_name=tag, target=sha, name=name or tag, author=author,
                          created_at=parse_time(created_at, self.now()), draft=draft, prerelease=prerelease)
        repo.releases.append(release)
        self.user(author)
        return release

    def add_team_member(self, org: str, team_slug: str, login: str, *, role: str = "member",
                        state: str = "active") -> None:
        """Add a user to an organisation team."""
        self.teams.setdefault((org.lower(), team_slug.lower()), {})[login.lower()] = {"role": role, "state": state}
        self.user(login)

    def remove_team_member(self, org: str, team_slug: str, login: str) -> None:
        """Remove a user from an organisation team."""
        self.teams.get((org.lower(), team_slug.lower()), {}).pop(login.lower(), None)

    def set_collaborator(self, full_name: str, login: str, permission: str) -> None:
        """Give a user a permission on a repository (admin, maintain, write, triage, read)."""
        self.repo(full_name).collaborators[login.lower()] = permission
        self.user(login)

    def dismiss_alert(self, full_name: str, source: str, number: int, by: str | None, *, at: float | None = None,
                      reason: str | None = None, state: str | None = None) -> dict[str, Any]:
        """Close an alert as a person does in GitHub's security tab: code scanning and Dependabot ``dismissed``,
        secret scanning ``resolved`` (``reason`` is its resolution); ``state`` picks another closed state
        (``fixed``, Dependabot's ``auto_dismissed``). The alert's updated_at moves to ``at`` (default: now)."""
        alerts: list[dict[str, Any]] = getattr(self.repo(full_name), f"{source}_alerts")
        [alert] = [a for a in alerts if a["number"] == number]
        when = self.now() if at is None else at
        if source == "secret_scanning":
            alert.update(state=state or "resolved", resolution=reason or "false_positive", resolved_by=by,
                         resolved_at=when)
        else:
            closed = state or "dismissed"
            alert.update(state=closed, dismissed_by=by if closed == "dismissed" else None)
            alert[f"{closed}_at"] = when
            if reason is not None:
                alert["dismissed_reason"] = reason
        alert["updated_at"] = when
        if by is not None:
            self.user(by)
        return alert

    def set_file(self, full_name: str, ref: str, path: str, content: str | bytes) -> None:
        """Put a file at a ref (branch name or sha)."""
        data = content.encode() if isinstance(content, str) else content
        self.repo(full_name).files.setdefault(ref, {})[path] = data

    # ----------------------------------------------------------------- queries for tests
    def gate(self, full_name: str, run_id: int, environment: str) -> Gate:
        """Return the protection-rule gate of a run and environment."""
        return self.repo(full_name).gates[(run_id, environment)]

    def reviews(self, full_name: str | None = None) -> list[GateReview]:
        """Return every protection-rule review call received (accepted and refused), oldest first."""
        with self.lock:
            repos = [self.repo(full_name)] if full_name else list(self.repos.values())
            out = [review for repo in repos for gate in repo.gates.values() for review in gate.history]
        return sorted(out, key=lambda r: r.at)

    def check_runs(self, full_name: str, *, name: str | None = None, head_sha: str | None = None) -> list[CheckRun]:
        """Return check runs of a repository, optionally by name and sha."""
        with self.lock:
            return [run for run in self.repo(full_name).check_runs
                    if (name is None or run.name == name) and (head_sha is None or run.head_sha == head_sha)]

    def comments(self, full_name: str, issue_number: int | None = None) -> list[IssueComment]:
        """Return issue/PR comments of a repository."""
        with self.lock:
            return [c for c in self.repo(full_name).comments.values()
                    if issue_number is None or c.issue_number == issue_number]

    def deployment(self, label: str) -> tuple[Repo, Deployment]:
        """Return a repository and deployment by its scenario label."""
        full_name, dep_id = self.named_deployments[label]
        repo = self.repo(full_name)
        return repo, repo.deployments[dep_id]

    def iter_repos(self) -> Iterator[Repo]:
        """Iterate over repositories."""
        return iter(list(self.repos.values()))

    # ----------------------------------------------------------------- scenario loading
    @classmethod
    def from_scenario(cls, source: str | Path | dict[str, Any], *, corpus_root: str | Path | None = None,
                      ) -> SandboxState:
        """Build a state from a scenario file (YAML or JSON) or an already-parsed dict."""
        from github_app.sandbox.scenario import load_scenario

        return load_scenario(cls(), source, corpus_root=corpus_root)
