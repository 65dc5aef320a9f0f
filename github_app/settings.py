"""One settings object, read once from an injectable environment."""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"


class SettingsError(Exception):
    """A setting is missing or invalid; the message says which and where to find it."""


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_WHERE = {
    "GONOGO_WEBHOOK_SECRET": "the 'Webhook secret' you set in the GitHub App settings (Settings > Developer settings > GitHub Apps > your app > General)",
    "GONOGO_APP_ID": "the 'App ID' shown at the top of the GitHub App settings page",
    "GONOGO_PRIVATE_KEY": "a private key generated under 'Private keys' in the GitHub App settings (PEM text in GONOGO_PRIVATE_KEY, or its file path in GONOGO_PRIVATE_KEY_PATH)",
}


# Every environment variable gonogo reads (some are read where they are used, not in Settings).
KNOWN_VARIABLES = frozenset({
    "GONOGO_APP_ID", "GONOGO_PRIVATE_KEY", "GONOGO_PRIVATE_KEY_PATH", "GONOGO_WEBHOOK_SECRET", "GONOGO_GITHUB_API_URL",
    "GONOGO_WEBHOOK_SECRET_PREVIOUS",
    "GONOGO_DATABASE_URL", "GONOGO_WORKERS", "GONOGO_DEMO", "GONOGO_DRY_RUN", "GONOGO_MAX_ATTEMPTS",
    "GONOGO_RETRY_BASE_SECONDS", "GONOGO_RETRY_MAX_SECONDS", "GONOGO_LEASE_SECONDS", "GONOGO_POLL_SECONDS",
    "GONOGO_MAX_BODY_BYTES", "GONOGO_BODY_TIMEOUT_SECONDS", "GONOGO_INTAKE_BUFFER_BYTES",
    "GONOGO_SWEEP_SECONDS", "GONOGO_INBOX_RETENTION_DAYS", "GONOGO_ALERTMANAGER_TOKEN",
    "GONOGO_ALERT_WINDOW_HOURS", "GONOGO_CHECK_MANIFEST", "GONOGO_RISK_MODEL", "GONOGO_RISK_MIN_OUTCOMES",
    "GONOGO_RETRAIN_AFTER", "GONOGO_DASHBOARD_TOKEN", "GONOGO_SHUTDOWN_GRACE_SECONDS",
    "GONOGO_GITHUB_TIMEOUT_SECONDS", "GONOGO_GITHUB_RETRIES",
    "GONOGO_REDELIVERY_SECONDS", "GONOGO_INSIGHTS_REFRESH_SECONDS", "GONOGO_INSIGHTS_KEEP_SECONDS",
    "GONOGO_NOTIFICATION_NETWORKS",
    "GONOGO_CLIENT_ID", "GONOGO_CLIENT_SECRET",  # the last two written by `gonogo setup`
})  # fmt: skip


def misspelt_variables(env: Mapping[str, str]) -> dict[str, str]:
    """``{name: the known name it most likely meant}`` for GONOGO_ variables gonogo does not read.

    Only near misses are reported: a policy's notification secrets (``secret_env``, named with
    ``rules.policy.NOTIFY_SECRET_PREFIX``) carry the same prefix, and those are not mistakes.
    """
    found = {}
    for name in env:
        if name.startswith("GONOGO_") and name not in KNOWN_VARIABLES:
            close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.85)
            if close:
                found[name] = close[0]
    return found


def _missing(name: str) -> SettingsError:
    return SettingsError(f"{name} is not set: set it to {_WHERE[name]}.")


def _networks(env: Mapping[str, str]) -> str:
    from github_app.notify import NETWORKS_VARIABLE, notification_networks

    try:
        notification_networks(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return env.get(NETWORKS_VARIABLE, "").strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}.") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}.")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False, maximum: float | None = None
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value):  # float() reads "nan", "inf" and 1e400 too
        raise SettingsError(f"{name} must be a finite number, got {raw!r}.")
    if value < 0 or (positive and value == 0):
        raise SettingsError(f"{name} must be {'above zero' if positive else 'at least 0'}, got {raw!r}.")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum:g}, got {raw!r}.")
    return value


def _token(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name, "").strip()
    if raw and len(raw) < 16:
        raise SettingsError(f"{name} is too short to be a secret: use at least 16 random characters "
                            "(for example the output of `openssl rand -hex 24`).")  # fmt: skip
    return Secret(raw) if raw else None


_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _ON | _OFF:  # read as off, GONOGO_DRY_RUN=enabled would reject deployments it was meant to spare
        raise SettingsError(f"{name} must be on or off (1/0, true/false, yes/no), got {raw!r}.")
    return raw in _ON


# Dialects and drivers gonogo ships with; a URL naming another fails only at its first connection otherwise.
_DATABASE_SCHEMES = {"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"}


def check_database_url(url: str, source: str = "GONOGO_DATABASE_URL") -> str:
    """Return ``url`` if gonogo can open a database with it; else raise SettingsError naming ``source``."""
    scheme, sep, rest = url.partition("://")
    problem = None
    if not sep or scheme.lower() not in _DATABASE_SCHEMES:
        problem = f"it names {scheme.lower()!r}" if sep else "it is not a URL"
    elif scheme.lower().startswith("sqlite") and rest and not rest.startswith("/"):
        problem = "a SQLite URL has three slashes before a relative path and four before an absolute one"
    else:
        try:
            urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            problem = "its port is not a number"
    if problem:  # the URL itself is not repeated: it may hold the database password
        raise SettingsError(
            f"{source} cannot be used ({problem}): set a SQLite URL (sqlite:///gonogo.db, "
            "sqlite:////var/lib/gonogo/gonogo.db) or a PostgreSQL one (postgresql://USER:PASSWORD@HOST:5432/NAME)."
        )
    return url


def _private_key(text: str, variable: str) -> Secret:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "\n" not in text.strip() and "\\n" in text:  # one line, as docker's --env-file and many secret stores hold it
        text = text.strip().replace("\\n", "\n") + "\n"
    if "PRIVATE KEY" not in text:
        raise SettingsError(
            f"{variable} does not look like a PEM private key (no 'PRIVATE KEY' header); "
            "paste the whole .pem file generated in the GitHub App settings."
        )
    try:
        load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:  # the error names no part of the key
        raise SettingsError(
            f"{variable} holds a PEM header but not a usable private key ({exc}); generate a new key under "
            "'Private keys' in the GitHub App settings and use the whole downloaded .pem file."
        ) from None
    return Secret(text)


def default_database_url(cwd: Path | None = None) -> str:
    return f"sqlite:///{(cwd or Path.cwd()) / 'gonogo.db'}"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a gonogo process."""

    webhook_secret: Secret | None
    webhook_secret_previous: Secret | None = None  # still accepted while GitHub's secret is being rotated
    app_id: str | None = None
    private_key: Secret | None = None
    github_api_url: str = DEFAULT_API_URL
    database_url: str = field(default_factory=default_database_url)
    workers: int = 2
    demo_mode: bool = False
    max_attempts: int = 6  # a failing delivery is parked as dead after this many tries
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    lease_seconds: float = 120.0  # a claimed delivery becomes claimable again after this
    poll_seconds: float = 0.5
    max_body_bytes: int = 25 * 1024 * 1024
    body_timeout_seconds: float = 10.0  # a request body must arrive whole within this (GitHub itself waits 10 s)
    # bytes of request bodies the intake holds at once (being read, or waiting to be stored); 0: four bodies' worth
    intake_buffer_bytes: int = 0
    dry_run: bool = False  # decide and report, but never reject: approve, recording the verdict it would have given
    sweep_seconds: float = 60.0  # how often escalations are checked for reminders and expiry
    inbox_retention_days: int = 30  # finished deliveries older than this are pruned; 0 keeps them all
    alertmanager_token: Secret | None = None  # bearer token Alertmanager sends; None: the alert intake is off
    alert_window_hours: float = 24.0  # an alert this long after a release at most is blamed on it
    # private networks (CIDR ranges, comma-separated) notifications may reach; by default public addresses only
    notification_networks: str = ""
    dashboard_token: Secret | None = None  # password of the read-only /dashboard; None: the page is off
    shutdown_grace_seconds: float = 10.0  # background work still running this long after SIGTERM is cancelled
    github_timeout_seconds: float = 20.0  # one GitHub request, before it counts as failed
    github_retries: int = 4  # retries of one GitHub call (5xx, network, short rate limits) before it fails
    redelivery_seconds: float = 300.0  # how often GitHub is asked to redeliver missed webhooks; 0: never
    insights_refresh_seconds: float = 60.0  # an insights report older than this is recomputed; 0: every request
    insights_keep_seconds: float = 900.0  # reports asked for this recently are kept fresh in the background; 0: off
    check_manifest: bool = True  # compare the live app's permissions and events with app.yml at start-up
    risk_model: bool = True  # False: keep the rule-based risk estimate, never train or load a model
    risk_min_outcomes: int = 20  # labelled outcomes a repository needs before a learnt model estimates its risk
    retrain_after: int = 50  # new outcomes in a repository that trigger retraining its model

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_github: bool = True) -> Settings:
        """Read settings from ``env`` (default ``os.environ``); raise SettingsError on a bad value.

        ``require_github=False`` is for commands that only read or migrate the database: they need
        neither the App's id and key nor the webhook secret.
        """
        env = os.environ if env is None else env
        for name, meant in sorted(misspelt_variables(env).items()):
            log.warning("settings.unknown_variable", extra={"variable": name, "did_you_mean": meant})
        demo = _bool(env, "GONOGO_DEMO")
        secret = env.get("GONOGO_WEBHOOK_SECRET", "")
        app_id = env.get("GONOGO_APP_ID", "").strip() or None
        key_text = env.get("GONOGO_PRIVATE_KEY", "")
        key_path = env.get("GONOGO_PRIVATE_KEY_PATH", "").strip()
        key_variable = "GONOGO_PRIVATE_KEY"
        if key_text.strip() and key_path:  # one would be ignored: after a rotation, maybe the new key
            raise SettingsError("GONOGO_PRIVATE_KEY and GONOGO_PRIVATE_KEY_PATH are both set: keep one (the key's text, "
                                "or the path of its .pem file) and unset the other.")  # fmt: skip
        if not key_text and key_path:
            key_variable = "GONOGO_PRIVATE_KEY_PATH"
            try:
                key_text = Path(key_path).read_text()
            except OSError as exc:
                raise SettingsError(
                    f"GONOGO_PRIVATE_KEY_PATH points at {key_path!r}, which cannot be read ({exc.strerror}); "
                    "download the key from the GitHub App settings and point the variable at the .pem file."
                ) from None
            except UnicodeDecodeError:
                raise SettingsError(
                    f"GONOGO_PRIVATE_KEY_PATH points at {key_path!r}, which is not PEM text (a binary DER key?); "
                    "point it at the .pem file downloaded from the GitHub App settings."
                ) from None
        private_key = _private_key(key_text, key_variable) if key_text else None
        if require_github:  # every missing one at once: a first start should not take three tries
            missing = [name for name, absent in (("GONOGO_WEBHOOK_SECRET", not secret and not demo),
                                                 ("GONOGO_APP_ID", not app_id), ("GONOGO_PRIVATE_KEY", not key_text))
                       if absent]  # fmt: skip
            if missing:
                raise SettingsError("\n".join(str(_missing(name)) for name in missing))
        api_url = env.get("GONOGO_GITHUB_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
        if not api_url.startswith(("http://", "https://")):
            raise SettingsError(f"GONOGO_GITHUB_API_URL must be an http(s) URL, got {api_url!r}.")
        return cls(
            webhook_secret=Secret(secret) if secret else None,
            webhook_secret_previous=Secret(previous) if (previous := env.get("GONOGO_WEBHOOK_SECRET_PREVIOUS", "")) else None,
            app_id=app_id,
            private_key=private_key,
            github_api_url=api_url,
            database_url=check_database_url(url) if (url := env.get("GONOGO_DATABASE_URL", "").strip())
            else default_database_url(),
            workers=_int(env, "GONOGO_WORKERS", 2),
            demo_mode=demo,
            max_attempts=_int(env, "GONOGO_MAX_ATTEMPTS", 6, minimum=1),
            retry_base_seconds=_float(env, "GONOGO_RETRY_BASE_SECONDS", 2.0),
            retry_max_seconds=_float(env, "GONOGO_RETRY_MAX_SECONDS", 300.0),
            lease_seconds=_float(env, "GONOGO_LEASE_SECONDS", 120.0, positive=True),
            poll_seconds=_float(env, "GONOGO_POLL_SECONDS", 0.5, positive=True),
            max_body_bytes=_int(env, "GONOGO_MAX_BODY_BYTES", 25 * 1024 * 1024, minimum=1024),
            body_timeout_seconds=_float(env, "GONOGO_BODY_TIMEOUT_SECONDS", 10.0, positive=True),
            intake_buffer_bytes=_int(env, "GONOGO_INTAKE_BUFFER_BYTES", 0, minimum=0),
            dry_run=_bool(env, "GONOGO_DRY_RUN"),
            sweep_seconds=_float(env, "GONOGO_SWEEP_SECONDS", 60.0, positive=True),
            # a century at most: now minus the window must stay on the calendar
            inbox_retention_days=_int(env, "GONOGO_INBOX_RETENTION_DAYS", 30, maximum=36_500),
            alertmanager_token=_token(env, "GONOGO_ALERTMANAGER_TOKEN"),
            alert_window_hours=_float(env, "GONOGO_ALERT_WINDOW_HOURS", 24.0, maximum=24 * 36_500),
            notification_networks=_networks(env),
            dashboard_token=_token(env, "GONOGO_DASHBOARD_TOKEN"),
            shutdown_grace_seconds=_float(env, "GONOGO_SHUTDOWN_GRACE_SECONDS", 10.0),
            github_timeout_seconds=_float(env, "GONOGO_GITHUB_TIMEOUT_SECONDS", 20.0, positive=True),
            github_retries=_int(env, "GONOGO_GITHUB_RETRIES", 4, minimum=0),
            redelivery_seconds=_float(env, "GONOGO_REDELIVERY_SECONDS", 300.0),
            insights_refresh_seconds=_float(env, "GONOGO_INSIGHTS_REFRESH_SECONDS", 60.0),
            insights_keep_seconds=_float(env, "GONOGO_INSIGHTS_KEEP_SECONDS", 900.0),
            check_manifest=_bool(env, "GONOGO_CHECK_MANIFEST", default=True),
            risk_model=_bool(env, "GONOGO_RISK_MODEL", default=True),
            risk_min_outcomes=_int(env, "GONOGO_RISK_MIN_OUTCOMES", 20),
            retrain_after=_int(env, "GONOGO_RETRAIN_AFTER", 50),
        )
