"""``gonogo setup``: create the GitHub App from app.yml in one click, and keep its credentials.

GitHub's manifest flow: a local page (loopback only, on a one-time random path) POSTs the manifest
to GitHub's "new app" page; the user confirms; GitHub redirects back to the local page with a
one-time code, which gonogo exchanges (``POST /app-manifests/{code}/conversions``) for the app's
id, private key, webhook secret and client credentials. They are written to files only this user
can read, and never printed.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import shlex
import threading
import webbrowser
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

MANIFEST = Path(__file__).resolve().parents[1] / "app.yml"
DEFAULT_WEB_URL = "https://github.com"
LOOPBACK = "127.0.0.1"
WEBHOOK_PATH = "/webhooks/github"  # github_app.app.WEBHOOK_PATH, without importing the web app


def api_url_for(web_url: str) -> str:
    """Return the REST API base of a GitHub web address: api.github.com, or /api/v3 on GitHub Enterprise Server."""
    web_url = web_url.rstrip("/")
    return "https://api.github.com" if urlsplit(web_url).hostname == "github.com" else f"{web_url}/api/v3"


def creation_url(web_url: str, org: str | None) -> str:
    """Return where the manifest is POSTed: the user's or the organisation's "new GitHub App" page."""
    web_url = web_url.rstrip("/")
    return f"{web_url}/organizations/{org}/settings/apps/new" if org else f"{web_url}/settings/apps/new"


def build_manifest(webhook_url: str, redirect_url: str, name: str, app_yml: Path = MANIFEST) -> dict[str, Any]:
    """Build the manifest GitHub creates the app from: app.yml's permissions and events, our URLs."""
    import yaml

    if not app_yml.is_file():  # an app created without it would hold no permission and receive no event
        raise click.ClickException(f"{app_yml} is missing from this installation of gonogo; reinstall it.")
    spec = yaml.safe_load(app_yml.read_text())
    return {
        "name": name,
        "url": spec.get("url") or "https://github.com/gonogo-dev/gonogo",
        "description": spec.get("description") or "Go/no-go decisions for deployments.",
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": dict(spec.get("default_permissions") or {}),
        "default_events": list(spec.get("default_events") or []),
    }


@dataclass
class Created:
    """What GitHub handed back for the new app (secrets included: never print this)."""

    app_id: int
    slug: str
    html_url: str
    files: list[Path] = field(default_factory=list)


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by this user only; refuse to replace an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def write_credentials(data: Any, env_file: Path, api_url: str) -> list[Path]:
    """Write the key to a .pem file and the other settings to an env file, both mode 0600."""
    key_file = env_file.with_suffix(".pem")
    _write_private(key_file, data.pem)
    values = {"GONOGO_APP_ID": data.id, "GONOGO_PRIVATE_KEY_PATH": key_file.resolve(),
              "GONOGO_WEBHOOK_SECRET": data.webhook_secret, "GONOGO_CLIENT_ID": data.client_id,
              "GONOGO_CLIENT_SECRET": data.client_secret}  # fmt: skip
    if api_url != "https://api.github.com":
        values["GONOGO_GITHUB_API_URL"] = api_url
    lines = [
        f"# gonogo: the GitHub App {data.name!r} (id {data.id}), created by `gonogo setup` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "# Secrets: keep this file and the .pem beside it private and out of version control.",
        f"# Load it with: set -a; . {shell_path(Path(env_file.name))}; set +a",
        # quoted where needed, so that sourcing it keeps a key path with a space (~/My Apps/gonogo.pem) whole
        *(f"{name}={shlex.quote(str(value))}" for name, value in values.items()),
    ]
    _write_private(env_file, "\n".join(lines) + "\n")
    return [env_file, key_file]


def shell_path(path: Path) -> str:
    """``path`` as a shell word for ``.``: quoted if needed, and a bare name as ./name (``.`` searches PATH)."""
    text = str(path)
    return shlex.quote(text if path.is_absolute() or "/" in text else f"./{text}")


class SetupPage:
    """The loopback web page: serves the manifest form once, takes GitHub's redirect once, then closes."""

    def __init__(self, manifest: dict[str, Any], target: str, api_url: str, env_file: Path) -> None:
        self.token = secrets.token_urlsafe(24)
        self.state = secrets.token_urlsafe(24)
        self.manifest = manifest
        self.target = target
        self.api_url = api_url
        self.env_file = env_file
        self.done = threading.Event()
        self.created: Created | None = None
        self.error: str | None = None
        self._used = False

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, PlainTextResponse, Response
        from starlette.routing import Route

        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

        async def start(request: Request) -> Response:
            if request.path_params["token"] != self.token or self._used:
                return PlainTextResponse("Not Found", 404)
            manifest = escape(json.dumps(self.manifest), quote=True)
            action = escape(f"{self.target}?state={self.state}", quote=True)
            return HTMLResponse(
                "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>gonogo setup</title></head><body>"
                "<h1>Create the gonogo GitHub App</h1><p>Sending you to GitHub to confirm the app ...</p>"
                f"<form id='manifest' method='post' action='{action}'>"
                f"<input type='hidden' name='manifest' value='{manifest}'>"
                "<button type='submit'>Continue on GitHub</button></form>"
                "<script>document.getElementById('manifest').submit()</script></body></html>",
                headers=headers,
            )  # fmt: skip

        async def callback(request: Request) -> Response:
            if request.path_params["token"] != self.token or self._used:
                return PlainTextResponse("Not Found", 404)
            code, state = request.query_params.get("code", ""), request.query_params.get("state", "")
            if not code or not hmac.compare_digest(state.encode(), self.state.encode()):
                return PlainTextResponse("This answer does not come from the GitHub page gonogo opened "
                                         "(missing code or wrong state). Run `gonogo setup` again.", 400)  # fmt: skip
            self._used = True  # one exchange only, whatever its result
            try:
                self.created = await self._exchange(code)
            except Exception as exc:  # noqa: BLE001 - reported to the terminal and the page, then setup ends
                self.error = str(exc)
                self.done.set()
                return PlainTextResponse(f"gonogo could not finish the setup: {exc}", 502, headers=headers)
            self.done.set()
            return HTMLResponse(
                "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>gonogo setup</title></head><body>"
                f"<h1>gonogo is set up</h1><p>The GitHub App <b>{escape(self.created.slug)}</b> exists and its "
                "credentials are saved on your machine. Go back to your terminal for the next steps.</p>"
                "</body></html>", headers=headers)  # fmt: skip

        return Starlette(routes=[Route("/{token}/", start), Route("/{token}/callback", callback)])

    async def _exchange(self, code: str) -> Created:
        from githubkit import GitHub, UnauthAuthStrategy

        from github_app.github import call

        async with GitHub(UnauthAuthStrategy(), base_url=self.api_url + "/", user_agent="gonogo-setup") as gh:
            data = (await call(gh.rest.apps.async_create_from_manifest(code))).parsed_data
        files = write_credentials(data, self.env_file, self.api_url)
        return Created(app_id=data.id, slug=data.slug or str(data.id), html_url=data.html_url, files=files)


@click.command()
@click.option("--webhook-url", default=None, metavar="URL",
              help="Where GitHub sends webhooks: https://YOUR-HOST/webhooks/github (asked for when missing).")
@click.option("--org", default=None, help="Create the app for this organisation instead of your personal account.")
@click.option("--github-url", default=DEFAULT_WEB_URL, show_default=True,
              help="GitHub's web address; for GitHub Enterprise Server https://HOST.")
@click.option("--api-url", default=None, help="REST API base (default: from --github-url).")
@click.option("--name", default="gonogo", show_default=True, help="The app's name (unique on GitHub, 34 characters).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=Path("gonogo.env"),
              show_default=True, help="Where the settings go; the private key goes beside it as .pem.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Loopback port of the local page (default: any).")
@click.option("--open/--no-open", "open_browser", default=True, show_default=True, help="Open the page in a browser.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for you to confirm on GitHub.")
def setup(webhook_url: str | None, org: str | None, github_url: str, api_url: str | None, name: str,
          env_file: Path, port: int, open_browser: bool, timeout: float) -> None:  # fmt: skip
    """Create the GitHub App from app.yml (GitHub's manifest flow) and save its credentials."""
    import logging

    from github_app.serving import ServerThread

    for logger in ("uvicorn", "uvicorn.error"):  # the local page's server logs would bury the instructions
        logging.getLogger(logger).setLevel(logging.WARNING)
    for given, option in ((github_url, "--github-url"), (api_url, "--api-url")):
        if given is not None and (urlsplit(given).scheme not in ("http", "https") or not urlsplit(given).hostname):
            raise click.BadParameter(f"{given!r} is not an http(s) URL, e.g. https://github.com", param_hint=option)
    if not env_file.parent.is_dir():  # found out only after GitHub created the app, its one-time key would be lost
        raise click.ClickException(f"{env_file.parent} is not a folder: create it or choose another --env-file.")
    if env_file.exists() or env_file.with_suffix(".pem").exists():
        raise click.ClickException(f"{env_file} or {env_file.with_suffix('.pem')} already exists: move it away "
                                   "or choose another --env-file (setup never overwrites credentials).")  # fmt: skip
    if webhook_url is None:
        click.echo("GitHub must be able to reach gonogo's webhook URL over the internet. On a laptop, start a\n"
                   "tunnel first (see the README, 'Try it on GitHub') and use its https address.")  # fmt: skip
        webhook_url = str(click.prompt("Webhook URL (https://HOST/webhooks/github)"))
    if urlsplit(webhook_url).scheme not in ("http", "https") or not urlsplit(webhook_url).hostname:
        raise click.BadParameter(f"{webhook_url!r} is not an http(s) URL", param_hint="--webhook-url")
    if not urlsplit(webhook_url).path.rstrip("/").endswith(WEBHOOK_PATH):
        click.secho(f"Note: gonogo takes webhooks at {WEBHOOK_PATH}, and GitHub will POST to {webhook_url}; unless a proxy "
                    f"forwards that to gonogo's {WEBHOOK_PATH}, use {webhook_url.rstrip('/')}{WEBHOOK_PATH}.",
                    fg="yellow", err=True)  # fmt: skip
    if urlsplit(webhook_url).hostname in ("localhost", "127.0.0.1", "::1"):
        click.secho(f"Note: {webhook_url} is on this machine; github.com cannot deliver to it. Use a tunnel's "
                    "address, or change the webhook URL in the app's settings later.", fg="yellow", err=True)  # fmt: skip
    api = (api_url or api_url_for(github_url)).rstrip("/")
    page = SetupPage({}, creation_url(github_url, org), api, env_file)
    server = ServerThread(page.app(), host=LOOPBACK, port=port or None)
    page.manifest = build_manifest(webhook_url, f"{server.url}/{page.token}/callback", name)
    with server:
        local = f"{server.url}/{page.token}/"
        click.echo(f"Open {local} in a browser signed in to {github_url} to create the app"
                   f"{' for ' + org if org else ''}; this page works once.")  # fmt: skip
        if open_browser:
            webbrowser.open(local)
        if not page.done.wait(timeout):
            raise click.ClickException(f"No answer from GitHub within {timeout:.0f} s; run `gonogo setup` again.")
    if page.created is None:
        raise click.ClickException(f"GitHub did not hand over the app's credentials: {page.error}")
    created = page.created
    click.echo(f"\nCreated the GitHub App {created.slug} (id {created.app_id}). Its credentials are in "
               f"{created.files[0]} and {created.files[1]} (readable only by you; nothing secret was printed).\n")
    click.echo("Next steps:")
    click.echo(f"  1. Install it on your repositories: {created.html_url.rstrip('/')}/installations/new")
    click.echo(f"  2. Start gonogo where {webhook_url} reaches it:  set -a; . {shell_path(env_file)}; set +a; gonogo serve")
    click.echo("  3. In each repository: Settings > Environments > (e.g. production) > Deployment protection rules: "
               f"enable {created.slug}.")
    click.echo("  4. Check every piece with `gonogo doctor --repo OWNER/NAME`; optionally commit .github/gonogo.yml to the "
               "default branch to tune the policy (docs/policy.md).")
