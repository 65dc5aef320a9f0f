"""Turn sandbox records into the JSON bodies GitHub's REST API returns (shapes from its OpenAPI description)."""

from __future__ import annotations

import base64
import functools
from typing import Any

from github_app.sandbox.state import (
    AppRecord,
    Artifact,
    CheckRun,
    Commit,
    CommitStatus,
    Deployment,
    DeploymentStatusRecord,
    Installation,
    IssueComment,
    PullRequest,
    Repo,
    SandboxState,
    WorkflowRun,
    client_id_of,
    fake_sha,
    iso,
    stable_id,
)

Json = dict[str, Any]

ACTIONS_APP_ID = 15368  # GitHub Actions' app id on github.com


@functools.lru_cache(maxsize=65536)
def node_id(kind: str, ident: int | str) -> str:
    """Build an opaque GraphQL node id."""
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


# simple-user bodies by (login, type, API URL, HTML URL): every field is a string, number or boolean, so a
# shallow copy of the remembered body is a fresh one
_USERS: dict[tuple[str, int, str, str, str], Json] = {}
# when a closed alert was closed, by state: the seed's own time, else its creation
_CLOSED_AT = ("dismissed_at", "fixed_at", "auto_dismissed_at", "resolved_at")


def alert_created(alert: Json, now: float) -> float:
    """When a seeded alert was opened (a day ago unless the seed says)."""
    return float(alert.get("created_at", now - 86400))


def alert_updated(alert: Json, now: float) -> float:
    """When a seeded alert last changed: its own ``updated_at``, else the latest of its opening and closing."""
    if alert.get("updated_at") is not None:
        return float(alert["updated_at"])
    return max([alert_created(alert, now), *(float(alert[k]) for k in _CLOSED_AT if alert.get(k) is not None)])


class Renderer:
    """Render records with URLs rooted at the sandbox's API URL."""

    def __init__(self, state: SandboxState, api_url: str) -> None:
        self.state = state
        self.api = api_url.rstrip("/")
        self.html = state.html_url

    # ----------------------------------------------------------------- people and apps
    def user(self, login: str | None) -> Json | None:
        """Render a simple-user (None stays None)."""
        if login is None:
            return None
        kind = self.state.users.get(login, "User")
        uid = self.state.user_id(login)
        key = (login, uid, kind, self.api, self.html)
        known = _USERS.get(key)
        if known is not None:
            return dict(known)
        if len(_USERS) > 4096:
            _USERS.clear()
        url = f"{self.api}/users/{login}"
        body: Json = {
            "login": login, "id": uid, "node_id": node_id("U", uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": url, "html_url": f"{self.html}/{login}", "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}", "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs", "repos_url": f"{url}/repos", "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events", "type": kind, "site_admin": False,
            "user_view_type": "public",
        }
        _USERS[key] = body
        return dict(body)

    def app(self, app_id: int) -> Json:
        """Render an integration: the registered app, or GitHub Actions for seeded checks."""
        rec = self.state.app
        if rec is not None and rec.id == app_id:
            slug, name, owner = rec.slug, rec.name, rec.owner
        elif app_id == ACTIONS_APP_ID:
            slug, name, owner = "github-actions", "GitHub Actions", "github"
            self.state.user("github", "Organization")
        else:
            slug, name, owner = f"app-{app_id}", f"App {app_id}", "github"
        created = iso(self.state.now() - 800 * 86400)
        return {
            "id": app_id, "slug": slug, "node_id": node_id("A", app_id), "client_id": client_id_of(app_id),
            "owner": self.user(owner), "name": name, "description": f"{name} (sandbox)",
            "external_url": f"{self.html}/apps/{slug}", "html_url": f"{self.html}/apps/{slug}",
            "created_at": created, "updated_at": created,
            "permissions": dict(rec.permissions) if rec is not None and rec.id == app_id and rec.permissions
            else {"checks": "write", "deployments": "write", "metadata": "read"},
            "events": list(rec.events) if rec is not None and rec.id == app_id and rec.events is not None
            else ["deployment_protection_rule", "check_run"],
        }

    def installation(self, inst: Installation, app: AppRecord) -> Json:
        """Render an installation."""
        created = iso(self.state.now() - 90 * 86400)
        return {
            "id": inst.id, "account": self.user(inst.account), "app_id": app.id, "app_slug": app.slug,
            "target_id": stable_id(inst.account), "target_type": inst.account_type,
            "repository_selection": "all" if inst.repositories is None else "selected",
            "access_tokens_url": f"{self.api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{self.html}/organizations/{inst.account}/settings/installations/{inst.id}",
            "permissions": dict(inst.permissions), "events": ["deployment_protection_rule", "check_run",
                                                             "issue_comment", "deployment_status"],
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "created_at": created, "updated_at": created, "suspended_by": None, "suspended_at": None,
        }

    # ----------------------------------------------------------------- repositories and commits
    def repo(self, repo: Repo) -> Json:
        """Render a full repository (a superset of minimal-repository)."""
        url = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}"
        created = iso(repo.created_at)
        pushed = iso(self.state.now() - 3600)
        return {
            "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name, "full_name": repo.full_name,
            "owner": self.user(repo.owner), "private": repo.private, "html_url": html,
            "description": f"{repo.name} (sandbox)", "fork": False, "url": url,
            "archive_url": f"{url}/{{archive_format}}{{/ref}}", "assignees_url": f"{url}/assignees{{/user}}",
            "blobs_url": f"{url}/git/blobs{{/sha}}", "branches_url": f"{url}/branches{{/branch}}",
            "collaborators_url": f"{url}/collaborators{{/collaborator}}",
            "comments_url": f"{url}/comments{{/number}}", "commits_url": f"{url}/commits{{/sha}}",
            "compare_url": f"{url}/compare/{{base}}...{{head}}", "contents_url": f"{url}/contents/{{+path}}",
            "contributors_url": f"{url}/contributors", "deployments_url": f"{url}/deployments",
            "downloads_url": f"{url}/downloads", "events_url": f"{url}/events", "forks_url": f"{url}/forks",
            "git_commits_url": f"{url}/git/commits{{/sha}}", "git_refs_url": f"{url}/git/refs{{/sha}}",
            "git_tags_url": f"{url}/git/tags{{/sha}}", "git_url": f"git://github.com/{repo.full_name}.git",
            "issue_comment_url": f"{url}/issues/comments{{/number}}",
            "issue_events_url": f"{url}/issues/events{{/number}}", "issues_url": f"{url}/issues{{/number}}",
            "keys_url": f"{url}/keys{{/key_id}}", "labels_url": f"{url}/labels{{/name}}",
            "languages_url": f"{url}/languages", "merges_url": f"{url}/merges",
            "milestones_url": f"{url}/milestones{{/number}}",
            "notifications_url": f"{url}/notifications{{?since,all,participating}}",
            "pulls_url": f"{url}/pulls{{/number}}", "releases_url": f"{url}/releases{{/id}}",
            "ssh_url": f"git@github.com:{repo.full_name}.git", "stargazers_url": f"{url}/stargazers",
            "statuses_url": f"{url}/statuses/{{sha}}", "subscribers_url": f"{url}/subscribers",
            "subscription_url": f"{url}/subscription", "tags_url": f"{url}/tags", "teams_url": f"{url}/teams",
            "trees_url": f"{url}/git/trees{{/sha}}", "clone_url": f"{html}.git", "mirror_url": None,
            "hooks_url": f"{url}/hooks", "svn_url": html, "homepage": None, "language": "Python",
            "forks_count": 0, "forks": 0, "stargazers_count": 0, "watchers_count": 0, "watchers": 0,
            "size": 1024, "default_branch": repo.default_branch, "open_issues_count": len(repo.pulls),
            "open_issues": len(repo.pulls), "is_template": False, "topics": [], "has_issues": True,
            "has_projects": False, "has_wiki": False, "has_pages": False, "has_downloads": True,
            "has_discussions": False, "archived": False, "disabled": False,
            "visibility": "private" if repo.private else "public", "pushed_at": pushed, "created_at": created,
            "updated_at": pushed, "allow_forking": False, "web_commit_signoff_required": False,
            "license": None, "network_count": 0, "subscribers_count": 1,
        }

    def git_user(self, commit: Commit) -> Json:
        """Render the git author/committer of a commit."""
        return {"name": commit.author_name, "email": commit.author_email, "date": iso(commit.date)}

    def commit(self, repo: Repo, commit: Commit, *, with_files: bool = False) -> Json:
        """Render a commit (with files and stats for the single-commit and compare views)."""
        url = f"{self.api}/repos/{repo.full_name}/commits/{commit.sha}"
        body: Json = {
            "url": url, "sha": commit.sha, "node_id": node_id("C", commit.sha[:12]),
            "html_url": f"{self.html}/{repo.full_name}/commit/{commit.sha}",
            "comments_url": f"{url}/comments",
            "commit": {
                "url": f"{self.api}/repos/{repo.full_name}/git/commits/{commit.sha}",
                "author": self.git_user(commit), "committer": self.git_user(commit),
                "message": commit.message, "comment_count": 0,
                "tree": {"sha": fake_sha("tree:" + commit.sha),
                         "url": f"{self.api}/repos/{repo.full_name}/git/trees/{fake_sha('tree:' + commit.sha)}"},
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                                 "verified_at": None},
            },
            "author": self.user(commit.author), "committer": self.user(commit.author),
            "parents": [{"sha": p, "url": f"{self.api}/repos/{repo.full_name}/commits/{p}",
                         "html_url": f"{self.html}/{repo.full_name}/commit/{p}"} for p in commit.parents],
        }
        if with_files:
            body["files"] = [self.diff_entry(repo, commit.sha, f.filename, f.status, f.additions, f.deletions,
                                             f.previous_filename) for f in commit.files]
            adds = sum(f.additions for f in commit.files)
            dels = sum(f.deletions for f in commit.files)
            body["stats"] = {"additions": adds, "deletions": dels, "total": adds + dels}
        return body

    def diff_entry(self, repo: Repo, sha: str, filename: str, status: str, additions: int, deletions: int,
                   previous_filename: str | None = None) -> Json:
        """Render one changed file."""
        entry: Json = {
            "sha": fake_sha(f"blob:{sha}:{filename}"), "filename": filename, "status": status,
            "additions": additions, "deletions": deletions, "changes": additions + deletions,
            "blob_url": f"{self.html}/{repo.full_name}/blob/{sha}/{filename}",
            "raw_url": f"{self.html}/{repo.full_name}/raw/{sha}/{filename}",
            "contents_url": f"{self.api}/repos/{repo.full_name}/contents/{filename}?ref={sha}",
        }
        if previous_filename:
            entry["previous_filename"] = previous_filename
        return entry

    def content_file(self, repo: Repo, path: str, data: bytes, ref: str) -> Json:
        """Render a file from the contents API (base64 with line breaks, as GitHub sends it)."""
        encoded = base64.encodebytes(data).decode()
        sha = fake_sha(f"blob:{data!r}")
        url = f"{self.api}/repos/{repo.full_name}/contents/{path}?ref={ref}"
        git_url = f"{self.api}/repos/{repo.full_name}/git/blobs/{sha}"
        html_url = f"{self.html}/{repo.full_name}/blob/{ref}/{path}"
        return {
            "type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
            "path": path, "content": encoded, "sha": sha, "url": url, "git_url": git_url, "html_url": html_url,
            "download_url": f"{self.html}/{repo.full_name}/raw/{ref}/{path}",
            "_links": {"self": url, "git": git_url, "html": html_url},
        }

    # ----------------------------------------------------------------- checks and statuses
    def check_run(self, repo: Repo, run: CheckRun) -> Json:
        """Render a check run."""
        url = f"{self.api}/repos/{repo.full_name}/check-runs/{run.id}"
        out = run.output
        return {
            "id": run.id, "head_sha": run.head_sha, "node_id": node_id("CR", run.id),
            "external_id": run.external_id or "", "url": url,
            "html_url": f"{self.html}/{repo.full_name}/runs/{run.id}", "details_url": run.details_url
            or f"{self.html}/{repo.full_name}/runs/{run.id}",
            "status": run.status, "conclusion": run.conclusion,
            "started_at": iso(run.started_at) if run.started_at is not None else None,
            "completed_at": iso(run.completed_at) if run.completed_at is not None else None,
            "output": {"title": out.get("title"), "summary": out.get("summary"), "text": out.get("text"),
                       "annotations_count": len(run.annotations),
                       "annotations_url": f"{url}/annotations"},
            "name": run.name, "check_suite": {"id": run.check_suite_id}, "app": self.app(run.app_id),
            "pull_requests": [self.pull_minimal(repo, pr) for pr in repo.pulls.values()
                              if pr.head_sha == run.head_sha and pr.state == "open"],
        }

    def annotation(self, repo: Repo, run: CheckRun, index: int) -> Json:
        """Render one annotation of a check run."""
        a = run.annotations[index]
        return {"path": a.path, "start_line": a.start_line, "end_line": a.end_line,
                "start_column": a.start_column, "end_column": a.end_column,
                "annotation_level": a.annotation_level, "title": a.title, "message": a.message,
                "raw_details": a.raw_details, "blob_href": f"{self.html}/{repo.full_name}/blob/{run.head_sha}/{a.path}"}

    def status(self, repo: Repo, status: CommitStatus, *, with_creator: bool = True) -> Json:
        """Render a commit status."""
        body: Json = {
            "url": f"{self.api}/repos/{repo.full_name}/statuses/{status.sha}",
            "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4", "id": status.id,
            "node_id": node_id("SC", status.id), "state": status.state, "description": status.description,
            "target_url": status.target_url, "context": status.context, "created_at": iso(status.created_at),
            "updated_at": iso(status.updated_at),
        }
        if with_creator:
            body["creator"] = self.user(status.creator)
        return body

    def minimal_repo(self, repo: Repo) -> Json:
        """Render a minimal repository."""
        return self.repo(repo)

    # ----------------------------------------------------------------- actions
    def workflow_run(self, repo: Repo, run: WorkflowRun) -> Json:
        """Render a workflow run."""
        url = f"{self.api}/repos/{repo.full_name}/actions/runs/{run.id}"
        commit = repo.commits.get(run.head_sha)
        head_commit = None
        if commit is not None:
            person = {"name": commit.author_name, "email": commit.author_email}
            head_commit = {"id": commit.sha, "tree_id": fake_sha("tree:" + commit.sha), "message": commit.message,
                           "timestamp": iso(commit.date), "author": person, "committer": person}
        suite = stable_id(f"{run.head_sha}:{ACTIONS_APP_ID}")
        return {
            "id": run.id, "name": run.name, "node_id": node_id("WFR", run.id), "check_suite_id": suite,
            "check_suite_node_id": node_id("CS", suite), "head_branch": run.head_branch, "head_sha": run.head_sha,
            "path": run.path, "display_title": commit.message.splitlines()[0] if commit else run.name,
            "run_number": run.run_number, "run_attempt": run.run_attempt, "event": run.event,
            "status": run.status, "conclusion": run.conclusion, "workflow_id": run.workflow_id, "url": url,
            "html_url": f"{self.html}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": [self.pull_minimal(repo, repo.pulls[n]) for n in run.pull_request_numbers
                              if n in repo.pulls],
            "created_at": iso(run.created_at), "updated_at": iso(run.updated_at),
            "run_started_at": iso(run.run_started_at if run.run_started_at is not None else run.created_at), "actor": self.user(run.actor),
            "triggering_actor": self.user(run.actor), "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs",
            "check_suite_url": f"{self.api}/repos/{repo.full_name}/check-suites/{suite}",
            "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel", "rerun_url": f"{url}/rerun",
            "previous_attempt_url": f"{url}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None,
            "workflow_url": f"{self.api}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}",
            "head_commit": head_commit, "repository": self.repo(repo), "head_repository": self.repo(repo),
            "head_repository_id": repo.id,
        }

    def artifact(self, repo: Repo, art: Artifact) -> Json:
        """Render an artifact."""
        url = f"{self.api}/repos/{repo.full_name}/actions/artifacts/{art.id}"
        run = repo.workflow_runs.get(art.run_id)
        return {
            "id": art.id, "node_id": node_id("MDE", art.id), "name": art.name, "size_in_bytes": len(art.data),
            "url": url, "archive_download_url": f"{url}/zip", "expired": art.expired,
            "created_at": iso(art.created_at), "expires_at": iso(art.expires_at), "updated_at": iso(art.created_at),
            "digest": None,
            "workflow_run": {"id": art.run_id, "repository_id": repo.id, "head_repository_id": repo.id,
                             "head_branch": run.head_branch if run else None,
                             "head_sha": run.head_sha if run else None},
        }

    # ----------------------------------------------------------------- deployments
    def deployment(self, repo: Repo, dep: Deployment) -> Json:
        """Render a deployment."""
        url = f"{self.api}/repos/{repo.full_name}/deployments/{dep.id}"
        return {
            "url": url, "id": dep.id, "node_id": node_id("DE", dep.id), "sha": dep.sha, "ref": dep.ref,
            "task": dep.task, "payload": dep.payload, "original_environment": dep.environment,
            "environment": dep.environment, "description": dep.description, "creator": self.user(dep.creator),
            "created_at": iso(dep.created_at),
            "updated_at": iso(dep.statuses[-1].created_at if dep.statuses else dep.created_at),
            "statuses_url": f"{url}/statuses", "repository_url": f"{self.api}/repos/{repo.full_name}",
            "transient_environment": dep.transient_environment,
            "production_environment": dep.production_environment,
            "performed_via_github_app": None,
        }

    def deployment_status(self, repo: Repo, dep: Deployment, rec: DeploymentStatusRecord) -> Json:
        """Render a deployment status."""
        dep_url = f"{self.api}/repos/{repo.full_name}/deployments/{dep.id}"
        return {
            "url": f"{dep_url}/statuses/{rec.id}", "id": rec.id, "node_id": node_id("DES", rec.id),
            "state": rec.state, "creator": self.user(rec.creator), "description": rec.description,
            "environment": rec.environment, "target_url": rec.target_url, "created_at": iso(rec.created_at),
            "updated_at": iso(rec.created_at), "deployment_url": dep_url,
            "repository_url": f"{self.api}/repos/{repo.full_name}", "environment_url": rec.environment_url,
            "log_url": rec.log_url, "performed_via_github_app": None,
        }

    # ----------------------------------------------------------------- issues and pulls
    def comment(self, repo: Repo, c: IssueComment) -> Json:
        """Render an issue comment."""
        kind = "pull" if c.issue_number in repo.pulls else "issues"
        return {
            "id": c.id, "node_id": node_id("IC", c.id),
            "url": f"{self.api}/repos/{repo.full_name}/issues/comments/{c.id}",
            "html_url": f"{self.html}/{repo.full_name}/{kind}/{c.issue_number}#issuecomment-{c.id}",
            "body": c.body, "user": self.user(c.user), "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
            "issue_url": f"{self.api}/repos/{repo.full_name}/issues/{c.issue_number}",
            "author_association": self.association(repo, c.user), "performed_via_github_app": None,
            "reactions": self.reactions(f"{self.api}/repos/{repo.full_name}/issues/comments/{c.id}/reactions"),
        }

    def association(self, repo: Repo, login: str) -> str:
        """Say how a user relates to a repository, as GitHub's author_association does."""
        perm = repo.collaborators.get(login.lower())
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if perm in ("admin", "maintain", "write"):
            return "MEMBER" if repo.owner_type == "Organization" else "COLLABORATOR"
        if perm:
            return "COLLABORATOR"
        return "NONE"

    @staticmethod
    def reactions(url: str) -> Json:
        """Render an empty reactions rollup."""
        return {"url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0, "heart": 0,
                "hooray": 0, "eyes": 0, "rocket": 0}

    def pull_minimal(self, repo: Repo, pr: PullRequest) -> Json:
        """Render the short pull request reference found in check runs and workflow runs."""
        short = {"id": repo.id, "url": f"{self.api}/repos/{repo.full_name}", "name": repo.name}
        return {"id": pr.id, "number": pr.number, "url": f"{self.api}/repos/{repo.full_name}/pulls/{pr.number}",
                "head": {"ref": pr.head_ref, "sha": pr.head_sha, "repo": short},
                "base": {"ref": pr.base_ref, "sha": pr.base_sha, "repo": short}}

    def pull(self, repo: Repo, pr: PullRequest) -> Json:
        """Render a full pull request."""
        url = f"{self.api}/repos/{repo.full_name}/pulls/{pr.number}"
        html = f"{self.html}/{repo.full_name}/pull/{pr.number}"
        issue = f"{self.api}/repos/{repo.full_name}/issues/{pr.number}"
        created = iso(pr.created_at)
        repo_json = self.repo(repo)

        def side(ref: str, sha: str) -> Json:
            return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": self.user(repo.owner),
                    "repo": repo_json}

        def link(href: str) -> Json:
            return {"href": href}

        commits = repo.commits
        files = commits[pr.head_sha].files if pr.head_sha in commits else []
        return {
            "url": url, "id": pr.id, "node_id": node_id("PR", pr.id), "html_url": html, "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{self.api}/repos/{repo.full_name}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments",
            "statuses_url": f"{self.api}/repos/{repo.full_name}/statuses/{pr.head_sha}", "number": pr.number,
            "state": "closed" if pr.state != "open" else "open", "locked": False, "title": pr.title,
            "user": self.user(pr.user), "body": pr.body, "labels": [], "milestone": None,
            "active_lock_reason": None, "created_at": created, "updated_at": created, "closed_at": None,
            "merged_at": None, "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [], "head": side(pr.head_ref, pr.head_sha),
            "base": side(pr.base_ref, pr.base_sha),
            "_links": {"self": link(url), "html": link(html), "issue": link(issue),
                       "comments": link(f"{issue}/comments"), "review_comments": link(f"{url}/comments"),
                       "review_comment": link(f"{self.api}/repos/{repo.full_name}/pulls/comments{{/number}}"),
                       "commits": link(f"{url}/commits"),
                       "statuses": link(f"{self.api}/repos/{repo.full_name}/statuses/{pr.head_sha}")},
            "author_association": self.association(repo, pr.user), "auto_merge": None, "draft": False,
            "merged": False, "mergeable": True, "rebaseable": True, "mergeable_state": "clean",
            "merged_by": None, "comments": len([c for c in repo.comments.values() if c.issue_number == pr.number]),
            "review_comments": 0, "maintainer_can_modify": False, "commits": 1,
            "additions": sum(f.additions for f in files), "deletions": sum(f.deletions for f in files),
            "changed_files": len(files),
        }

    def issue_of_pull(self, repo: Repo, pr: PullRequest) -> Json:
        """Render the issue side of a pull request (as in issue_comment webhooks)."""
        url = f"{self.api}/repos/{repo.full_name}/issues/{pr.number}"
        created = iso(pr.created_at)
        return {
            "url": url, "repository_url": f"{self.api}/repos/{repo.full_name}",
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments",
            "events_url": f"{url}/events", "html_url": f"{self.html}/{repo.full_name}/pull/{pr.number}",
            "id": pr.id, "node_id": node_id("I", pr.id), "number": pr.number, "title": pr.title,
            "user": self.user(pr.user), "labels": [], "state": "open" if pr.state == "open" else "closed",
            "locked": False, "assignee": None, "assignees": [], "milestone": None,
            "comments": len([c for c in repo.comments.values() if c.issue_number == pr.number]),
            "created_at": created, "updated_at": created, "closed_at": None,
            "author_association": self.association(repo, pr.user), "active_lock_reason": None, "draft": False,
            "pull_request": {"url": f"{self.api}/repos/{repo.full_name}/pulls/{pr.number}",
                             "html_url": f"{self.html}/{repo.full_name}/pull/{pr.number}",
                             "diff_url": f"{self.html}/{repo.full_name}/pull/{pr.number}.diff",
                             "patch_url": f"{self.html}/{repo.full_name}/pull/{pr.number}.patch",
                             "merged_at": None},
            "body": pr.body, "reactions": self.reactions(f"{url}/reactions"),
            "timeline_url": f"{url}/timeline", "performed_via_github_app": None, "state_reason": None,
        }

    # ----------------------------------------------------------------- alerts
    def code_scanning_alert(self, repo: Repo, alert: Json) -> Json:
        """Render a code-scanning alert from its compact seed form."""
        number = alert["number"]
        url = f"{self.api}/repos/{repo.full_name}/code-scanning/alerts/{number}"
        ref = alert.get("ref") or f"refs/heads/{repo.default_branch}"
        state = alert.get("state", "open")
        now = self.state.now()
        opened = alert_created(alert, now)
        created = iso(opened)
        rule_id = alert.get("rule_id", "py/sql-injection")
        return {
            "number": number, "created_at": created, "updated_at": iso(alert_updated(alert, now)), "url": url,
            "html_url": f"{self.html}/{repo.full_name}/security/code-scanning/{number}",
            "instances_url": f"{url}/instances", "state": state,
            "fixed_at": iso(alert.get("fixed_at", opened)) if state == "fixed" else None,
            "dismissed_by": self.user(alert.get("dismissed_by")) if state == "dismissed" else None,
            "dismissed_at": iso(alert.get("dismissed_at", opened)) if state == "dismissed" else None,
            "dismissed_reason": alert.get("dismissed_reason", "false positive") if state == "dismissed" else None,
            "dismissed_comment": None,
            "rule": {"id": rule_id, "severity": alert.get("severity", "error"),
                     "security_severity_level": alert.get("security_severity"),
                     "description": alert.get("rule_name", rule_id), "name": alert.get("rule_name", rule_id),
                     "tags": ["security"], "full_description": alert.get("rule_name", rule_id)},
            "tool": {"name": alert.get("tool", "CodeQL"), "guid": None, "version": "2.17.0"},
            "most_recent_instance": {
                "ref": ref, "analysis_key": ".github/workflows/codeql.yml:analyze", "environment": "{}",
                "category": ".github/workflows/codeql.yml:analyze", "state": state,
                "commit_sha": alert.get("commit_sha") or repo.branches.get(repo.default_branch, ""),
                "message": {"text": alert.get("message", "This query depends on a user-provided value.")},
                "location": {"path": alert.get("path", "app.py"), "start_line": alert.get("start_line", 1),
                             "end_line": alert.get("end_line", alert.get("start_line", 1)),
                             "start_column": 1, "end_column": 10},
                "classifications": [],
            },
        }

    def dependabot_alert(self, repo: Repo, alert: Json) -> Json:
        """Render a Dependabot alert from its compact seed form."""
        number = alert["number"]
        url = f"{self.api}/repos/{repo.full_name}/dependabot/alerts/{number}"
        now = self.state.now()
        opened = alert_created(alert, now)
        created = iso(opened)
        package = {"ecosystem": alert.get("ecosystem", "pip"), "name": alert.get("package", "requests")}
        severity = alert.get("severity", "high")
        ghsa = alert.get("ghsa_id", f"GHSA-{number:04d}-sand-box0")
        cve = alert.get("cve_id")
        patched = alert.get("first_patched_version")
        vulnerability = {"package": package, "severity": severity,
                         "vulnerable_version_range": alert.get("vulnerable_version_range", "< 99.0"),
                         "first_patched_version": {"identifier": patched} if patched else None}
        state = alert.get("state", "open")
        identifiers = [{"type": "GHSA", "value": ghsa}] + ([{"type": "CVE", "value": cve}] if cve else [])
        return {
            "number": number, "state": state,
            "dependency": {"package": package, "manifest_path": alert.get("manifest_path", "requirements.txt"),
                           "scope": alert.get("scope", "runtime"), "relationship": "direct"},
            "security_advisory": {
                "ghsa_id": ghsa, "cve_id": cve, "summary": alert.get("summary", f"Vulnerability in {package['name']}"),
                "description": alert.get("summary", f"Vulnerability in {package['name']}"),
                "vulnerabilities": [vulnerability], "severity": severity,
                "cvss": {"score": float(alert.get("cvss", 7.5)), "vector_string": None},
                "cvss_severities": None, "epss": None, "cwes": [], "identifiers": identifiers,
                "references": [{"url": f"https://github.com/advisories/{ghsa}"}], "published_at": created,
                "updated_at": created, "withdrawn_at": None,
            },
            "security_vulnerability": vulnerability, "url": url,
            "html_url": f"{self.html}/{repo.full_name}/security/dependabot/{number}", "created_at": created,
            "updated_at": iso(alert_updated(alert, now)),
            "dismissed_at": iso(alert.get("dismissed_at", opened)) if state == "dismissed" else None,
            "dismissed_by": self.user(alert.get("dismissed_by")) if state == "dismissed" else None,
            "dismissed_reason": alert.get("dismissed_reason", "tolerable_risk") if state == "dismissed" else None,
            "dismissed_comment": None, "fixed_at": iso(alert.get("fixed_at", opened)) if state == "fixed" else None,
            "auto_dismissed_at": iso(alert.get("auto_dismissed_at", opened)) if state == "auto_dismissed" else None,
        }

    def secret_scanning_alert(self, repo: Repo, alert: Json) -> Json:
        """Render a secret-scanning alert from its compact seed form."""
        number = alert["number"]
        url = f"{self.api}/repos/{repo.full_name}/secret-scanning/alerts/{number}"
        now = self.state.now()
        opened = alert_created(alert, now)
        created = iso(opened)
        state = alert.get("state", "open")
        return {
            "number": number, "created_at": created, "updated_at": iso(alert_updated(alert, now)), "url": url,
            "html_url": f"{self.html}/{repo.full_name}/security/secret-scanning/{number}",
            "locations_url": f"{url}/locations", "state": state,
            "resolution": alert.get("resolution", "revoked") if state == "resolved" else None,
            "resolved_at": iso(alert.get("resolved_at", opened)) if state == "resolved" else None,
            "resolved_by": self.user(alert.get("resolved_by")) if state == "resolved" else None,
            "resolution_comment": None, "secret_type": alert.get("secret_type", "aws_access_key_id"),
            "secret_type_display_name": alert.get("secret_type_display_name", "AWS Access Key ID"),
            "secret": "AKIA" + "X" * 16, "validity": alert.get("validity", "unknown"),
            "push_protection_bypassed": False, "push_protection_bypassed_by": None,
            "push_protection_bypassed_at": None, "publicly_leaked": False, "multi_repo": False,
        }
