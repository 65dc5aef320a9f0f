"""``gonogo demo``: the GitHub sandbox and the app on loopback ports, a handful of real deployments decided."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

DEMO_SCENARIO = Path(__file__).resolve().parents[1] / "sandbox" / "scenarios" / "demo.yml"


def _decisions(engine: Any) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from github_app.db.models import DecisionRecord, Deployment

    with engine.connect() as conn:
        rows = conn.execute(
            select(Deployment.repository, Deployment.run_id, Deployment.environment, Deployment.state,
                   DecisionRecord.verdict, DecisionRecord.action, DecisionRecord.readiness_score, DecisionRecord.risk,
                   DecisionRecord.confidence, DecisionRecord.data)
            .join(DecisionRecord, DecisionRecord.id == Deployment.decision_id)
        ).all()  # fmt: skip
    return {f"{r.repository}#{r.run_id}/{r.environment}": r._asdict() for r in rows}


def _dead(engine: Any) -> dict[str, str]:
    from sqlalchemy import select

    from github_app.db.models import Delivery

    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.payload, Delivery.last_error).where(Delivery.state == "dead")).all()
    out = {}
    for payload, error in rows:
        data = json.loads(payload)
        url = data.get("deployment_callback_url", "")
        run = url.rstrip("/").split("/")[-2] if url else "?"
        out[f"{data.get('repository', {}).get('full_name')}#{run}/{data.get('environment')}"] = (error or "").splitlines()[0]
    return out


def gonogo_command() -> str:
    """Return how the user's shell can run this gonogo: ``gonogo`` when on PATH, else its path."""
    exe = Path(sys.argv[0]) if Path(sys.argv[0]).name == "gonogo" else Path(sys.executable).parent / "gonogo"
    on_path = shutil.which("gonogo")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "gonogo"
    try:
        return str(exe.absolute().relative_to(Path.cwd()))  # e.g. .venv/bin/gonogo, runnable as typed
    except ValueError:
        return str(exe.absolute())


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: servers stop, the temporary folder goes


@click.command()
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEMO_SCENARIO,
              show_default="the bundled demo scenario")  # fmt: skip
@click.option("--keep-running", is_flag=True, help="Leave the sandbox and the app up for exploring (Ctrl-C stops).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's SQLite database goes (default: a temporary folder).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for all decisions.")
def demo(scenario: Path, keep_running: bool, workdir: Path | None, timeout: float) -> None:
    """Run gonogo end to end against the GitHub sandbox and show what it decided and why."""
    import logging

    from tqdm import tqdm

    from github_app import db
    from github_app.app import create_app
    from github_app.sandbox import SandboxState, generate_key_pair, running_sandbox
    from github_app.sandbox.scenario import ScenarioError
    from github_app.sandbox.webhooks import deployment_protection_rule_payload, send_webhook
    from github_app.serving import ServerThread
    from github_app.settings import Secret, Settings

    logging.getLogger().setLevel(logging.ERROR)  # the table below is the demo's output; logs would drown it
    click.secho("gonogo demo", bold=True)
    click.echo(f"  generating the app's RSA key pair and loading {scenario.name} into the GitHub sandbox ...")
    try:
        state = SandboxState.from_scenario(scenario)
    except (ScenarioError, KeyError, TypeError, ValueError) as exc:  # as `gonogo sandbox` reports them
        raise click.ClickException(f"Cannot load scenario {scenario}: {exc}") from None
    own_dir = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="gonogo-demo-")) if workdir is None else workdir
    folder.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{folder / 'gonogo.db'}"
    secret = "demo-" + tempfile.mktemp(dir="").lstrip("tmp")
    dashboard_password = secrets.token_urlsafe(12)
    private_pem, public_pem = generate_key_pair()
    app_id = state.app.id if state.app else 31337
    state.set_app(app_id, public_pem)
    labels = [
        (repo.full_name, dep.name, dep)
        for repo in state.iter_repos()
        for dep in repo.deployments.values()
        if dep.name
    ]
    try:
        with running_sandbox(state) as sandbox:
            settings = Settings(
                webhook_secret=Secret(secret), app_id=str(app_id), private_key=Secret(private_pem),
                github_api_url=sandbox.url, database_url=database_url, workers=4, max_attempts=2,
                retry_base_seconds=0.2, retry_max_seconds=1.0, poll_seconds=0.1,
                dashboard_token=Secret(dashboard_password),
            )  # fmt: skip
            with ServerThread(create_app(settings)) as app:
                click.echo(f"  GitHub sandbox on {sandbox.url}, gonogo on {app.url}, database {folder / 'gonogo.db'}")
                click.echo(f"  firing {len(labels)} deployments that wait on gonogo's protection rule ...\n")
                keys = []
                for full_name, label, dep in labels:
                    payload = deployment_protection_rule_payload(state, label, full_name=full_name)
                    response = send_webhook(app.url, secret, "deployment_protection_rule", payload)
                    if response.status_code != 202:
                        raise click.ClickException(f"the app refused the webhook: {response.status_code} {response.text}")
                    keys.append((label, f"{full_name}#{dep.run_id}/{dep.environment}", dep.sha[:7]))
                engine = db.make_engine(database_url)
                done: dict[str, Any] = {}
                deadline = time.monotonic() + timeout
                with tqdm(total=len(keys), desc="  decisions", unit="deploy", ncols=80) as bar:
                    while len(done) < len(keys) and time.monotonic() < deadline:
                        decided, dead = _decisions(engine), _dead(engine)
                        for name, key, _ in keys:
                            if name in done:
                                continue
                            hit = next((v for k, v in decided.items() if k.startswith(key)), None)
                            if hit is not None and hit["state"] in ("answered", "escalated"):
                                done[name] = hit
                            elif key in dead:
                                done[name] = {"error": dead[key]}
                            else:
                                continue
                            bar.update(1)
                        time.sleep(0.1)
                engine.dispose()
                _print_table(keys, done, state)
                _print_calls(state)
                if keep_running:
                    gonogo = gonogo_command()
                    click.echo(f"\nStill running: sandbox {sandbox.url}, app {app.url}. Try:\n"
                               f"  {app.url}/dashboard in a browser (any user name, password {dashboard_password})\n"
                               f"  curl -s {sandbox.url}/_sandbox/calls | head\n"
                               f"  {gonogo} deployments list --database-url {database_url}\n"
                               f"  GONOGO_DATABASE_URL={database_url} {gonogo} deliveries list\n"
                               + ("" if gonogo == "gonogo" else
                                  f"(or put gonogo on PATH first: source {Path(gonogo).parent / 'activate'})\n")
                               + "Ctrl-C to stop.")  # fmt: skip
                    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
                    try:
                        while True:
                            time.sleep(1)
                    except KeyboardInterrupt:
                        pass
                    finally:
                        signal.signal(signal.SIGTERM, previous)
                if len(done) < len(keys):
                    raise click.ClickException(f"only {len(done)} of {len(keys)} deployments were decided in {timeout:.0f} s")
    finally:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
            if keep_running:
                click.echo(f"Stopped; removed {folder}.")


WHY_WIDTH = 100


def clip(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, ending with an ellipsis when something was cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _print_table(keys: list[tuple[str, str, str]], done: dict[str, Any], state: Any) -> None:
    click.echo("")
    click.echo(f"{'deployment':22} {'environment':12} {'sha':8} {'answer':10} {'verdict':9} {'score':>5} {'risk':>5} "
               f"{'conf':>5}  why")  # fmt: skip
    indent = " " * 83  # under "why"
    for name, key, sha in keys:
        environment = clip(key.rpartition("/")[2], 12)
        d = done.get(name)
        name = clip(name, 22)
        if d is None:
            click.echo(f"{name:22} {environment:12} {sha:8} {'(pending)':10}")
            continue
        if "error" in d:
            click.echo(f"{name:22} {environment:12} {sha:8} {'-':10} {'error':9} {'':>5} {'':>5} {'':>5}  "
                       f"{clip(d['error'], WHY_WIDTH)}")  # fmt: skip
            continue
        data = d["data"] or {}
        reasons = data.get("reasons") or []
        answer = {"approve": "approved", "reject": "rejected"}.get(d["action"], "waiting")
        colour = {"approved": "green", "rejected": "red"}.get(answer, "yellow")
        click.echo(
            f"{name:22} {environment:12} {sha:8} " + click.style(f"{answer:10}", fg=colour)
            + f" {d['verdict']:9} {d['readiness_score'] or 0:5.0f} {100 * (d['risk'] or 0):4.0f}% "
            f"{100 * (d['confidence'] or 0):4.0f}%  {clip(reasons[0] if reasons else '', WHY_WIDTH)}"
        )
        for extra in reasons[1:3]:
            click.echo(f"{indent}  {clip(extra, WHY_WIDTH)}")
        strategy = (data.get("strategy") or {}).get("name")
        if strategy and answer != "rejected":
            click.echo(f"{indent}  rollout: {strategy}")


def _print_calls(state: Any) -> None:
    calls = state.calls()
    counts: Counter[str] = Counter()
    for c in calls:
        path = c.path
        for marker in ("/check-runs/", "/runs/", "/artifacts/", "/deployments/", "/commits/", "/compare/", "/contents/"):
            if marker in path:
                path = path[: path.index(marker) + len(marker)] + "…"
                break
        counts[f"{c.method} {path}"] += 1
    click.echo(f"\nGitHub sandbox saw {len(calls)} calls:")
    for route, n in counts.most_common(12):
        click.echo(f"  {n:4}  {route}")
    if len(counts) > 12:
        click.echo(f"  ... and {len(counts) - 12} more routes")
