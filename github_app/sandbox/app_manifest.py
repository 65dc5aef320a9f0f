"""Sandbox routes for creating a GitHub App from a manifest, as GitHub's manifest flow does.

1. A page POSTs a form field ``manifest`` (JSON) to ``/settings/apps/new`` (a personal account) or
   ``/organizations/{org}/settings/apps/new``, with an optional ``state`` query parameter.
2. GitHub shows a confirmation page; the user picks the name and clicks "Create GitHub App".
3. GitHub creates the app and redirects the browser to the manifest's ``redirect_url`` with a
   one-time ``code`` (valid for one hour) and the ``state``.
4. The app's code exchanges it with ``POST /app-manifests/{code}/conversions`` (no authentication)
   for the app's id, private key (``pem``), webhook secret and client credentials.

Here the created app becomes the sandbox's app (its JWTs are the ones accepted from then on) and
its webhook URL and secret become the sandbox's webhook configuration.
"""

from __future__ import annotations

import json
import re
import secrets
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from github_app.sandbox.app import ApiError, Ctx, Handler, ok
from github_app.sandbox.auth import generate_key_pair

CODE_TTL_SECONDS = 3600
MAX_NAME = 34  # GitHub refuses longer app names


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
                        f"</head><body><h1>{escape(title)}</h1>{body}</body></html>", status_code=status)  # fmt: skip


def _http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)


def manifest_problems(manifest: Any) -> list[str]:
    """Say what GitHub would refuse in a manifest (empty when it is acceptable)."""
    if not isinstance(manifest, dict):
        return ["The manifest must be a JSON object"]
    problems = []
    if not _http_url(manifest.get("url")):
        problems.append("url must be an http(s) URL (the app's homepage)")
    hook = manifest.get("hook_attributes")
    if hook is not None:
        if not isinstance(hook, dict):
            problems.append("hook_attributes must be an object")
        elif hook.get("active", True) and not _http_url(hook.get("url")):
            problems.append("hook_attributes.url must be an http(s) URL while the webhook is active")
    if "redirect_url" in manifest and not _http_url(manifest["redirect_url"]):
        problems.append("redirect_url must be an http(s) URL")
    name = manifest.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME):
        problems.append(f"name must be 1 to {MAX_NAME} characters")
    for key in ("default_permissions",):
        if key in manifest and not (isinstance(manifest[key], dict)
                                    and all(v in ("read", "write", "admin") for v in manifest[key].values())):
            problems.append(f"{key} must map permissions to read, write or admin")
    if "default_events" in manifest and not (isinstance(manifest["default_events"], list)
                                             and all(isinstance(e, str) for e in manifest["default_events"])):
        problems.append("default_events must be a list of event names")
    return problems


def _new_app_form(ctx: Ctx, owner: str) -> Response:
    form = ctx.body if isinstance(ctx.body, dict) else {}
    try:
        manifest = json.loads(form.get("manifest", ""))
    except ValueError:
        manifest = None
    problems = manifest_problems(manifest) if manifest is not None else ["The manifest is not valid JSON"]
    if problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        return _page("Invalid GitHub App manifest", f"<ul class='errors'>{items}</ul>", 422)
    assert isinstance(manifest, dict)
    state = ctx.q("state") or ""
    name = manifest.get("name") or "my-app"
    hidden = "".join(f"<input type='hidden' name='{k}' value='{escape(v, quote=True)}'>"
                     for k, v in (("manifest", json.dumps(manifest)), ("state", state), ("owner", owner)))  # fmt: skip
    body = (f"<p>Create a GitHub App for <b>{escape(owner)}</b> with the permissions and events of the manifest.</p>"
            f"<form method='post' action='{ctx.render.api}/settings/apps/new/confirm'>{hidden}"
            f"<label>GitHub App name <input name='name' value='{escape(name, quote=True)}'></label> "
            f"<button type='submit' id='create'>Create GitHub App for {escape(owner)}</button></form>")  # fmt: skip
    return _page("Create GitHub App", body)


def new_personal_app(ctx: Ctx) -> Response:
    """POST /settings/apps/new: the confirmation page for a manifest, for the signed-in user's account."""
    return _new_app_form(ctx, ctx.state.signed_in_user)


def new_org_app(ctx: Ctx) -> Response:
    """POST /organizations/{org}/settings/apps/new: the confirmation page, for an organisation."""
    org = ctx.params["org"]
    if ctx.state.users.get(org) != "Organization":
        return _page("Not Found", "<p>No such organization.</p>", 404)
    return _new_app_form(ctx, org)


def confirm_new_app(ctx: Ctx) -> Response:
    """POST /settings/apps/new/confirm: create the app and send the browser back with a one-time code."""
    form = ctx.body if isinstance(ctx.body, dict) else {}
    try:
        manifest = json.loads(form.get("manifest", ""))
    except ValueError:
        return _page("Invalid GitHub App manifest", "<p>The manifest is not valid JSON.</p>", 422)
    name = (form.get("name") or "").strip()
    problems = manifest_problems({**manifest, "name": name}) if isinstance(manifest, dict) else ["not an object"]
    if problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        return _page("Invalid GitHub App manifest", f"<ul class='errors'>{items}</ul>", 422)
    state, owner = ctx.state, form.get("owner") or ctx.state.signed_in_user
    private_pem, public_pem = generate_key_pair()
    app_id = state.next_id()
    code = secrets.token_hex(20)
    with state.lock:
        state.manifest_codes[code] = {
            "app_id": app_id, "name": name, "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app",
            "owner": owner, "private_pem": private_pem, "public_pem": public_pem, "manifest": manifest,
            "webhook_secret": secrets.token_hex(20), "client_id": f"Iv1.{secrets.token_hex(8)}",
            "client_secret": secrets.token_hex(20), "expires_at": state.now() + CODE_TTL_SECONDS,
        }  # fmt: skip
    target = manifest.get("redirect_url") or f"{state.html_url}/settings/apps/{name}"
    query = urlencode({"code": code, **({"state": form["state"]} if form.get("state") else {})})
    return RedirectResponse(f"{target}{'&' if '?' in target else '?'}{query}", status_code=302)


def convert_manifest(ctx: Ctx) -> Response:
    """POST /app-manifests/{code}/conversions: exchange the one-time code for the app's credentials."""
    state = ctx.state
    with state.lock:
        created = state.manifest_codes.pop(ctx.params["code"], None)
    if created is None or created["expires_at"] < state.now():
        raise ApiError(404, "Not Found")
    state.set_app(created["app_id"], created["public_pem"], slug=created["slug"], name=created["name"],
                  owner=created["owner"])  # fmt: skip
    hook = created["manifest"].get("hook_attributes") or {}
    with state.lock:
        state.hook.url = hook.get("url") if hook.get("active", True) else None
        state.hook.secret = created["webhook_secret"]
    body = ctx.render.app(created["app_id"])
    body.update(client_id=created["client_id"], client_secret=created["client_secret"],
                webhook_secret=created["webhook_secret"], pem=created["private_pem"])  # fmt: skip
    return ok(body, status=201)


# (method, path, handler, auth, with_repo), as in github_app.sandbox.app.ROUTES
MANIFEST_ROUTES: list[tuple[str, str, Handler, str, bool]] = [
    ("POST", "/settings/apps/new", new_personal_app, "none", False),
    ("POST", "/settings/apps/new/confirm", confirm_new_app, "none", False),
    ("POST", "/organizations/{org}/settings/apps/new", new_org_app, "none", False),
    ("POST", "/app-manifests/{code}/conversions", convert_manifest, "none", False),
]
WEB_ROUTES = {"/settings/apps/new", "/settings/apps/new/confirm", "/organizations/{org}/settings/apps/new"}
