"""``gonogo doctor``: check the whole installation, one ✓ or ✗ line per check, each ✗ with its fix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

RECENT = timedelta(hours=24)  # failing deliveries older than this are history, not a current problem


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""


class Report:
    """The lines printed so far; the exit code is 0 only when every check passed."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.checks: list[Check] = []
        self.echo = echo

    def add(self, ok: bool, what: str, fix: str = "") -> bool:
        self.checks.append(Check(ok, what, fix))
        mark = click.style("✓", fg="green") if ok else click.style("✗", fg="red")
        self.echo(f"{mark} {what}" + ("" if ok or not fix else f"\n    fix: {fix}"))
        return ok

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def _check_database(report: Report, database_url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from github_app import db

    where = db.describe(database_url)
    engine = db.make_engine(database_url)
    try:
        current = db.is_current(engine)
    except SQLAlchemyError as exc:
        report.add(False, f"database {where} is unreachable ({type(exc).__name__})",
                   "check GONOGO_DATABASE_URL, that the server runs and that this host may connect")  # fmt: skip
        return
    finally:
        engine.dispose()
    report.add(current, f"database {where} is reachable" + (" and migrated" if current else " but not migrated"),
               "run `gonogo db upgrade`")  # fmt: skip


# The fix for a GitHub call that failed after the app's key was accepted: a permission, an outage or a limit.
CALL_FIX = ("a 403 or 404: grant the app what app.yml lists and accept the new permissions on the installation; "
            "a 5xx or a rate limit: run `gonogo doctor` again later")


async def _read(report: Report, what: str, request: Any) -> Any:
    """The parsed answer of a GitHub call, or None after a ✗ line saying which call failed and why."""
    from github_app.github import GitHubError, call

    try:
        return (await call(request)).parsed_data
    except GitHubError as exc:
        report.add(False, f"{what} ({exc})", CALL_FIX)
        return None


async def _check_github(report: Report, settings: Any, repo: str | None) -> None:
    from github_app.github import GitHubClients, GitHubError, call, parse_time
    from github_app.manifest import compare, expected

    clients = GitHubClients(settings)
    try:
        app_gh = clients.app()
        try:
            app: Any = (await call(app_gh.rest.apps.async_get_authenticated())).parsed_data
        except GitHubError as exc:
            api = ("GONOGO_GITHUB_API_URL must be GitHub's REST API: https://api.github.com, or https://HOST/api/v3 "
                   "on GitHub Enterprise Server")  # fmt: skip
            if exc.status is None:  # no answer: the URL or the network, not the key
                report.add(False, f"could not reach GitHub at {settings.github_api_url} ({exc})",
                           f"{api}, and this host must be able to connect to it")  # fmt: skip
            else:
                report.add(False, f"the private key does not open GitHub App {settings.app_id} ({exc})",
                           "GONOGO_APP_ID must be the App ID of the app's settings page and GONOGO_PRIVATE_KEY a key "
                           "generated there (Private keys > Generate)" + ("" if exc.status == 401 else f"; {api}"))  # fmt: skip
            return
        report.add(True, f"the private key matches GitHub App {app.slug} (id {app.id})")

        wanted = expected()
        if wanted is not None:
            have = {k: v for k, v in (app.permissions.model_dump() if app.permissions else {}).items() if v}
            differences = compare(wanted[0], wanted[1], have, set(app.events or []))
            report.add(not differences, "permissions and events match app.yml" if not differences
                       else "permissions or events differ from app.yml: " + "; ".join(differences),
                       f"in the app's settings (Permissions & events) grant what app.yml lists, then accept the "
                       f"new permissions on each installation ({app.html_url})")  # fmt: skip

        hook = await _read(report, "could not read the app's webhook configuration",
                           app_gh.rest.apps.async_get_webhook_config_for_app())  # fmt: skip
        if hook is not None:
            problems = []
            if not hook.url:
                problems.append("no webhook URL")
            if hook.content_type != "json":
                problems.append(f"content type {hook.content_type!r}, not json")
            if not hook.secret:
                problems.append("no webhook secret")
            if str(hook.insecure_ssl) not in ("0", "None"):
                problems.append("TLS verification is off")
            report.add(not problems, f"webhook {hook.url} (JSON, secret set, TLS verified)" if not problems
                       else "webhook configuration: " + ", ".join(problems),
                       "in the app's settings (General > Webhook): the URL of gonogo's /webhooks/github, content "
                       "type application/json, the same secret as GONOGO_WEBHOOK_SECRET, SSL verification enabled")  # fmt: skip

        deliveries = await _read(report, "could not read the app's recent webhook deliveries",
                                 app_gh.rest.apps.async_list_webhook_deliveries(per_page=100))  # fmt: skip
        if deliveries is not None:
            since = datetime.now(UTC) - RECENT
            by_guid: dict[str, list[Any]] = {}
            for d in deliveries:
                if (parse_time(d.delivered_at) or since) >= since:
                    by_guid.setdefault(d.guid, []).append(d)
            failing = [max(a, key=lambda d: d.id) for a in by_guid.values()
                       if not any(200 <= d.status_code < 300 for d in a)]  # fmt: skip
            last = f" (latest: {failing[0].event}, {failing[0].status})" if failing else ""
            report.add(not failing, f"{len(by_guid)} webhook deliveries in 24 h, {len(failing)} failing{last}",
                       "make sure GitHub reaches the webhook URL and GONOGO_WEBHOOK_SECRET matches the app's secret; "
                       "a running gonogo asks GitHub to redeliver failed ones (GONOGO_REDELIVERY_SECONDS)")  # fmt: skip

        installations = await _read(report, "could not list the app's installations",
                                    app_gh.rest.apps.async_list_installations(per_page=100))  # fmt: skip
        if installations is not None:
            report.add(bool(installations), f"installed on {len(installations)} account(s)",
                       f"install the app: {app.html_url.rstrip('/')}/installations/new")  # fmt: skip
        for inst in installations or []:
            account = getattr(inst.account, "login", None) or getattr(inst.account, "slug", "?")
            if inst.suspended_at:
                report.add(False, f"installation {inst.id} on {account} is suspended",
                           f"unsuspend it in {inst.html_url}")  # fmt: skip
                continue
            gh = clients.installation(inst.id)
            repos = await _read(report, f"installation {inst.id} on {account}: could not list its repositories",
                                gh.rest.apps.async_list_repos_accessible_to_installation(per_page=100))  # fmt: skip
            if repos is None:
                continue
            names = ", ".join(r.name for r in repos.repositories[:10]) + (" ..." if repos.total_count > 10 else "")
            report.add(repos.total_count > 0, f"installation {inst.id} on {account}: {repos.total_count} "
                       f"repositories ({names or 'none'})", f"choose repositories in {inst.html_url}")  # fmt: skip

        if repo:
            await _check_repository(report, clients, app, repo)
    finally:
        await clients.aclose()


async def _check_repository(report: Report, clients: Any, app: Any, full_name: str) -> None:
    from github_app.github import GitHubError, NotFound, call
    from rules.policy import PolicyError, load_policy_text

    owner, _, name = full_name.partition("/")
    try:
        inst = (await call(clients.app().rest.apps.async_get_repo_installation(owner, name))).parsed_data
    except GitHubError:
        report.add(False, f"{full_name}: the app is not installed there",
                   f"add the repository to an installation: {app.html_url.rstrip('/')}/installations/new")  # fmt: skip
        return
    gh = clients.installation(inst.id)
    try:
        envs = (await call(gh.rest.repos.async_get_all_environments(owner, name, per_page=100))).parsed_data
        guarded = []
        for env in envs.environments or []:
            rules = (await call(gh.rest.repos.async_get_all_deployment_protection_rules(
                environment_name=env.name, repo=name, owner=owner))).parsed_data
            if any(r.enabled and r.app.id == app.id for r in rules.custom_deployment_protection_rules or []):
                guarded.append(env.name)
    except GitHubError as exc:
        report.add(False, f"{full_name}: could not list its environments and their protection rules ({exc})", CALL_FIX)
    else:
        others = sorted({e.name for e in envs.environments or []} - set(guarded))
        report.add(bool(guarded), f"{full_name}: {app.slug} guards "
                   + (", ".join(guarded) if guarded else "no environment") + (f" (not: {', '.join(others)})" if others else ""),
                   f"in {full_name} Settings > Environments > (e.g. production) > Deployment protection rules, "
                   f"enable {app.slug}")  # fmt: skip

    info = await _read(report, f"{full_name}: could not read the repository", gh.rest.repos.async_get(owner, name))
    if info is None:
        return
    branch = info.default_branch
    try:
        content = (await call(gh.rest.repos.async_get_content(owner, name, ".github/gonogo.yml", ref=branch))).parsed_data
    except NotFound:
        report.add(True, f"{full_name}: no .github/gonogo.yml on {branch}; the default policy pack applies")
        return
    except GitHubError as exc:
        report.add(False, f"{full_name}: could not read .github/gonogo.yml on {branch} ({exc})", CALL_FIX)
        return
    import base64

    text = base64.b64decode(getattr(content, "content", "") or "").decode("utf-8", "replace")
    try:
        load_policy_text(text, f"{full_name}@{branch}:.github/gonogo.yml")
    except PolicyError as exc:
        report.add(False, f"{full_name}: .github/gonogo.yml on {branch} is invalid: {exc}",
                   "fix the file (check it locally with `gonogo policy validate .github/gonogo.yml`)")  # fmt: skip
        return
    report.add(True, f"{full_name}: .github/gonogo.yml on {branch} is a valid policy")


@click.command()
@click.option("--repo", "repo", default=None, metavar="OWNER/NAME",
              help="Also check this repository: environments guarded by gonogo, its policy file.")
def doctor(repo: str | None) -> None:
    """Check settings, the GitHub App, its webhook and installations, and the database; say how to fix each ✗."""
    from github_app.settings import Settings, SettingsError

    report = Report(click.echo)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        report.add(False, f"settings: {exc}", "set the variable (README, Configuration; `gonogo setup` writes them)")
        raise SystemExit(1) from None
    report.add(True, f"settings read (app {settings.app_id}, GitHub API {settings.github_api_url})")
    _check_database(report, settings.database_url)
    if repo is not None and "/" not in repo:
        raise click.BadParameter("write OWNER/NAME", param_hint="--repo")
    asyncio.run(_check_github(report, settings, repo))
    failed = sum(not c.ok for c in report.checks)
    click.echo("\nAll checks passed." if not failed else f"\n{failed} check(s) failed.")
    raise SystemExit(0 if not failed else 1)
