"""The sandbox's HTTP routes: GitHub's REST API for the operations gonogo uses."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import compile_path

from github_app.sandbox.auth import (
    AuthError,
    Caller,
    authenticate,
    can_access,
    issue_installation_token,
    verify_app_jwt,
)
from github_app.sandbox.faults import DOCS, FaultAndLogLayer, Message, Receive, Scope, Send, read_body
from github_app.sandbox.render import Renderer, alert_created, alert_updated
from github_app.sandbox.state import (
    Annotation,
    CheckRun,
    Commit,
    CommitStatus,
    Deployment,
    GateReview,
    IssueComment,
    Release,
    Repo,
    SandboxState,
    iso,
    stable_id,
)
from github_app.sandbox.storage import signature_valid, signed_query

log = logging.getLogger(__name__)

MAX_REVIEW_COMMENT = 1024
MAX_COMPARE_FILES = 300
MAX_PULL_FILES = 3000
MAX_STATUS_REPORTS = 10
MAX_ANNOTATIONS_PER_REQUEST = 50
MAX_ACTIONS = 3
CHECK_STATUSES = {"queued", "in_progress", "completed", "waiting", "requested", "pending"}
CHECK_CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                     "timed_out"}
STATUS_STATES = {"error", "failure", "pending", "success"}
DEPLOYMENT_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


class ApiError(Exception):
    """An error answer in GitHub's shape."""

    def __init__(self, status: int, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def response(self) -> JSONResponse:
        """Render the error as GitHub does."""
        body: dict[str, Any] = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors is not None:
            body["errors"] = self.errors
        return FastJSONResponse(body, status_code=self.status)


def invalid(message: str, field_name: str | None = None, resource: str = "Request") -> ApiError:
    """Build a 422 Validation Failed error."""
    error: dict[str, Any] = {"resource": resource, "code": "custom", "message": message}
    if field_name:
        error["field"] = field_name
    return ApiError(422, "Validation Failed", errors=[error])


NOT_FOUND = "Not Found"


@dataclass
class Ctx:
    """What a handler needs: the request, the parsed body, the caller and the repository."""

    request: Request
    state: SandboxState
    render: Renderer
    body: Any
    caller: Caller | None = None
    repo: Repo | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)  # the last value of each query parameter

    @property
    def params(self) -> dict[str, Any]:
        """Return the path parameters."""
        return dict(self.request.path_params)

    def q(self, name: str, default: str | None = None) -> str | None:
        """Return a query parameter."""
        return self.query.get(name, default)

    def need_repo(self) -> Repo:
        """Return the repository the route is about."""
        assert self.repo is not None, "route declared without a repository"
        return self.repo

    def json_body(self) -> dict[str, Any]:
        """Return the JSON object body or refuse."""
        if not isinstance(self.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.body


Handler = Callable[[Ctx], Response]


Endpoint = Callable[[Request, bytes], Response]


def endpoint(handler: Handler, *, auth: str = "installation", with_repo: bool = True) -> Endpoint:
    """Wrap a synchronous handler: parse the body, authenticate, find the repo, map errors."""

    def run(request: Request, raw: bytes) -> Response:
        state: SandboxState = request.scope["app"].sandbox_state
        if (header(request.scope, b"content-type") or "").startswith("application/x-www-form-urlencoded"):
            body: Any = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))  # a web page's form
        else:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return ApiError(400, "Problems parsing JSON").response()
        render = Renderer(state, _base_url(request))
        ctx = Ctx(request=request, state=state, render=render, body=body, query=query_of(request.scope))
        with state.lock:
            try:
                if auth == "app":
                    verify_app_jwt(state, header(request.scope, b"authorization"))
                elif auth == "installation":
                    ctx.caller = authenticate(state, header(request.scope, b"authorization"))
                    request.scope.get("sandbox", {})["installation_id"] = ctx.caller.installation_id
                    need_permission(ctx.caller, handler)
                if with_repo:
                    owner, name = request.path_params["owner"], request.path_params["repo"]
                    repo = state.repos.get(f"{owner}/{name}".lower())
                    if repo is None or (ctx.caller is not None and not can_access(state, ctx.caller, owner, name)):
                        raise ApiError(404, NOT_FOUND)
                    ctx.repo = repo
                response = handler(ctx)
            except AuthError as exc:
                return ApiError(exc.status, exc.message).response()
            except ApiError as exc:
                return exc.response()
        for key, value in ctx.headers.items():
            response.headers[key] = value
        return response

    return run


# --------------------------------------------------------------------------- installation permissions

# What an installation token needs per route; without it GitHub answers 403 "Resource not accessible by
# integration" (routes not listed here are not checked).
ROUTE_PERMISSIONS: dict[str, tuple[str, str]] = {
    "code_scanning_alerts": ("security_events", "read"),
    "dependabot_alerts": ("vulnerability_alerts", "read"),
    "secret_scanning_alerts": ("secret_scanning_alerts", "read"),
    "list_pull_files": ("pull_requests", "read"),
    "list_releases": ("contents", "read"),
}
# Routes GitHub opens to any one of several permissions: a comment on an issue or pull request needs issues or
# pull requests write (GitHub's list of the permissions each endpoint takes names either).
ROUTE_ANY_PERMISSION: dict[str, tuple[tuple[str, str], ...]] = {
    "create_comment": (("issues", "write"), ("pull_requests", "write")),
}
NOT_ACCESSIBLE = "Resource not accessible by integration"


def need_permission(caller: Caller, handler: Handler) -> None:
    """Refuse a call whose installation token lacks the permission its route needs, as GitHub does."""
    single = ROUTE_PERMISSIONS.get(handler.__name__)
    options = (single,) if single is not None else ROUTE_ANY_PERMISSION.get(handler.__name__)
    if options is None:
        return
    for name, level in options:
        granted = caller.token.permissions.get(name)
        if granted == "write" or granted == level:
            return
    raise ApiError(403, NOT_ACCESSIBLE)


def header(scope: Scope, name: bytes) -> str | None:
    """Return the first value of a request header (ASGI header names are lower-case), as Starlette's Headers.get."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def query_of(scope: Scope) -> dict[str, str]:
    """Return the query parameters, the last value of each (as Starlette's QueryParams.get), parsed once per call."""
    info = scope.get("sandbox")
    if info is not None and "query" in info:
        return info["query"]  # type: ignore[no-any-return]
    raw = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


_BASE_URLS: dict[tuple[Any, ...], str] = {}


def _base_url(request: Request) -> str:
    """Return str(request.base_url), remembered per scheme, Host header, server address and root path."""
    scope = request.scope
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    key = (scope.get("scheme"), host, scope.get("server"), scope.get("root_path"), scope.get("app_root_path"))
    url = _BASE_URLS.get(key)
    if url is None:
        if len(_BASE_URLS) > 256:  # many distinct Host headers: forget them rather than grow without bound
            _BASE_URLS.clear()
        url = _BASE_URLS[key] = str(request.base_url)
    return url


# What orjson must not render itself, so that those values go through json.dumps as before (and fail as before)
_ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


class FastJSONResponse(JSONResponse):
    """Starlette's compact JSON response, encoded by orjson: an order of magnitude less CPU for big bodies.

    Anything orjson would encode differently from json.dumps (non-string keys, integers beyond 64 bits,
    subclasses of the JSON types, dataclasses, dates) falls back to Starlette's json.dumps.
    """

    def render(self, content: Any) -> bytes:
        """Encode the body."""
        try:
            return orjson.dumps(content, option=_ORJSON_STRICT)
        except TypeError:
            return super().render(content)


def ok(body: Any, status: int = 200) -> JSONResponse:
    """Answer with JSON."""
    return FastJSONResponse(body, status_code=status)


def int_param(ctx: Ctx, name: str) -> int:
    """Read an integer path parameter (404 when it is not a number, as GitHub answers)."""
    try:
        return int(ctx.params[name])
    except ValueError:
        raise ApiError(404, NOT_FOUND) from None


T = TypeVar("T")


def by_id(ctx: Ctx, items: Mapping[int, T], name: str) -> T:
    """The object a numeric path parameter names, or GitHub's 404."""
    found = items.get(int_param(ctx, name))
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return found


def paginate(ctx: Ctx, items: list[Any]) -> list[Any]:
    """Slice a list by per_page/page and set GitHub's Link header."""
    try:
        per_page = max(1, min(100, int(ctx.q("per_page") or 30)))
        page = max(1, int(ctx.q("page") or 1))
    except ValueError:
        raise invalid("per_page and page must be integers") from None
    last = max(1, -(-len(items) // per_page))

    def url(n: int) -> str:
        base = str(ctx.request.url.replace(query=""))
        other = [(k, v) for k, v in ctx.request.query_params.multi_items() if k not in ("page", "per_page")]
        return base + "?" + urlencode(other + [("per_page", str(per_page)), ("page", str(n))])

    links = []
    if page > 1:
        links += [f'<{url(page - 1)}>; rel="prev"']
    if page < last:
        links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
    if page > 1:
        links += [f'<{url(1)}>; rel="first"']
    if links:
        ctx.headers["link"] = ", ".join(links)
    return items[(page - 1) * per_page: page * per_page]


def csv_param(ctx: Ctx, name: str) -> set[str] | None:
    """Read a comma-separated filter."""
    value = ctx.q(name)
    return {v.strip() for v in value.split(",") if v.strip()} if value else None


# --------------------------------------------------------------------------- app and installations

def create_access_token(ctx: Ctx) -> Response:
    """POST /app/installations/{installation_id}/access_tokens."""
    body = ctx.body if isinstance(ctx.body, dict) else {}
    repositories = body.get("repositories")
    token = issue_installation_token(ctx.state, int_param(ctx, "installation_id"), repositories=repositories,
                                     permissions=body.get("permissions"))
    return ok({"token": token.token, "expires_at": iso(token.expires_at), "permissions": token.permissions,
               "repository_selection": "all" if token.repositories is None else "selected"}, 201)


def get_installation(ctx: Ctx) -> Response:
    """GET /app/installations/{installation_id}."""
    inst = ctx.state.installations.get(int_param(ctx, "installation_id"))
    if inst is None or ctx.state.app is None:
        raise ApiError(404, NOT_FOUND)
    return ok(ctx.render.installation(inst, ctx.state.app))


def get_repo_installation(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/installation."""
    owner, name = ctx.params["owner"], ctx.params["repo"]
    app = ctx.state.app
    for inst in ctx.state.installations.values():
        covers = inst.repositories is None or name.lower() in {r.lower() for r in inst.repositories}
        if (inst.account.lower() == owner.lower() and covers and app is not None
                and f"{owner}/{name}".lower() in ctx.state.repos):
            return ok(ctx.render.installation(inst, app))
    raise ApiError(404, NOT_FOUND)


def get_app(ctx: Ctx) -> Response:
    """GET /app."""
    assert ctx.state.app is not None
    body = ctx.render.app(ctx.state.app.id)
    body["installations_count"] = len(ctx.state.installations)
    return ok(body)


# --------------------------------------------------------------------------- repositories and commits

def get_repo(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}."""
    return ok(ctx.render.repo(ctx.need_repo()))


def files_at(repo: Repo, ref: str) -> dict[str, bytes] | None:
    """Return the files at a ref: stored for that ref, or for the branch whose head it is."""
    if ref in repo.files:
        return repo.files[ref]
    sha = repo.resolve(ref)
    if sha is None:
        return None
    if sha in repo.files:
        return repo.files[sha]
    for branch, head in repo.branches.items():
        if head == sha and branch in repo.files:
            return repo.files[branch]
    return {}


def get_content(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/contents/{path}."""
    repo = ctx.need_repo()
    ref = ctx.q("ref") or repo.default_branch
    files = files_at(repo, ref)
    if files is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    path = ctx.params["path"].strip("/")
    ctx.headers["vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"  # the answer depends on the media type asked
    if path in files:
        # GitHub tags each answer with an ETag and answers a matching If-None-Match with an empty 304
        # (which costs no rate limit)
        # (its ETag depends on the media type too, as the body does)
        accept = (ctx.request.headers.get("accept") or "").lower().encode()
        etag = 'W/"' + hashlib.sha256(repo.full_name.encode() + b"\0" + path.encode() + b"\0" + accept + b"\0"
                                      + files[path]).hexdigest() + '"'
        ctx.headers["etag"] = etag
        if etag in [t.strip() for t in (ctx.request.headers.get("if-none-match") or "").split(",")]:
            return Response(status_code=304, headers={"etag": etag})
        data = files[path]
        if len(data) > INLINE_CONTENT_LIMIT:
            return _large_content(ctx, repo, path, data, ref)
        return ok(ctx.render.content_file(repo, path, data, ref))
    prefix = path + "/"
    children = sorted({p[len(prefix):].split("/", 1)[0] for p in files if p.startswith(prefix)})
    if not children:
        raise ApiError(404, NOT_FOUND)
    listing = []
    for child in children:
        child_path = prefix + child
        if child_path in files:
            entry = ctx.render.content_file(repo, child_path, files[child_path], ref)
            entry.pop("content"), entry.pop("encoding")
        else:
            url = f"{ctx.render.api}/repos/{repo.full_name}/contents/{child_path}?ref={ref}"
            entry = {"type": "dir", "size": 0, "name": child, "path": child_path, "sha": "0" * 40, "url": url,
                     "git_url": None, "html_url": None, "download_url": None,
                     "_links": {"self": url, "git": None, "html": None}}
        listing.append(entry)
    return ok(listing)


# The contents API sends a file inline only up to 1 MB. Above that, the JSON media types answer 403 "too_large",
# the object media type sends the entry with an empty content and encoding "none", and only the raw media type
# sends the bytes (REST docs of "Get repository content"; the 403's message and error code as GitHub sends them).
# gonogo never asks for raw bytes, so the sandbox does not serve them: it refuses them as JSON, which is stricter.
# The sandbox reads "1 MB" as 1,000,000 bytes, the stricter of its two readings.
INLINE_CONTENT_LIMIT = 1_000_000
TOO_LARGE_MESSAGE = (
    "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, but you can "
    "use the Git Data API to request blobs up to 100 MB in size."
)


def _large_content(ctx: Ctx, repo: Repo, path: str, data: bytes, ref: str) -> Response:
    """A file over the inline limit, answered by the media type asked for, as GitHub does."""
    accept = (ctx.request.headers.get("accept") or "").lower()
    if "application/vnd.github.object" in accept:
        entry = ctx.render.content_file(repo, path, data, ref)
        entry.update(content="", encoding="none")
        return ok(entry)
    raise ApiError(403, TOO_LARGE_MESSAGE, errors=[{"resource": "Blob", "field": "data", "code": "too_large"}])


def ancestry(repo: Repo, sha: str) -> list[str]:
    """List a commit and its known ancestors, breadth first."""
    seen: list[str] = []
    seen_set: set[str] = set()
    queue = [sha]
    while queue:
        current = queue.pop(0)
        if current in seen_set:
            continue
        seen_set.add(current)
        seen.append(current)
        commit = repo.commits.get(current)
        if commit is not None:
            queue.extend(commit.parents)
    return seen


def need_commit(repo: Repo, ref: str) -> Commit:
    """Resolve a ref to a known commit or answer 404/422 as GitHub does."""
    sha = repo.resolve(ref)
    if sha is None or sha not in repo.commits:
        raise ApiError(422 if len(ref) == 40 else 404, f"No commit found for SHA: {ref}")
    return repo.commits[sha]


def compare(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/compare/{base}...{head}."""
    repo = ctx.need_repo()
    basehead = ctx.params["basehead"]
    if "..." not in basehead:
        raise ApiError(404, NOT_FOUND)
    base_ref, head_ref = basehead.split("...", 1)
    base_sha, head_sha = repo.resolve(base_ref), repo.resolve(head_ref)
    if base_sha is None or head_sha is None or base_sha not in repo.commits or head_sha not in repo.commits:
        raise ApiError(404, NOT_FOUND)
    explicit = repo.compare_table.get(f"{base_sha}...{head_sha}")
    if explicit is not None:
        ahead, behind, merge_base = list(explicit), [], base_sha
    else:
        head_line, base_line = ancestry(repo, head_sha), ancestry(repo, base_sha)
        head_set, base_set = set(head_line), set(base_line)
        common = [sha for sha in head_line if sha in base_set]
        if not common:
            raise ApiError(404, f"No common ancestor between {base_ref} and {head_ref}.")
        merge_base = common[0]
        ahead = [sha for sha in head_line if sha not in base_set and sha in repo.commits]
        behind = [sha for sha in base_line if sha not in head_set and sha in repo.commits]
        ahead.sort(key=lambda sha: repo.commits[sha].date)
    status = ("identical" if not ahead and not behind else "ahead" if not behind
              else "behind" if not ahead else "diverged")
    # GitHub lists at most 300 files of a comparison, whatever the page asked for
    files = changed_files(ctx, repo, ahead, head_sha)[:MAX_COMPARE_FILES]
    url = f"{ctx.render.api}/repos/{repo.full_name}/compare/{base_ref}...{head_ref}"
    html = f"{ctx.render.html}/{repo.full_name}/compare/{base_ref}...{head_ref}"
    page = paginate(ctx, ahead) if ("page" in ctx.query or "per_page" in ctx.query) \
        else ahead[:250]
    return ok({
        "url": url, "html_url": html, "permalink_url": html, "diff_url": html + ".diff",
        "patch_url": html + ".patch", "base_commit": ctx.render.commit(repo, repo.commits[base_sha]),
        "merge_base_commit": ctx.render.commit(repo, repo.commits[merge_base]) if merge_base in repo.commits
        else ctx.render.commit(repo, repo.commits[base_sha]),
        "status": status, "ahead_by": len(ahead), "behind_by": len(behind), "total_commits": len(ahead),
        "commits": [ctx.render.commit(repo, repo.commits[sha]) for sha in page], "files": files,
    })


def changed_files(ctx: Ctx, repo: Repo, shas: list[str], head_sha: str) -> list[dict[str, Any]]:
    """Render the files changed by ``shas`` (oldest first), each file once with its summed line counts."""
    totals: dict[str, list[Any]] = {}
    for sha in shas:
        for change in repo.commits[sha].files:
            entry = totals.setdefault(change.filename, [change.status, 0, 0, change.previous_filename])
            entry[1] += change.additions
            entry[2] += change.deletions
            if entry[0] == "added" and change.status == "removed":
                entry[0] = "removed"
    return [ctx.render.diff_entry(repo, head_sha, name, st, adds, dels, prev)
            for name, (st, adds, dels, prev) in totals.items()]


def list_commits(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits."""
    repo = ctx.need_repo()
    start_ref = ctx.q("sha") or repo.default_branch
    start = repo.resolve(start_ref)
    if start is None:
        raise ApiError(404, NOT_FOUND)
    author, path = ctx.q("author"), ctx.q("path")
    since, until = ctx.q("since"), ctx.q("until")
    found = [repo.commits[sha] for sha in ancestry(repo, start) if sha in repo.commits]
    if author:
        found = [c for c in found if author.lower() in ((c.author or "").lower(), c.author_email.lower())]
    if path:
        found = [c for c in found if any(f.filename == path or f.filename.startswith(path.rstrip("/") + "/")
                                         for f in c.files)]
    if since:
        found = [c for c in found if iso(c.date) >= since]
    if until:
        found = [c for c in found if iso(c.date) <= until]
    found.sort(key=lambda c: c.date, reverse=True)
    return ok([ctx.render.commit(repo, c) for c in paginate(ctx, found)])


def get_commit(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits/{ref}."""
    repo = ctx.need_repo()
    return ok(ctx.render.commit(repo, need_commit(repo, ctx.params["ref"]), with_files=True))


def commit_pulls(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls."""
    repo = ctx.need_repo()
    commit = need_commit(repo, ctx.params["ref"])
    pulls = [pr for pr in repo.pulls.values() if pr.head_sha == commit.sha or pr.base_sha == commit.sha]
    return ok([ctx.render.pull(repo, pr) for pr in paginate(ctx, pulls)])


def get_pull(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}."""
    repo = ctx.need_repo()
    pr = by_id(ctx, repo.pulls, "pull_number")
    return ok(ctx.render.pull(repo, pr))


# --------------------------------------------------------------------------- checks and statuses

def _apply_check_fields(ctx: Ctx, run: CheckRun, body: dict[str, Any]) -> None:
    now = ctx.state.now()
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"]:
            raise invalid("name must be a non-empty string", "name", "CheckRun")
        run.name = body["name"]
    for key in ("details_url", "external_id"):
        if key in body:
            setattr(run, key, body[key])
    if "started_at" in body:
        run.started_at = _parse_when(body["started_at"], now)
    status = body.get("status")
    conclusion = body.get("conclusion")
    if status is not None and status not in CHECK_STATUSES:
        raise invalid(f"status is not included in the list: {status}", "status", "CheckRun")
    if conclusion is not None and conclusion not in CHECK_CONCLUSIONS:
        raise invalid(f"conclusion is not included in the list: {conclusion}", "conclusion", "CheckRun")
    if status == "completed" and conclusion is None and run.conclusion is None:
        raise invalid("conclusion must be provided when status is completed", "conclusion", "CheckRun")
    if conclusion is not None:
        run.status, run.conclusion = "completed", conclusion
        run.completed_at = _parse_when(body.get("completed_at"), now) if body.get("completed_at") else now
    elif status is not None:
        run.status = status
        if status == "in_progress" and run.started_at is None:
            run.started_at = now
    if run.started_at is None:
        run.started_at = now
    output = body.get("output")
    if output is not None:
        if not isinstance(output, dict) or not output.get("title") or not output.get("summary"):
            raise invalid("output needs a title and a summary", "output", "CheckRun")
        for key in ("summary", "text"):
            supplied = utf8_size(output.get(key) or "")
            if supplied > MAX_OUTPUT_BYTES:
                # GitHub says "characters" but counts UTF-8 bytes
                raise ApiError(422, f"Invalid request.\n\nOnly {MAX_OUTPUT_BYTES} characters are allowed; "
                                    f"{supplied} were supplied.")
        annotations = output.get("annotations") or []
        if len(annotations) > MAX_ANNOTATIONS_PER_REQUEST:
            raise invalid("at most 50 annotations per request", "output.annotations", "CheckRun")
        for a in annotations:
            _check_annotation_sizes(a)
            try:
                run.annotations.append(Annotation(
                    path=a["path"], start_line=int(a["start_line"]), end_line=int(a["end_line"]),
                    annotation_level=a["annotation_level"], message=a["message"], title=a.get("title"),
                    raw_details=a.get("raw_details"), start_column=a.get("start_column"),
                    end_column=a.get("end_column")))
            except (KeyError, TypeError, ValueError):
                raise invalid("annotation needs path, start_line, end_line, annotation_level and message",
                              "output.annotations", "CheckRun") from None
        run.output = {k: output.get(k) for k in ("title", "summary", "text")}
    actions = body.get("actions")
    if actions is not None:
        if len(actions) > MAX_ACTIONS:
            raise invalid("at most 3 actions", "actions", "CheckRun")
        for action in actions:
            if not (0 < len(action.get("label", "")) <= 20 and 0 < len(action.get("description", "")) <= 40
                    and 0 < len(action.get("identifier", "")) <= 20):
                raise invalid("action label and identifier must be 1-20 characters, description 1-40",
                              "actions", "CheckRun")
        run.actions = [dict(a) for a in actions]


# --------------------------------------------------------------------------- size limits in bytes

MAX_OUTPUT_BYTES = 65535  # a check run's output.summary and output.text
MAX_ANNOTATION_BYTES = 65535  # an annotation's message and raw_details (64 KB)
MAX_ANNOTATION_TITLE = 255
MAX_COMMENT_BYTES = 65536  # an issue comment's body


def utf8_size(value: Any) -> int:
    """Return the size GitHub measures a text field by: its UTF-8 bytes."""
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


def _check_annotation_sizes(a: Any) -> None:
    if not isinstance(a, dict):
        return
    for key, limit in (("message", MAX_ANNOTATION_BYTES), ("raw_details", MAX_ANNOTATION_BYTES),
                       ("title", MAX_ANNOTATION_TITLE)):
        if utf8_size(a.get(key)) > limit:
            raise invalid(f"{key} is too long (maximum is {limit} characters)", f"output.annotations.{key}",
                          "CheckRun")


def _parse_when(value: Any, default: float) -> float:
    from github_app.sandbox.state import parse_time

    try:
        return parse_time(value, default)
    except (TypeError, ValueError):
        raise invalid(f"invalid timestamp {value!r}") from None


def create_check_run(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/check-runs."""
    repo, body = ctx.need_repo(), ctx.json_body()
    head_sha = body.get("head_sha")
    if not body.get("name") or not head_sha:
        raise invalid("name and head_sha are required", "name", "CheckRun")
    if repo.resolve(head_sha) != head_sha:
        raise invalid(f"No commit found for SHA: {head_sha}", "head_sha", "CheckRun")
    app_id = ctx.state.app.id if ctx.state.app else 0
    run = CheckRun(id=ctx.state.next_id(), head_sha=head_sha, name=body["name"], app_id=app_id,
                   check_suite_id=stable_id(f"{head_sha}:{app_id}"))
    _apply_check_fields(ctx, run, body)
    repo.check_runs.append(run)
    return ok(ctx.render.check_run(repo, run), 201)


def _find_check_run(ctx: Ctx) -> CheckRun:
    ident = int_param(ctx, "check_run_id")
    for run in reversed(ctx.need_repo().check_runs):  # ids are unique; the run asked for is usually a recent one
        if run.id == ident:
            return run
    raise ApiError(404, NOT_FOUND)


def update_check_run(ctx: Ctx) -> Response:
    """PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}."""
    run = _find_check_run(ctx)
    if ctx.state.app is None or run.app_id != ctx.state.app.id:
        raise ApiError(403, "Invalid app_id `%s` - check run can only be modified by the GitHub App that "
                            "created it." % (ctx.state.app.id if ctx.state.app else 0))
    _apply_check_fields(ctx, run, ctx.json_body())
    return ok(ctx.render.check_run(ctx.need_repo(), run))


def get_check_run(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/check-runs/{check_run_id}."""
    return ok(ctx.render.check_run(ctx.need_repo(), _find_check_run(ctx)))


def list_annotations(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations."""
    run = _find_check_run(ctx)
    indexes = paginate(ctx, list(range(len(run.annotations))))
    return ok([ctx.render.annotation(ctx.need_repo(), run, i) for i in indexes])


def list_check_runs_for_ref(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits/{ref}/check-runs."""
    repo = ctx.need_repo()
    sha = need_commit(repo, ctx.params["ref"]).sha
    runs = [r for r in repo.check_runs if r.head_sha == sha]
    if ctx.q("check_name"):
        runs = [r for r in runs if r.name == ctx.q("check_name")]
    if ctx.q("status"):
        runs = [r for r in runs if r.status == ctx.q("status")]
    if ctx.q("app_id"):
        runs = [r for r in runs if str(r.app_id) == ctx.q("app_id")]
    if (ctx.q("filter") or "latest") == "latest":
        latest: dict[tuple[str, int], CheckRun] = {}
        for run in runs:
            latest[(run.name, run.app_id)] = run  # later ids win: the most recent run of each name
        runs = list(latest.values())
    runs.sort(key=lambda r: r.id, reverse=True)
    page = paginate(ctx, runs)
    return ok({"total_count": len(runs), "check_runs": [ctx.render.check_run(repo, r) for r in page]})


def _statuses_for(repo: Repo, sha: str) -> list[CommitStatus]:
    return sorted((s for s in repo.statuses if s.sha == sha), key=lambda s: s.id, reverse=True)


def list_statuses(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits/{ref}/statuses."""
    repo = ctx.need_repo()
    sha = need_commit(repo, ctx.params["ref"]).sha
    return ok([ctx.render.status(repo, s) for s in paginate(ctx, _statuses_for(repo, sha))])


def combined_status(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/commits/{ref}/status."""
    repo = ctx.need_repo()
    sha = need_commit(repo, ctx.params["ref"]).sha
    latest: dict[str, CommitStatus] = {}
    for status in _statuses_for(repo, sha):
        latest.setdefault(status.context, status)
    states = {s.state for s in latest.values()}
    combined = ("failure" if states & {"failure", "error"} else "pending" if "pending" in states or not states
                else "success")
    statuses = list(latest.values())
    page = paginate(ctx, statuses)
    return ok({"state": combined, "statuses": [ctx.render.status(repo, s, with_creator=False) for s in page],
               "sha": sha, "total_count": len(statuses), "repository": ctx.render.minimal_repo(repo),
               "commit_url": f"{ctx.render.api}/repos/{repo.full_name}/commits/{sha}",
               "url": f"{ctx.render.api}/repos/{repo.full_name}/commits/{sha}/status"})


def create_status(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/statuses/{sha}."""
    repo, body = ctx.need_repo(), ctx.json_body()
    sha = ctx.params["sha"]
    if repo.resolve(sha) != sha:
        raise invalid(f"No commit found for SHA: {sha}", "sha", "Status")
    if body.get("state") not in STATUS_STATES:
        raise invalid("state is not included in the list", "state", "Status")
    now = ctx.state.now()
    bot = f"{ctx.state.app.slug}[bot]" if ctx.state.app else "sandbox[bot]"
    status = CommitStatus(id=ctx.state.next_id(), sha=sha, state=body["state"],
                          context=body.get("context") or "default", description=body.get("description"),
                          target_url=body.get("target_url"), created_at=now, updated_at=now, creator=bot)
    repo.statuses.append(status)
    return ok(ctx.render.status(repo, status), 201)


# --------------------------------------------------------------------------- actions

def list_workflow_runs(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/actions/runs."""
    repo = ctx.need_repo()
    runs = list(repo.workflow_runs.values())
    for name, attr in (("head_sha", "head_sha"), ("branch", "head_branch"), ("event", "event"),
                       ("actor", "actor")):
        value = ctx.q(name)
        if value:
            runs = [r for r in runs if getattr(r, attr) == value]
    if ctx.q("status"):
        wanted = ctx.q("status")
        runs = [r for r in runs if wanted in (r.status, r.conclusion)]
    runs.sort(key=lambda r: r.id, reverse=True)  # after filtering: sorting every run of the repository cost more
    page = paginate(ctx, runs)
    return ok({"total_count": len(runs), "workflow_runs": [ctx.render.workflow_run(repo, r) for r in page]})


def get_workflow_run(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}."""
    repo = ctx.need_repo()
    run = by_id(ctx, repo.workflow_runs, "run_id")
    return ok(ctx.render.workflow_run(repo, run))


def list_run_artifacts(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts."""
    repo = ctx.need_repo()
    run = by_id(ctx, repo.workflow_runs, "run_id")
    arts = [repo.artifacts[i] for i in run.artifact_ids]
    if ctx.q("name"):
        arts = [a for a in arts if a.name == ctx.q("name")]
    direction = ctx.q("direction") or "desc"  # GitHub lists the newest first unless asked otherwise
    if direction not in ("asc", "desc"):
        raise invalid("direction must be asc or desc", "direction")
    arts.sort(key=lambda a: a.id, reverse=direction == "desc")
    page = paginate(ctx, arts)
    return ok({"total_count": len(arts), "artifacts": [ctx.render.artifact(repo, a) for a in page]})


def get_artifact(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}."""
    repo = ctx.need_repo()
    art = by_id(ctx, repo.artifacts, "artifact_id")
    return ok(ctx.render.artifact(repo, art))


def download_artifact(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip: redirect to a short-lived blob URL."""
    repo = ctx.need_repo()
    art = by_id(ctx, repo.artifacts, "artifact_id")
    if ctx.params["archive_format"] != "zip":
        raise ApiError(404, NOT_FOUND)
    if art.expired:
        raise ApiError(410, "Artifact has expired")
    # another host when the storage listener runs (as GitHub's storage is), else this one
    storage = ctx.state.storage_url or f"{ctx.render.api}/_sandbox"
    path = f"/blobs/{art.blob_key}/{art.id}.zip"
    return Response(status_code=302, headers={"location": f"{storage}{path}?{signed_query(ctx.state, path)}"})


def serve_blob(ctx: Ctx) -> Response:
    """GET /_sandbox/blobs/{key}/{name}: the pre-signed download (no Authorization needed)."""
    key = ctx.params["key"]
    if not signature_valid(ctx.state, f"/blobs/{key}/{ctx.params['name']}", ctx.query):
        return Response(b"<Error><Code>AuthenticationFailed</Code></Error>", status_code=403,
                        media_type="application/xml")
    for repo in ctx.state.repos.values():
        for art in repo.artifacts.values():
            if art.blob_key == key:
                return Response(art.data, media_type="application/zip",
                                headers={"content-disposition": f'attachment; filename="{art.name}.zip"'})
    return Response(b"<Error><Code>BlobNotFound</Code></Error>", status_code=404, media_type="application/xml")


def review_custom_gate(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule."""
    repo, body = ctx.need_repo(), ctx.json_body()
    run_id = int_param(ctx, "run_id")
    run = repo.workflow_runs.get(run_id)
    if run is None:
        raise ApiError(404, NOT_FOUND)
    env = body.get("environment_name")
    state_value = body.get("state")
    comment = body.get("comment") or ""
    gate = repo.gates.get((run_id, env)) if isinstance(env, str) else None
    installation = ctx.caller.installation_id if ctx.caller else None

    def refuse(error: ApiError) -> ApiError:
        if gate is not None:
            gate.history.append(GateReview(run_id=run_id, run_attempt=run.run_attempt, environment=env or "",
                                           state=state_value, comment=comment, at=ctx.state.now(),
                                           installation_id=installation, accepted=False,
                                           refusal=error.errors[0]["message"] if error.errors else error.message))
        return error

    if not isinstance(env, str) or not env:
        raise refuse(invalid("environment_name is required", "environment_name"))
    if gate is None:
        raise refuse(invalid(f"No pending deployment protection rule for environment '{env}' on run {run_id}",
                             "environment_name"))
    if not isinstance(comment, str) or utf8_size(comment) > MAX_REVIEW_COMMENT:
        raise refuse(invalid("comment is too long (maximum is 1024 characters)", "comment"))
    if state_value is not None and state_value not in ("approved", "rejected"):
        raise refuse(invalid("state must be approved or rejected", "state"))
    if not gate.waiting:
        raise refuse(invalid(f"The deployment protection rule for '{env}' on run {run_id} has already been "
                             f"{gate.answer}", "state"))
    if state_value is None:
        if not comment:
            raise refuse(invalid("comment is required when state is not provided", "comment"))
        if len(gate.reports) >= MAX_STATUS_REPORTS:
            raise refuse(invalid("A deployment protection rule can have at most 10 status reports", "comment"))
        gate.reports.append(comment)
    else:
        gate.answer, gate.answer_comment = state_value, comment
        run.status, run.conclusion = ("in_progress", None) if state_value == "approved" else ("completed", "failure")
        run.updated_at = ctx.state.now()
    gate.history.append(GateReview(run_id=run_id, run_attempt=run.run_attempt, environment=env, state=state_value,
                                   comment=comment, at=ctx.state.now(), installation_id=installation, accepted=True))
    log.info("sandbox.review", extra={"run_id": run_id, "environment": env, "state": state_value})
    return Response(status_code=204)


# --------------------------------------------------------------------------- alerts

def _sorted_alerts(ctx: Ctx, alerts: list[dict[str, Any]], sorts: tuple[str, ...]) -> list[dict[str, Any]]:
    """Order alerts as GitHub does: by ``sort`` (``created`` unless named; ``updated`` is when the state last
    changed, a dismissal or a fix included), ``direction`` ``desc`` unless named."""
    sort, direction = ctx.q("sort") or "created", ctx.q("direction") or "desc"
    if sort not in sorts:
        raise invalid(f"sort must be one of {', '.join(sorts)}")
    if direction not in ("asc", "desc"):
        raise invalid("direction must be asc or desc")
    now = ctx.state.now()

    def key(a: dict[str, Any]) -> tuple[float, int]:
        if sort == "number":
            return (0.0, a["number"])
        moment = alert_updated(a, now) if sort == "updated" else alert_created(a, now)
        return (moment, a["number"])

    return sorted(alerts, key=key, reverse=direction == "desc")


def _alert_page(ctx: Ctx, alerts: list[dict[str, Any]], sorts: tuple[str, ...] = ("created", "updated")) -> list[dict[str, Any]]:
    return paginate(ctx, _sorted_alerts(ctx, alerts, sorts))


def code_scanning_alerts(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/code-scanning/alerts."""
    repo = ctx.need_repo()
    if repo.code_scanning == "disabled":
        raise ApiError(403, "Code scanning is not enabled for this repository. Please enable code scanning in "
                            "the repository settings.")
    if repo.code_scanning == "no_analysis":
        raise ApiError(404, "no analysis found")
    if repo.code_scanning == "advanced_security_off":  # a private repository without GitHub Advanced Security
        raise ApiError(403, "Advanced Security must be enabled for this repository to use code scanning.")
    ref = ctx.q("ref")
    if ctx.q("pr"):
        ref = f"refs/pull/{ctx.q('pr')}/merge"
    ref = ref or f"refs/heads/{repo.default_branch}"
    if not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"
    states = csv_param(ctx, "state")
    severities = csv_param(ctx, "severity")
    alerts = [a for a in repo.code_scanning_alerts if (a.get("ref") or f"refs/heads/{repo.default_branch}") == ref]
    if states:
        if "closed" in states:  # GitHub's "closed" is every alert no longer open: dismissed or fixed
            states |= {"dismissed", "fixed"}
        alerts = [a for a in alerts if a.get("state", "open") in states]
    if severities:
        alerts = [a for a in alerts if {a.get("security_severity"), a.get("severity", "error")} & severities]
    if ctx.q("tool_name"):
        alerts = [a for a in alerts if a.get("tool", "CodeQL") == ctx.q("tool_name")]
    return ok([ctx.render.code_scanning_alert(repo, a) for a in _alert_page(ctx, alerts, ("created", "number", "updated"))])


def _cursor_page(ctx: Ctx, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slice alerts (in listing order) by GitHub's opaque ``before``/``after`` cursors and set the Link header.

    GitHub's Dependabot listings take cursors only: since October 2025 ``page``, ``first`` and ``last`` are
    refused with a 400. A cursor here names the alert number it follows, encoded so that nobody relies on it.
    """
    for legacy in ("page", "first", "last"):
        if ctx.q(legacy) is not None:
            raise ApiError(400, f"Pagination using the `{legacy}` parameter is not supported.")
    try:
        per_page = max(1, min(100, int(ctx.q("per_page") or 30)))
    except ValueError:
        raise invalid("per_page must be an integer") from None

    def decode(cursor: str) -> int:
        try:
            return int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode().removeprefix("alert:"))
        except ValueError:
            raise ApiError(400, "The provided cursor is not valid.") from None

    def encode(number: int) -> str:
        return base64.urlsafe_b64encode(f"alert:{number}".encode()).decode().rstrip("=")

    numbers = [a["number"] for a in alerts]
    start, end = 0, len(alerts)
    if ctx.q("after"):
        at = decode(ctx.q("after") or "")
        start = numbers.index(at) + 1 if at in numbers else len(alerts)
        end = start + per_page
    elif ctx.q("before"):
        at = decode(ctx.q("before") or "")
        end = numbers.index(at) if at in numbers else 0
        start = max(0, end - per_page)
    else:
        end = per_page
    page = alerts[start:end]

    def url(**cursor: str) -> str:
        base = str(ctx.request.url.replace(query=""))
        other = [(k, v) for k, v in ctx.request.query_params.multi_items() if k not in ("after", "before", "per_page")]
        return base + "?" + urlencode(other + [("per_page", str(per_page)), *cursor.items()])

    links = []
    if page and start > 0:
        links.append(f'<{url(before=encode(page[0]["number"]))}>; rel="prev"')
    if page and end < len(alerts):
        links.append(f'<{url(after=encode(page[-1]["number"]))}>; rel="next"')
    if links:
        ctx.headers["link"] = ", ".join(links)
    return page


def dependabot_alerts(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/dependabot/alerts."""
    repo = ctx.need_repo()
    if not repo.dependabot:
        raise ApiError(403, "Dependabot alerts are disabled for this repository.")
    alerts = list(repo.dependabot_alerts)
    for name, key, default in (("state", "state", "open"), ("severity", "severity", "high"),
                               ("ecosystem", "ecosystem", "pip"), ("package", "package", "requests"),
                               ("scope", "scope", "runtime")):
        wanted = csv_param(ctx, name)
        if wanted:
            alerts = [a for a in alerts if str(a.get(key, default)) in wanted]
    alerts = _sorted_alerts(ctx, alerts, ("created", "updated", "epss_percentage"))
    return ok([ctx.render.dependabot_alert(repo, a) for a in _cursor_page(ctx, alerts)])


def secret_scanning_alerts(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/secret-scanning/alerts."""
    repo = ctx.need_repo()
    if not repo.secret_scanning:
        raise ApiError(404, "Secret scanning is disabled on this repository.")
    alerts = list(repo.secret_scanning_alerts)
    for name, key, default in (("state", "state", "open"), ("secret_type", "secret_type", "aws_access_key_id"),
                               ("validity", "validity", "unknown")):
        wanted = csv_param(ctx, name)
        if wanted:
            alerts = [a for a in alerts if str(a.get(key, default)) in wanted]
    resolutions = csv_param(ctx, "resolution")
    if resolutions:  # only resolved alerts have one (the seed's default, as rendered, is "revoked")
        alerts = [a for a in alerts if a.get("state", "open") == "resolved"
                  and str(a.get("resolution", "revoked")) in resolutions]
    return ok([ctx.render.secret_scanning_alert(repo, a) for a in _alert_page(ctx, alerts)])


# --------------------------------------------------------------------------- deployments

def list_deployments(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/deployments."""
    repo = ctx.need_repo()
    deps = list(repo.deployments.values())
    for name in ("sha", "ref", "task", "environment"):
        value = ctx.q(name)
        if value:
            deps = [d for d in deps if getattr(d, name) == value]
    deps.sort(key=lambda d: d.id, reverse=True)
    return ok([ctx.render.deployment(repo, d) for d in paginate(ctx, deps)])


def create_deployment(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/deployments."""
    repo, body = ctx.need_repo(), ctx.json_body()
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise invalid("ref is required", "ref", "Deployment")
    sha = repo.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No ref found for: {ref}")
    environment = body.get("environment") or "production"
    bot = f"{ctx.state.app.slug}[bot]" if ctx.state.app else "sandbox[bot]"
    dep = Deployment(id=ctx.state.next_id(), sha=sha, ref=ref, task=body.get("task") or "deploy",
                     environment=environment, description=body.get("description"), creator=bot,
                     created_at=ctx.state.now(), payload=body.get("payload") or {},
                     production_environment=body.get("production_environment", environment == "production"),
                     transient_environment=bool(body.get("transient_environment", False)))
    repo.deployments[dep.id] = dep
    return ok(ctx.render.deployment(repo, dep), 201)


def _find_deployment(ctx: Ctx) -> Deployment:
    return by_id(ctx, ctx.need_repo().deployments, "deployment_id")


def get_deployment(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/deployments/{deployment_id}."""
    return ok(ctx.render.deployment(ctx.need_repo(), _find_deployment(ctx)))


def list_deployment_statuses(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses."""
    repo, dep = ctx.need_repo(), _find_deployment(ctx)
    statuses = sorted(dep.statuses, key=lambda s: s.id, reverse=True)
    return ok([ctx.render.deployment_status(repo, dep, s) for s in paginate(ctx, statuses)])


def create_deployment_status(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses."""
    repo, dep, body = ctx.need_repo(), _find_deployment(ctx), ctx.json_body()
    state_value = body.get("state")
    if state_value not in DEPLOYMENT_STATES:
        raise invalid("state is not included in the list", "state", "DeploymentStatus")
    description = body.get("description") or ""
    if len(description) > 140:
        raise invalid("description is too long (maximum is 140 characters)", "description", "DeploymentStatus")
    bot = f"{ctx.state.app.slug}[bot]" if ctx.state.app else "sandbox[bot]"
    rec = ctx.state.add_deployment_status(repo.full_name, dep.id, state_value, description=description,
                                          target_url=body.get("target_url") or "",
                                          log_url=body.get("log_url") or "",
                                          environment_url=body.get("environment_url") or "", creator=bot)
    if body.get("environment"):
        rec.environment = body["environment"]
    if state_value == "success" and body.get("auto_inactive", True):
        for other in repo.deployments.values():
            if (other.id != dep.id and other.environment == dep.environment and other.statuses
                    and other.statuses[-1].state == "success"):
                ctx.state.add_deployment_status(repo.full_name, other.id, "inactive",
                                                description="Superseded by a newer deployment", creator=bot)
    return ok(ctx.render.deployment_status(repo, dep, rec), 201)


# --------------------------------------------------------------------------- comments, teams, permissions

def _issue_number(ctx: Ctx) -> int:
    number = int_param(ctx, "issue_number")
    if number not in ctx.need_repo().issue_numbers:
        raise ApiError(404, NOT_FOUND)
    return number


def list_comments(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/issues/{issue_number}/comments."""
    repo, number = ctx.need_repo(), _issue_number(ctx)
    found = sorted((c for c in repo.comments.values() if c.issue_number == number), key=lambda c: c.id)
    return ok([ctx.render.comment(repo, c) for c in paginate(ctx, found)])


def _comment_body(ctx: Ctx) -> str:
    text = ctx.json_body().get("body")
    if not isinstance(text, str) or not text.strip():
        raise invalid("body cannot be blank", "body", "IssueComment")
    if utf8_size(text) > MAX_COMMENT_BYTES:
        raise invalid(f"body is too long (maximum is {MAX_COMMENT_BYTES} characters)", "body", "IssueComment")
    return text


def create_comment(ctx: Ctx) -> Response:
    """POST /repos/{owner}/{repo}/issues/{issue_number}/comments."""
    repo, number = ctx.need_repo(), _issue_number(ctx)
    text = _comment_body(ctx)
    now = ctx.state.now()
    bot = f"{ctx.state.app.slug}[bot]" if ctx.state.app else "sandbox[bot]"
    comment = IssueComment(id=ctx.state.next_id(), issue_number=number, body=text, user=bot, created_at=now,
                           updated_at=now)
    repo.comments[comment.id] = comment
    return ok(ctx.render.comment(repo, comment), 201)


def _find_comment(ctx: Ctx) -> IssueComment:
    return by_id(ctx, ctx.need_repo().comments, "comment_id")


def get_comment(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/issues/comments/{comment_id}."""
    return ok(ctx.render.comment(ctx.need_repo(), _find_comment(ctx)))


def update_comment(ctx: Ctx) -> Response:
    """PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}."""
    comment = _find_comment(ctx)
    comment.body = _comment_body(ctx)
    comment.updated_at = ctx.state.now()
    return ok(ctx.render.comment(ctx.need_repo(), comment))


def team_membership(ctx: Ctx) -> Response:
    """GET /orgs/{org}/teams/{team_slug}/memberships/{username}."""
    org, slug, login = ctx.params["org"], ctx.params["team_slug"], ctx.params["username"]
    caller = ctx.caller
    inst = ctx.state.installations.get(caller.installation_id) if caller else None
    if inst is None or inst.account.lower() != org.lower():
        raise ApiError(404, NOT_FOUND)
    member = ctx.state.teams.get((org.lower(), slug.lower()), {}).get(login.lower())
    if member is None:
        raise ApiError(404, NOT_FOUND)
    team_id = stable_id(f"{org}/{slug}".lower())
    return ok({"url": f"{ctx.render.api}/organizations/{stable_id(org)}/team/{team_id}/memberships/{login}",
               "role": member["role"], "state": member["state"]})


def check_collaborator(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/collaborators/{username}: 204 for someone given access, else 404 (public or not)."""
    repo, login = ctx.need_repo(), ctx.params["username"]
    if repo.collaborators.get(login.lower(), "none") == "none":
        raise ApiError(404, NOT_FOUND)
    return Response(status_code=204)


def collaborator_permission(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/collaborators/{username}/permission.

    On a public repository GitHub answers read for any account, given access or not: anyone may read it.
    """
    repo, login = ctx.need_repo(), ctx.params["username"]
    known = {u.lower(): u for u in ctx.state.users}
    if login.lower() not in known:
        raise ApiError(404, NOT_FOUND)
    permission = repo.collaborators.get(login.lower(), "none")
    if permission == "none" and not repo.private:
        permission = "read"
    legacy = {"maintain": "write", "triage": "read"}.get(permission, permission)
    user = ctx.render.user(known[login.lower()]) or {}
    user = dict(user, role_name=permission,
                permissions={"admin": legacy == "admin", "maintain": permission in ("admin", "maintain"),
                             "push": legacy in ("admin", "write"),
                             "triage": permission in ("admin", "maintain", "write", "triage"),
                             "pull": legacy != "none"})
    return ok({"permission": legacy, "role_name": permission, "user": user})


# --------------------------------------------------------------------------- pull request files, releases

def list_pull_files(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}/files: at most 3,000 files, 30 a page by default."""
    repo = ctx.need_repo()
    pr = by_id(ctx, repo.pulls, "pull_number")
    head, base = repo.resolve(pr.head_sha), repo.resolve(pr.base_sha)
    if head is None:
        raise ApiError(404, NOT_FOUND)
    base_line = set(ancestry(repo, base)) if base else set()
    shas = [sha for sha in ancestry(repo, head) if sha not in base_line and sha in repo.commits]
    shas.sort(key=lambda sha: repo.commits[sha].date)
    files = changed_files(ctx, repo, shas, head)[:MAX_PULL_FILES]
    return ok(paginate(ctx, files))


def _release_json(ctx: Ctx, repo: Repo, rel: Release) -> dict[str, Any]:
    api = f"{ctx.render.api}/repos/{repo.full_name}/releases/{rel.id}"
    return {
        "url": api, "html_url": f"{ctx.render.html}/{repo.full_name}/releases/tag/{rel.tag_name}",
        "assets_url": api + "/assets", "upload_url": api.replace("://", "://uploads.", 1) + "/assets{?name,label}",
        "tarball_url": f"{ctx.render.api}/repos/{repo.full_name}/tarball/{rel.tag_name}",
        "zipball_url": f"{ctx.render.api}/repos/{repo.full_name}/zipball/{rel.tag_name}",
        "id": rel.id, "node_id": f"RE_{rel.id}", "tag_name": rel.tag_name, "target_commitish": rel.target,
        "name": rel.name, "body": None, "draft": rel.draft, "prerelease": rel.prerelease,
        "created_at": iso(rel.created_at), "published_at": None if rel.draft else iso(rel.created_at),
        "author": ctx.render.user(rel.author), "assets": [],
    }


def list_releases(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/releases: newest first."""
    repo = ctx.need_repo()
    releases = sorted(repo.releases, key=lambda r: (r.created_at, r.id), reverse=True)
    return ok([_release_json(ctx, repo, r) for r in paginate(ctx, releases)])


# --------------------------------------------------------------------------- the application

R = "/repos/{owner}/{repo}"
ROUTES: list[tuple[str, str, Handler, str, bool]] = [
    # (method, path, handler, auth, with_repo)
    ("GET", "/app", get_app, "app", False),
    ("POST", "/app/installations/{installation_id}/access_tokens", create_access_token, "app", False),
    ("GET", "/app/installations/{installation_id}", get_installation, "app", False),
    ("GET", R + "/installation", get_repo_installation, "app", False),
    ("GET", R, get_repo, "installation", True),
    ("GET", R + "/contents/{path:path}", get_content, "installation", True),
    ("GET", R + "/compare/{basehead}", compare, "installation", True),
    ("GET", R + "/commits", list_commits, "installation", True),
    ("GET", R + "/commits/{ref}/check-runs", list_check_runs_for_ref, "installation", True),
    ("GET", R + "/commits/{ref}/statuses", list_statuses, "installation", True),
    ("GET", R + "/commits/{ref}/status", combined_status, "installation", True),
    ("GET", R + "/commits/{ref}/pulls", commit_pulls, "installation", True),
    ("GET", R + "/commits/{ref}", get_commit, "installation", True),
    ("GET", R + "/pulls/{pull_number}", get_pull, "installation", True),
    ("POST", R + "/check-runs", create_check_run, "installation", True),
    ("GET", R + "/check-runs/{check_run_id}", get_check_run, "installation", True),
    ("PATCH", R + "/check-runs/{check_run_id}", update_check_run, "installation", True),
    ("GET", R + "/check-runs/{check_run_id}/annotations", list_annotations, "installation", True),
    ("POST", R + "/statuses/{sha}", create_status, "installation", True),
    ("GET", R + "/actions/runs", list_workflow_runs, "installation", True),
    ("GET", R + "/actions/runs/{run_id}", get_workflow_run, "installation", True),
    ("GET", R + "/actions/runs/{run_id}/artifacts", list_run_artifacts, "installation", True),
    ("POST", R + "/actions/runs/{run_id}/deployment_protection_rule", review_custom_gate, "installation", True),
    ("GET", R + "/actions/artifacts/{artifact_id}", get_artifact, "installation", True),
    ("GET", R + "/actions/artifacts/{artifact_id}/{archive_format}", download_artifact, "installation", True),
    ("GET", "/_sandbox/blobs/{key}/{name}", serve_blob, "none", False),
    ("GET", R + "/code-scanning/alerts", code_scanning_alerts, "installation", True),
    ("GET", R + "/dependabot/alerts", dependabot_alerts, "installation", True),
    ("GET", R + "/secret-scanning/alerts", secret_scanning_alerts, "installation", True),
    ("GET", R + "/deployments", list_deployments, "installation", True),
    ("POST", R + "/deployments", create_deployment, "installation", True),
    ("GET", R + "/deployments/{deployment_id}", get_deployment, "installation", True),
    ("GET", R + "/deployments/{deployment_id}/statuses", list_deployment_statuses, "installation", True),
    ("POST", R + "/deployments/{deployment_id}/statuses", create_deployment_status, "installation", True),
    ("GET", R + "/issues/{issue_number}/comments", list_comments, "installation", True),
    ("POST", R + "/issues/{issue_number}/comments", create_comment, "installation", True),
    ("GET", R + "/issues/comments/{comment_id}", get_comment, "installation", True),
    ("PATCH", R + "/issues/comments/{comment_id}", update_comment, "installation", True),
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}", team_membership, "installation", False),
    ("GET", R + "/collaborators/{username}/permission", collaborator_permission, "installation", True),
    ("GET", R + "/collaborators/{username}", check_collaborator, "installation", True),
    # pull request files and releases (the change of a big or first deployment)
    ("GET", R + "/pulls/{pull_number}/files", list_pull_files, "installation", True),
    ("GET", R + "/releases", list_releases, "installation", True),
]


def extra_routes() -> list[tuple[str, str, Handler, str, bool]]:
    """Return the routes kept in their own modules (they import this one, hence the late import)."""
    from github_app.sandbox.app_hooks import HOOK_ROUTES
    from github_app.sandbox.app_install import INSTALL_ROUTES
    from github_app.sandbox.app_manifest import MANIFEST_ROUTES

    return [*HOOK_ROUTES, *MANIFEST_ROUTES, *INSTALL_ROUTES]


class SandboxApp:
    """The sandbox's ASGI app: the fault-and-log layer around a table of the routes above.

    It dispatches the way Starlette's router does (routes tried in order, HEAD served by GET routes,
    a path that only matches with its trailing slash flipped redirected with 307, an unknown route or
    method answered with GitHub's 404, an unexpected error with a plain 500), without Starlette's
    middleware stack and route scan, which cost more CPU per call than most handlers.
    """

    def __init__(self, state: SandboxState) -> None:
        self.sandbox_state = state
        # one entry per path, in the order ROUTES first names it: (regex, convertors, method -> endpoint)
        table: dict[str, dict[str, Endpoint]] = {}
        for method, path, handler, auth, with_repo in [*ROUTES, *extra_routes()]:
            by_method = table.setdefault(path, {})
            by_method[method] = endpoint(handler, auth=auth, with_repo=with_repo)
            if method == "GET":
                by_method.setdefault("HEAD", by_method["GET"])
        self._routes = [(*compile_path(path)[::2], by_method) for path, by_method in table.items()]
        # Per method, one regex whose alternatives are that method's routes in order: its first matching
        # alternative is the route Starlette's in-order scan would pick, found in one match instead of ~20.
        self._full: dict[str, tuple[re.Pattern[str], list[tuple[Endpoint, dict[str, Any]]]]] = {}
        for method in {m for _, _, by_method in self._routes for m in by_method}:
            parts: list[str] = []
            targets: list[tuple[Endpoint, dict[str, Any]]] = []
            for regex, convertors, by_method in self._routes:
                if method in by_method:
                    k = len(targets)
                    inner = re.sub(r"\(\?P<(\w+)>", rf"(?P<_{k}_\1>", regex.pattern[1:-1])
                    parts.append(f"(?P<_{k}>{inner})")
                    targets.append((by_method[method], convertors))
            self._full[method] = (re.compile("^(?:" + "|".join(parts) + ")$"), targets)
        self._layer = FaultAndLogLayer(self._dispatch, state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        # The layer may return a value: uvicorn then drops the connection (the "drop" fault).
        return await self._layer(scope, receive, send)

    def _match(self, scope: Scope, path: str) -> tuple[Endpoint | None, dict[str, Any] | None]:
        """Find the endpoint for a path: (endpoint, path params) on a full match, (None, params) on a path match only."""
        method = scope["method"]
        full = self._full.get(method)
        if full is not None and (found := full[0].match(path)) is not None:
            assert found.lastgroup is not None
            k = found.lastgroup[1:]
            handle, convertors = full[1][int(k)]
            return handle, {key: convertors[key].convert(found.group(f"_{k}_{key}")) for key in convertors}
        partial: dict[str, Any] | None = None
        for regex, convertors, by_method in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            params = {key: convertors[key].convert(value) for key, value in found.groupdict().items()}
            if method in by_method:
                return by_method[method], params
            if partial is None:
                partial = params
        return None, partial

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        scope["app"] = self
        path = _route_path(scope)
        handle, params = self._match(scope, path)
        if handle is None or params is None:
            if params is None and path != "/":
                flipped = dict(scope, path=scope["path"].rstrip("/") if path.endswith("/") else scope["path"] + "/")
                if self._match(flipped, _route_path(flipped)) != (None, None):
                    await RedirectResponse(url=str(URL(scope=flipped)))(scope, receive, send)
                    return
            await ApiError(404, NOT_FOUND).response()(scope, receive, send)
            return
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            raw = await read_body(receive)
            response = handle(Request(scope, receive), raw)
            await response(scope, receive, watch)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise


def _route_path(scope: Scope) -> str:
    """Return the path the routes match against: the request path below the root path, as Starlette does."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path):] if path[len(root_path)] == "/" else path


def create_sandbox_app(state: SandboxState) -> SandboxApp:
    """Build the sandbox ASGI app over a state."""
    return SandboxApp(state)
