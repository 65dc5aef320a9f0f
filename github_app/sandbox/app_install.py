"""Sandbox routes that show where the app is installed and where it guards deployments.

``GET /app/installations`` (app JWT), ``GET /installation/repositories`` (installation token), and a
repository's environments with their custom deployment protection rules. Environments live in
``state.environments``: owner/name -> environment -> ids of the apps enabled as its protection rules.
"""

from __future__ import annotations

from starlette.responses import Response

from github_app.sandbox.app import NOT_FOUND, ApiError, Ctx, Handler, ok
from github_app.sandbox.render import node_id
from github_app.sandbox.state import SandboxState, iso, stable_id


def set_environment(state: SandboxState, full_name: str, environment: str, app_ids: list[int] | None = None) -> None:
    """Create an environment of a repository, with these apps enabled as its custom protection rules."""
    with state.lock:
        state.environments.setdefault(full_name.lower(), {})[environment] = list(app_ids or [])


def list_installations(ctx: Ctx) -> Response:
    """GET /app/installations."""
    app = ctx.state.app
    if app is None:
        raise ApiError(404, NOT_FOUND)
    per_page = int(ctx.q("per_page") or 30)
    page = int(ctx.q("page") or 1)
    items = sorted(ctx.state.installations.values(), key=lambda i: i.id)
    return ok([ctx.render.installation(i, app) for i in items[(page - 1) * per_page: page * per_page]])


def installation_repositories(ctx: Ctx) -> Response:
    """GET /installation/repositories: the repositories the calling installation's token can reach."""
    assert ctx.caller is not None
    inst = ctx.state.installations[ctx.caller.installation_id]
    names = [r for key, r in sorted(ctx.state.repos.items()) if r.owner.lower() == inst.account.lower()
             and (inst.repositories is None or r.name.lower() in {n.lower() for n in inst.repositories})]  # fmt: skip
    return ok({"total_count": len(names), "repository_selection": "all" if inst.repositories is None else "selected",
               "repositories": [ctx.render.repo(r) for r in names]})  # fmt: skip


def _environment(ctx: Ctx, name: str) -> dict[str, object]:
    repo = ctx.need_repo()
    env_id = stable_id(f"{repo.full_name}/{name}".lower())
    created = iso(repo.created_at)
    return {"id": env_id, "node_id": node_id("EN", env_id), "name": name,
            "url": f"{ctx.render.api}/repos/{repo.full_name}/environments/{name}",
            "html_url": f"{ctx.render.html}/{repo.full_name}/deployments/activity_log?environments_filter={name}",
            "created_at": created, "updated_at": created, "protection_rules": [],
            "deployment_branch_policy": None}  # fmt: skip


def list_environments(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/environments."""
    envs = ctx.state.environments.get(ctx.need_repo().full_name.lower(), {})
    return ok({"total_count": len(envs), "environments": [_environment(ctx, name) for name in sorted(envs)]})


def list_protection_rules(ctx: Ctx) -> Response:
    """GET /repos/{owner}/{repo}/environments/{environment_name}/deployment_protection_rules."""
    repo = ctx.need_repo()
    envs = ctx.state.environments.get(repo.full_name.lower(), {})
    name = ctx.params["environment_name"]
    if name not in envs:
        raise ApiError(404, NOT_FOUND)
    rules = []
    for app_id in envs[name]:
        rendered = ctx.render.app(app_id)
        rule_id = stable_id(f"{repo.full_name}/{name}/{app_id}".lower())
        rules.append({"id": rule_id, "node_id": node_id("DPR", rule_id), "enabled": True,
                      "app": {"id": app_id, "slug": rendered["slug"], "node_id": rendered["node_id"],
                              "integration_url": f"{ctx.render.api}/apps/{rendered['slug']}"}})  # fmt: skip
    return ok({"total_count": len(rules), "custom_deployment_protection_rules": rules})


R = "/repos/{owner}/{repo}"
# (method, path, handler, auth, with_repo), as in github_app.sandbox.app.ROUTES
INSTALL_ROUTES: list[tuple[str, str, Handler, str, bool]] = [
    ("GET", "/app/installations", list_installations, "app", False),
    ("GET", "/installation/repositories", installation_repositories, "installation", False),
    ("GET", R + "/environments", list_environments, "installation", True),
    ("GET", R + "/environments/{environment_name}/deployment_protection_rules", list_protection_rules,
     "installation", True),
]
