"""Compare the live GitHub App's permissions and events with app.yml, so drift is noticed at start-up."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from github_app.github import GitHubClients, GitHubError, call

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).resolve().parent / "app.yml"  # shipped in the package; the checkout's app.yml links to it
LEVELS = {"read": 1, "write": 2, "admin": 3}


def expected(path: Path = MANIFEST) -> tuple[dict[str, str], set[str]] | None:
    """The permissions and events app.yml asks for, or None when the file is not shipped with this install."""
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("default_permissions") or {}), set(data.get("default_events") or [])


def compare(want: dict[str, str], events: set[str], have: dict[str, str], have_events: set[str]) -> list[str]:
    """Human-readable differences between what app.yml asks for and what the live app holds."""
    problems = []
    for name, level in sorted(want.items()):
        held = have.get(name)
        if held is None or LEVELS.get(held, 0) < LEVELS.get(level, 0):
            problems.append(f"permission {name}: app.yml needs {level}, the app has {held or 'none'}")
        elif LEVELS.get(held, 0) > LEVELS.get(level, 0):
            problems.append(f"permission {name}: the app holds {held}, app.yml asks only {level} (least privilege)")
    for name, level in sorted(have.items()):
        if name not in want:
            problems.append(f"permission {name}: the app holds {level}, which app.yml does not ask for (least privilege)")
    for event in sorted(events - have_events):
        problems.append(f"event {event}: app.yml subscribes to it, the app does not")
    return problems


async def check_live_app(clients: GitHubClients) -> list[str]:
    """Fetch the app from GitHub and log every difference from app.yml; never raises."""
    wanted = expected()
    if wanted is None:
        return []
    try:
        resp = await call(clients.app().rest.apps.async_get_authenticated())
    except GitHubError as exc:
        log.warning("app.manifest_check_failed", extra={"error": str(exc)})
        return [f"could not read the app: {exc}"]
    app: Any = resp.parsed_data
    perms = app.permissions.model_dump(exclude_none=True) if app and app.permissions else {}
    perms = {k: str(v) for k, v in perms.items() if isinstance(v, str)}
    problems = compare(wanted[0], wanted[1], perms, set(app.events or []) if app else set())
    for problem in problems:
        log.warning("app.manifest_drift", extra={"problem": problem})
    if not problems:
        log.info("app.manifest_ok")
    return problems
