"""Shared test helpers: database URLs, settings, signed webhooks."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from github_app import db
from github_app.db.models import AuditEntry, Deployment
from github_app.settings import Secret, Settings
from github_app.webhooks import signature_for

ROOT = Path(__file__).resolve().parents[1]
# Small real fixtures, in the repository (tests/fixtures/corpus/README.md says where each comes from)
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
# The complete sample collections, beside the checkout when available: only the large-corpus checks need them
LARGE_CORPUS = ROOT.parent / "shared" / "corpus"
LARGE_CORPUS_MISSING = f"needs the large shared corpus at {LARGE_CORPUS} (tests/fixtures/corpus/README.md)"
SECRET = "test-webhook-secret-\u00e9"  # non-ASCII on purpose
POSTGRES_URL = os.environ.get("GONOGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def backend() -> str:
    url = os.environ.get("GONOGO_DATABASE_URL", "")
    return "postgresql" if url.startswith("postgres") else "sqlite"


def sign(body: bytes, secret: str = SECRET) -> str:
    return signature_for(secret, body)


def webhook_headers(event: str, body: bytes, delivery_id: str | None = None, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "User-Agent": "GitHub-Hookshot/test",
    }


def post_webhook(
    base_url: str, event: str, payload: dict[str, Any] | bytes, delivery_id: str | None = None, secret: str = SECRET
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(
        f"{base_url}/webhooks/github", content=body, headers=webhook_headers(event, body, delivery_id, secret), timeout=30
    )


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secret": Secret(SECRET),
        "database_url": database_url,
        "workers": 1,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "poll_seconds": 0.05,
        "lease_seconds": 30.0,
        "redelivery_seconds": 0.0,  # off unless a test is about it: its start-up pass adds GitHub calls
        "insights_keep_seconds": 0.0,  # no background reports unless a test is about them: tests seed after start-up
    }
    values.update(overrides)
    return Settings(**values)


def query(database_url: str, stmt: Any) -> list[Any]:
    """The rows of ``stmt``, read through an engine of the test's own (as another process would read them)."""
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt).all())
    finally:
        engine.dispose()


def execute(database_url: str, stmt: Any) -> None:
    """Change the app's database behind its back, in one transaction (to stage what a crash leaves behind)."""
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    finally:
        engine.dispose()


def audit_entries(database_url: str, kind: str) -> list[Any]:
    """The audit entries of one kind, oldest first."""
    return query(database_url, select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))


def deployment_row(database_url: str) -> Any:
    """The first deployment row (for tests with one deployment), or None before there is one."""
    rows = query(database_url, select(Deployment).order_by(Deployment.id).limit(1))
    return rows[0] if rows else None


def subprocess_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env.update({"GONOGO_WEBHOOK_SECRET": SECRET, "GONOGO_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def rsa_private_pem() -> str:
    """A fresh RSA private key in PEM, as the GitHub App settings page hands out."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def migration(revision: str) -> Any:
    """The module of one Alembic migration (their file names start with a digit: not importable by name)."""
    import importlib.util

    folder = ROOT / "github_app" / "db" / "migrations" / "versions"
    (path,) = folder.glob(f"{revision}_*.py")
    spec = importlib.util.spec_from_file_location(f"gonogo_migration_{revision}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
