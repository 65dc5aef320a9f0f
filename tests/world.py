"""An end-to-end world for tests: the GitHub sandbox and the gonogo app, both over real HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from github_app import db
from github_app.app import create_app
from github_app.sandbox import SandboxState, running_sandbox
from github_app.sandbox.webhooks import check_run_payload, deployment_protection_rule_payload, send_webhook
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import SECRET, make_settings, query

DEMO_SCENARIO = Path(__file__).resolve().parents[1] / "github_app" / "sandbox" / "scenarios" / "demo.yml"


@dataclass
class World:
    state: SandboxState
    api_url: str
    app_url: str
    database_url: str
    settings: Any = None

    def send(self, event: str, payload: dict[str, Any], delivery_id: str | None = None) -> httpx.Response:
        return send_webhook(self.app_url, SECRET, event, payload, delivery_id)

    def request_gate(self, label: str, delivery_id: str | None = None) -> httpx.Response:
        """Fire the protection-rule webhook for a scenario deployment."""
        payload = deployment_protection_rule_payload(self.state, label)
        response = self.send("deployment_protection_rule", payload, delivery_id)
        assert response.status_code == 202, response.text
        return response

    def gate(self, label: str) -> Any:
        repo, dep = self.state.deployment(label)
        return self.state.gate(repo.full_name, dep.run_id, dep.environment)

    def wait(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_decided(self, label: str, timeout: float = 30.0) -> Any:
        """Wait until gonogo published its decision (the check run completes after any answer)."""
        repo, dep = self.state.deployment(label)

        def done() -> Any:
            gate = self.gate(label)
            runs = [r for r in self.own_check_runs(repo.full_name, dep.sha) if r.status == "completed"]
            return gate if runs else None  # the check run is completed last

        return self.wait(done, timeout, f"a decision on {label}")

    def escalate(self, label: str) -> Any:
        """Request the gate and wait for gonogo to escalate it (the set-up of every reviewer test); the gate."""
        self.request_gate(label)
        gate = self.wait_decided(label)
        assert self.check_run(label).conclusion == "action_required", f"{label} was not escalated"
        return gate

    def check_run(self, label: str) -> Any:
        repo, dep = self.state.deployment(label)
        runs = self.own_check_runs(repo.full_name, dep.sha)
        assert runs, f"no gonogo check run on {label}"
        return runs[-1]

    def own_check_runs(self, full_name: str, sha: str) -> list[Any]:
        """The check runs gonogo's app posted on ``sha`` (a CI job may be called gonogo too)."""
        assert self.state.app is not None
        return [r for r in self.state.check_runs(full_name, name="gonogo", head_sha=sha)
                if r.app_id == self.state.app.id]  # fmt: skip

    def app_context(self) -> Any:
        """A handler context like the app's own, for driving periodic work (the sweeper) from a test."""
        from github_app.github import GitHubClients
        from github_app.routing import Context

        return Context(self.settings, db.make_engine(self.database_url), {"github": GitHubClients(self.settings)})

    def query(self, stmt: Any) -> list[Any]:
        """The rows of ``stmt`` in the app's database."""
        return query(self.database_url, stmt)

    def deliveries(self) -> list[Any]:
        from sqlalchemy import select

        from github_app.db.models import Delivery

        return self.query(select(Delivery).order_by(Delivery.id))

    def settle(self) -> None:
        """Wait until the inbox is drained: every stored delivery done, dead or ignored."""
        self.wait(lambda: all(d.state in ("done", "dead", "ignored") for d in self.deliveries()),
                  what="the inbox to drain")  # fmt: skip

    def accepted_answers(self, repository: str) -> list[Any]:
        """The protection-rule answers (approved / rejected) GitHub accepted for ``repository``, in order."""
        return [r for r in self.state.reviews(repository) if r.state is not None and r.accepted]

    def click(
        self, label: str, login: str, identifier: str = "approve", delivery_id: str | None = None
    ) -> httpx.Response:
        """Press a button (``identifier``) of the label's gonogo check run as ``login``."""
        repo, _ = self.state.deployment(label)
        payload = check_run_payload(self.state, repo.full_name, self.check_run(label).id, "requested_action",
                                    identifier=identifier)  # fmt: skip
        payload["sender"]["login"] = login
        return self.send("check_run", payload, delivery_id)


@contextlib.contextmanager
def running_world(
    database_url: str, scenario: Path | dict[str, Any] | SandboxState = DEMO_SCENARIO, **settings: Any
) -> Iterator[World]:
    state = scenario if isinstance(scenario, SandboxState) else SandboxState.from_scenario(scenario)
    assert state.app is not None and state.app.private_key_pem, "scenario must let the sandbox generate the app key"
    with running_sandbox(state) as sandbox:
        opts: dict[str, Any] = {
            "app_id": str(state.app.id), "private_key": Secret(state.app.private_key_pem),
            "github_api_url": sandbox.url, "workers": 2,
        }  # fmt: skip
        opts.update(settings)
        settings_obj = make_settings(database_url, **opts)
        app = create_app(settings_obj)
        with ServerThread(app) as server:
            yield World(state=state, api_url=sandbox.url, app_url=server.url, database_url=database_url,
                        settings=settings_obj)
