"""`gonogo setup`: GitHub's manifest flow against the sandbox, in real headless Chromium and over plain HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from github_app.app import create_app
from github_app.commands.setup import SetupPage, api_url_for, build_manifest, creation_url
from github_app.sandbox import SandboxState, running_sandbox
from github_app.sandbox.app_hooks import deliver
from github_app.sandbox.webhooks import deployment_protection_rule_payload
from github_app.serving import ServerThread, free_port
from github_app.settings import Settings
from tests.world import DEMO_SCENARIO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def sandbox() -> Iterator[Any]:
    state = SandboxState.from_scenario(DEMO_SCENARIO)
    with running_sandbox(state) as running:
        yield running


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _start_setup(sandbox: Any, tmp_path: Path, webhook_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "setup", "--webhook-url", webhook_url, "--github-url", sandbox.url,
         "--api-url", sandbox.url, "--env-file", str(tmp_path / "gonogo.env"), "--no-open", "--timeout", "120"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    found = re.search(r"Open (http://127\.0\.0\.1:\d+/\S+/) in a browser", first)
    assert found, first
    return proc, found.group(1)


def test_setup_in_chromium_creates_the_app_and_its_credentials_decide_a_real_deployment(
    sandbox: Any, tmp_path: Path, database_url: str
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    assert Path(CHROMIUM).is_file(), "Debian's chromium is needed (.ci/run installs it)"
    state: SandboxState = sandbox.state
    app_port = free_port()
    webhook_url = f"http://127.0.0.1:{app_port}/webhooks/github"
    proc, local_url = _start_setup(sandbox, tmp_path, webhook_url)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                page.goto(local_url)
                page.wait_for_selector("#create", timeout=30_000)  # GitHub's confirmation page, after the form posted
                assert "Create GitHub App for octocat" in page.inner_text("#create")
                page.click("#create")
                page.wait_for_selector("text=gonogo is set up", timeout=30_000)
                assert page.url.startswith(local_url + "callback?code=")
            finally:
                browser.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err

    env_file, key_file = tmp_path / "gonogo.env", tmp_path / "gonogo.pem"
    values = _env_file(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert state.app is not None and values["GONOGO_APP_ID"] == str(state.app.id)
    assert values["GONOGO_WEBHOOK_SECRET"] == state.hook.secret and state.hook.url == webhook_url
    assert "PRIVATE KEY" in key_file.read_text()
    for secret in (values["GONOGO_WEBHOOK_SECRET"], values["GONOGO_CLIENT_SECRET"], key_file.read_text()[40:80]):
        assert secret not in out and secret not in err  # nothing secret printed
    assert "/apps/gonogo/installations/new" in out and "Deployment protection rules" in out

    # The credentials just created run gonogo, and GitHub (the sandbox) delivers to the webhook URL set up.
    settings = Settings.from_env({**values, "GONOGO_DATABASE_URL": database_url})
    with ServerThread(create_app(settings, workers=1), port=app_port):
        sent = deliver(state, "deployment_protection_rule", deployment_protection_rule_payload(state, "all-green"))
        assert sent.status_code == 202, sent.response_body
        repo, dep = state.deployment("all-green")
        deadline = time.monotonic() + 60
        while (gate := state.gate(repo.full_name, dep.run_id, dep.environment)).answer is None:
            assert time.monotonic() < deadline, "no decision from the app set up by gonogo setup"
            time.sleep(0.1)
        assert gate.answer == "approved"


def _page_form(html: str) -> tuple[str, dict[str, str]]:
    action = unescape(re.search(r"<form[^>]*action='([^']+)'", html).group(1))  # type: ignore[union-attr]
    fields = {m.group(1): unescape(m.group(2)) for m in re.finditer(r"name='([^']+)' value='([^']*)'", html)}
    return action, fields


@pytest.fixture
def setup_page(sandbox: Any, tmp_path: Path) -> Iterator[tuple[SetupPage, str]]:
    page = SetupPage({}, creation_url(sandbox.url, None), sandbox.url, tmp_path / "gonogo.env")
    server = ServerThread(page.app())
    page.manifest = build_manifest("https://gonogo.example.com/webhooks/github",
                                   f"{server.url}/{page.token}/callback", "gonogo")  # fmt: skip
    with server:
        yield page, f"{server.url}/{page.token}/"


def test_the_flow_over_plain_http_is_one_time_and_checks_state(sandbox: Any, setup_page: Any, tmp_path: Path) -> None:
    page, url = setup_page
    with httpx.Client(timeout=30) as client:
        assert client.get(url.replace(page.token, "guess")).status_code == 404  # the path is the first secret
        action, fields = _page_form(client.get(url).text)
        assert action.startswith(f"{sandbox.url}/settings/apps/new?state=")
        confirm = client.post(action, data=fields)
        assert confirm.status_code == 200
        confirm_action, confirm_fields = _page_form(confirm.text)
        back = client.post(confirm_action, data=confirm_fields, follow_redirects=False)
        assert back.status_code == 302 and back.headers["location"].startswith(url + "callback?code=")
        forged = re.sub(r"state=[^&]+", "state=forged", back.headers["location"])
        assert client.get(forged).status_code == 400  # not from the page gonogo opened: no exchange
        assert not sandbox.state.calls("POST", "/app-manifests/*/conversions")
        done = client.get(back.headers["location"])
        assert done.status_code == 200 and "gonogo is set up" in done.text
        assert page.done.is_set() and page.created is not None
        assert client.get(back.headers["location"]).status_code == 404  # one time only
        assert client.get(url).status_code == 404
    assert len(sandbox.state.calls("POST", "/app-manifests/*/conversions")) == 1


def test_a_code_is_exchanged_once(sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.url) as client:
        manifest = build_manifest("https://gonogo.example.com/webhooks/github", "https://localhost/cb", "gonogo")
        _, fields = _page_form(client.post("/settings/apps/new", data={"manifest": json.dumps(manifest)}).text)
        code = re.search(r"code=(\w+)", client.post("/settings/apps/new/confirm", data=fields).headers["location"])
        assert code is not None
        first = client.post(f"/app-manifests/{code.group(1)}/conversions")
        assert first.status_code == 201 and {"pem", "webhook_secret", "client_secret", "client_id"} <= set(first.json())
        assert client.post(f"/app-manifests/{code.group(1)}/conversions").status_code == 404


def test_a_bad_manifest_is_refused_by_the_creation_page(sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.url) as client:
        refused = client.post("/settings/apps/new", data={"manifest": '{"name": "x", "url": "ftp://nope"}'})
        assert refused.status_code == 422 and "url must be an http(s) URL" in refused.text
        assert client.post("/organizations/nobody-here/settings/apps/new", data={"manifest": "{}"}).status_code == 404
        manifest = build_manifest("https://h.example/webhooks/github", "http://127.0.0.1:1/t/callback", "gonogo")
        org = client.post("/organizations/gonogo-dev/settings/apps/new", data={"manifest": json.dumps(manifest)})
        assert org.status_code == 200 and "Create GitHub App for gonogo-dev" in org.text


def test_org_and_enterprise_server_urls() -> None:
    assert creation_url("https://github.com", "acme") == "https://github.com/organizations/acme/settings/apps/new"
    assert creation_url("https://github.com/", None) == "https://github.com/settings/apps/new"
    assert api_url_for("https://github.com") == "https://api.github.com"
    assert api_url_for("https://ghe.example.com/") == "https://ghe.example.com/api/v3"


def test_the_manifest_carries_app_yml() -> None:
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "app.yml").read_text())
    manifest = build_manifest("https://h.example/webhooks/github", "http://127.0.0.1:1/t/callback", "gonogo")
    assert manifest["default_permissions"] == spec["default_permissions"]
    assert manifest["default_events"] == spec["default_events"]
    assert manifest["public"] is False and manifest["hook_attributes"] == {"url": "https://h.example/webhooks/github",
                                                                          "active": True}


def test_setup_never_overwrites_credentials(tmp_path: Path) -> None:
    (tmp_path / "gonogo.env").write_text("GONOGO_APP_ID=1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-m", "github_app", "setup", "--webhook-url", "https://h.example/w",
                          "--no-open"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert run.returncode != 0 and "never overwrites" in run.stderr
    assert (tmp_path / "gonogo.env").read_text() == "GONOGO_APP_ID=1\n"


def _drive_the_flow_over_http(local_url: str) -> None:
    with httpx.Client(timeout=30) as client:
        action, fields = _page_form(client.get(local_url).text)
        confirm_action, confirm_fields = _page_form(client.post(action, data=fields).text)
        back = client.post(confirm_action, data=confirm_fields, follow_redirects=False)
        assert client.get(back.headers["location"]).status_code == 200


def test_credentials_in_a_folder_with_a_space_load_as_the_next_step_says(sandbox: Any, tmp_path: Path) -> None:
    folder = tmp_path / "my apps"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "setup", "--webhook-url", "https://h.example/webhooks/github",
         "--github-url", sandbox.url, "--api-url", sandbox.url, "--env-file", "my apps/gonogo.env", "--no-open",
         "--timeout", "120"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    found = re.search(r"Open (http://127\.0\.0\.1:\d+/\S+/) in a browser", proc.stdout.readline())
    assert found
    _drive_the_flow_over_http(found.group(1))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    step = re.search(r"2\. Start gonogo where \S+ reaches it:  (set -a; .*; set \+a);", out)
    assert step, out
    loaded = subprocess.run(["bash", "-c", step.group(1) + '; printf %s "$GONOGO_PRIVATE_KEY_PATH"'], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    assert loaded.stdout == str(folder / "gonogo.pem") and not loaded.stderr
    assert Path(loaded.stdout).read_text().startswith("-----BEGIN")


def test_setup_refuses_a_folder_that_does_not_exist_before_github_creates_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-m", "github_app", "setup", "--webhook-url", "https://h.example/w",
                          "--env-file", "nowhere/gonogo.env", "--no-open", "--timeout", "5"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode != 0 and "nowhere" in run.stderr and "Open " not in run.stdout


def test_a_webhook_url_without_gonogos_path_gets_a_note(tmp_path: Path) -> None:
    # a tunnel's bare address (https://x.trycloudflare.com) makes GitHub POST to "/", where gonogo answers 404
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-m", "github_app", "setup", "--webhook-url", "https://x.example.com",
                          "--no-open", "--timeout", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert "https://x.example.com/webhooks/github" in run.stderr and "/webhooks/github" in run.stderr


def test_a_github_url_without_its_scheme_is_refused(tmp_path: Path) -> None:
    # "github.com" would make the page post the manifest to a relative "github.com/settings/apps/new"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-m", "github_app", "setup", "--webhook-url", "https://h.example/webhooks/github",
                          "--github-url", "github.com", "--no-open", "--timeout", "1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 2 and "--github-url" in run.stderr and "Open " not in run.stdout, run.stderr
