"""Webhook routing: features register handlers on small routers; the app composes them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from github_app.settings import Settings

if TYPE_CHECKING:
    from github_app.github import GitHubClients
    from scorer.assessment import RiskEstimate
    from scorer.evidence import Evidence


class RiskEstimator(Protocol):
    """The active risk model, as the gate uses it."""

    def estimate(self, evidence: Evidence) -> RiskEstimate | None: ...


class Waker(Protocol):
    """Something that works through stored jobs and can be told there is new work (the notification outbox)."""

    def wake(self) -> None: ...


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad key, unknown installation); the delivery goes straight to dead."""


class RetryLater(Exception):
    """Not a failure: the delivery cannot be handled yet (another worker's lease, a rate limit), so it waits.

    The worker parks the delivery until ``after`` seconds from now without counting an attempt, so waiting
    never pushes a delivery towards ``dead``; the worker slot is freed instead of sleeping.
    """

    def __init__(self, reason: str, after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = max(0.0, float(after))


@dataclass
class Event:
    """One webhook delivery as handlers see it."""

    name: str
    action: str | None
    delivery_id: str
    installation_id: int | None
    payload: dict[str, Any]
    attempt: int = 1

    @classmethod
    def from_delivery(
        cls, name: str, action: str | None, delivery_id: str, installation_id: int | None, raw: str, attempt: int = 1
    ) -> Event:
        try:
            payload = json.loads(raw)
        except RecursionError:  # the intake refuses such bodies; one stored before it did can never be parsed
            raise PermanentError("the payload is JSON nested too deeply to parse; no retry can change that") from None
        return cls(name, action, delivery_id, installation_id, payload, attempt)


@dataclass
class Context:
    """Resources a handler may use, built once in the lifespan and passed in.

    The collaborators of the deployment lifecycle are typed fields; ``services`` holds the rest. Given
    only ``services`` (as the composition code does), the typed fields are taken from it once, here.
    """

    settings: Settings
    engine: Engine
    services: dict[str, Any] = field(default_factory=dict)
    github: GitHubClients | None = None
    risk: RiskEstimator | None = None
    outbox: Waker | None = None

    def __post_init__(self) -> None:
        self.github = self.github or self.services.get("github")
        self.risk = self.risk or self.services.get("risk")
        self.outbox = self.outbox or self.services.get("outbox")

    def github_clients(self) -> GitHubClients:
        """The GitHub client factory; a clear permanent error in a process configured without one."""
        if self.github is None:
            raise PermanentError("GitHub is not configured in this process: set GONOGO_APP_ID and GONOGO_PRIVATE_KEY")
        return self.github

    def service(self, name: str) -> Any:
        try:
            return self.services[name]
        except KeyError:
            raise PermanentError(f"service {name!r} is not configured in this process") from None


Handler = Callable[[Context, Event], Awaitable[None]]


class Router:
    """Handlers for (event, action) pairs; action None matches every action of the event."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], list[Handler]] = {}

    def on(self, event: str, *actions: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for action in actions or (None,):
                self._routes.setdefault((event, action), []).append(fn)
            return fn

        return register

    def add(self, other: Router) -> None:
        for key, handlers in other._routes.items():
            self._routes.setdefault(key, []).extend(handlers)

    @property
    def events(self) -> frozenset[str]:
        """The allow-list: every event some handler asked for."""
        return frozenset(event for event, _ in self._routes)

    def handlers(self, event: str, action: str | None) -> list[Handler]:
        found = list(self._routes.get((event, None), []))
        if action is not None:
            found += self._routes.get((event, action), [])
        return found

    async def dispatch(self, ctx: Context, ev: Event) -> int:
        """Run every handler for ``ev`` in registration order; return how many ran."""
        handlers = self.handlers(ev.name, ev.action)
        for handler in handlers:
            await handler(ctx, ev)
        return len(handlers)


def compose(routers: Iterable[Router]) -> Router:
    root = Router()
    for r in routers:
        root.add(r)
    return root
