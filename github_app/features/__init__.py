"""Webhook features; ``default_router`` composes them in one place, which is also the event allow-list."""

from __future__ import annotations

from github_app.routing import Router, compose


def default_router() -> Router:
    """Every feature of the app, composed."""
    from github_app.features import alerts, escalation, gate, installations, outcomes

    return compose([installations.router, gate.router, escalation.router, outcomes.router, alerts.router])
