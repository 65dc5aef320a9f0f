"""Shared test helpers: database URLs, settings, signed webhooks."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx

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
    }
    values.update(overrides)
    return Settings(**values)


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
