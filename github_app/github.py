"""The one module that talks to GitHub: githubkit clients, the retry policy, and error mapping.

Everything else asks this module for an installation client and catches only the exceptions
defined here; nothing else reaches into githubkit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub, GitHubCore
from githubkit.auth.app import AppAuth
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    AuthCredentialError,
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.response import Response
from githubkit.retry import RetryOption
from pydantic import TypeAdapter

from github_app.routing import RetryLater
from github_app.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# The REST API version every request names (X-GitHub-Api-Version): the one githubkit's response models describe
# and the tests run against. A githubkit release that models another version is refused at start-up rather
# than allowed to change what gonogo sends and reads.
API_VERSION = "2026-03-10"


class GitHubError(Exception):
    """A GitHub call failed. ``retryable`` says whether trying again later may help."""

    retryable = True

    def __init__(
        self, message: str, status: int | None = None, url: str | None = None, github_message: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.github_message = github_message  # GitHub's own "message", as it answered


class GitHubAuthError(GitHubError):
    """The app could not authenticate: wrong app id, wrong or malformed private key."""

    retryable = False


class InstallationNotFound(GitHubError):
    """The installation does not exist or the app was uninstalled."""

    retryable = False


class InstallationSuspended(InstallationNotFound):
    """An owner of the account suspended the app's installation: nothing can be done for it until unsuspended."""


class NotFound(GitHubError):
    retryable = False


class Forbidden(GitHubError):
    """403 that is not a rate limit: a missing permission or a disabled feature."""

    retryable = False


class MissingPermission(Forbidden):
    """403 "Resource not accessible by integration": the installation lacks a permission the call needs."""


class TooLarge(Forbidden):
    """403 with the error code "too_large": a file over the 1 MB the contents API sends inline."""


class FeatureDisabled(GitHubError):
    """403 or 404 with one of GitHub's documented "this feature is off for the repository" answers."""

    retryable = False


class Invalid(GitHubError):
    """422: GitHub refused the request as invalid (e.g. a deployment already answered)."""

    retryable = False


class RateLimited(RetryLater, GitHubError):
    """GitHub asked us to slow down for longer than a call may wait: try the whole job again ``after`` seconds.

    It is also a ``RetryLater``: the worker parks the delivery until then instead of sleeping, without
    counting an attempt. It never means that the resource asked for is missing or switched off.
    """

    def __init__(self, message: str, after: float, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message, after)  # RetryLater, then GitHubError with the message alone
        self.status = status
        self.url = url


class Unavailable(GitHubError):
    """5xx, timeouts or dropped connections that outlasted the retry budget."""


class UnexpectedAnswer(GitHubError):
    """GitHub answered with a body that is not what the endpoint describes (a proxy's page, a cut-off body)."""


class RetryPolicy:
    """The single retry policy for GitHub calls: honour rate limits, back off on 5xx and network errors.

    A call gives up once ``max_retries`` retries are spent or the next wait would exceed the remaining
    ``budget_seconds``; the delivery then goes back to the inbox for a later attempt (a rate limit parks it
    until GitHub's wait is over, see ``RateLimited``).

    Rate limits follow GitHub's rules for them: wait ``retry-after`` seconds when given; else, when
    ``x-ratelimit-remaining`` is 0, until ``x-ratelimit-reset`` (unless our clock is well past it); else at
    least a minute, doubling while secondary limits keep coming (``SecondaryBackoff``).
    """

    def __init__(
        self, max_retries: int = 4, budget_seconds: float = 30.0, base_seconds: float = 0.5,
        backoff: SecondaryBackoff | None = None,
    ) -> None:  # fmt: skip
        self.max_retries = max_retries
        self.budget_seconds = budget_seconds
        self.base_seconds = base_seconds
        self.backoff = backoff or SecondaryBackoff()

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if isinstance(exc, RequestError) and isinstance(exc.exc, GitHubException):
            exc = exc.exc  # a failure inside the auth flow (token request) arrives wrapped
        wait: float | None = None
        limited = rate_limit_wait(exc, self.backoff)
        if limited is not None:
            wait = limited
            setattr(exc, RATE_LIMIT_WAIT, wait)  # what map_error reports as the time to park the delivery
        elif _maybe_carried_out(exc):
            wait = None  # the delivery is tried again instead, and its state says what is left to do
        elif _server_error(exc) or _network_error(exc):
            wait = self.base_seconds * (2**retry_count)
        if retry_count >= self.max_retries or wait is None or wait > self.budget_seconds:
            return RetryOption(False)
        log.info("github.retry", extra={"error": type(exc).__name__, "wait_s": wait, "retry": retry_count + 1})
        return RetryOption(True, timedelta(seconds=wait))


RATE_LIMIT_WAIT = "gonogo_rate_limit_wait"
SECONDARY_MINIMUM_SECONDS = 60.0  # GitHub: without other hints, wait at least one minute
SECONDARY_MAXIMUM_SECONDS = 3600.0
RESET_SKEW_SECONDS = 5.0  # a primary limit's reset this far past on our clock is a clock a little ahead: wait a second


class SecondaryBackoff:
    """How long to wait for a secondary rate limit that names no time: a minute, doubling while they keep coming.

    A limit that comes more than ``calm_seconds`` after the previous wait was over starts again at a minute.
    """

    def __init__(self, calm_seconds: float = 600.0) -> None:
        self.calm_seconds = calm_seconds
        self.strikes = 0
        self.quiet_after = 0.0  # monotonic time from which a new limit counts as a fresh start

    def next_wait(self) -> float:
        now = time.monotonic()
        self.strikes = self.strikes + 1 if now < self.quiet_after else 0
        wait = min(SECONDARY_MINIMUM_SECONDS * float(2**self.strikes), SECONDARY_MAXIMUM_SECONDS)
        self.quiet_after = now + wait + self.calm_seconds
        return wait


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def rate_limit_wait(exc: BaseException, backoff: SecondaryBackoff | None = None) -> float | None:
    """Seconds to wait before asking again when ``exc`` is a rate-limit answer (403 or 429); None otherwise."""
    if not isinstance(exc, RequestFailed):
        return None
    response = exc.response.raw_response
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    secondary = "secondary rate limit" in _error_message(response).lower()
    if not (isinstance(exc, RateLimitExceeded) or secondary or response.status_code == 429):
        return None  # a 403 about permissions or a disabled feature
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return float(retry_after)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        until_reset = float(headers["x-ratelimit-reset"]) - time.time()
        if until_reset > -RESET_SKEW_SECONDS:
            return max(1.0, until_reset)
        # GitHub still refuses, so its reset has not come: our clock is well ahead of GitHub's. Asking again
        # every second until the clocks agree is what GitHub warns may get the app banned; wait as for a
        # limit that names no time instead
    return backoff.next_wait() if backoff is not None else SECONDARY_MINIMUM_SECONDS


_CLOCK_ADVICE = ("GitHub refused the app's token for its times ({message}): this machine's clock differs from "
                 "GitHub's by more than a minute. Synchronise it (NTP); the app id and private key are not at fault.")


def _clock_refused(message: str) -> bool:
    """Whether GitHub refused an app JWT for its issue or expiry time (a clock out of step), not its signature."""
    text = message.lower()
    return "'issued at' claim" in text or "'expiration time' claim" in text


def _maybe_carried_out(exc: GitHubException) -> bool:
    """A POST that GitHub may have carried out though it failed: a 504 (its edge gave up on a slow backend) or a
    connection lost after the request went. Sending it again could create a second check run or comment."""
    if isinstance(exc, RequestFailed):
        request, late = exc.request, exc.response.status_code == 504
    elif isinstance(exc, RequestError) and isinstance(exc.exc, httpx.TransportError):
        if isinstance(exc.exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return False  # never sent
        try:
            request, late = exc.exc.request, True
        except RuntimeError:  # an error raised before a request was built
            return False
    else:
        return False
    return late and request.method == "POST" and not request.url.path.endswith("/access_tokens")


def _server_error(exc: GitHubException) -> bool:
    return isinstance(exc, RequestFailed) and exc.response.status_code >= 500


def _network_error(exc: GitHubException) -> bool:
    """A timeout or a connection failure (not an HTTP error answer)."""
    if not (isinstance(exc, RequestTimeout) or (isinstance(exc, RequestError) and not isinstance(exc, RequestFailed))):
        return False
    return isinstance(exc.exc, httpx.TransportError | httpx.TimeoutException)


def _from_response(exc: RequestFailed) -> GitHubError:
    """The error for an answer GitHub gave with a failing status."""
    status = exc.response.status_code
    url = shown_url(exc.request.url)
    try:
        body = exc.response.json()
        message = str(body.get("message", ""))
        codes = {e.get("code") for e in body.get("errors") or () if isinstance(e, dict)}
    except (ValueError, AttributeError, TypeError):
        message, codes = "", set()
    path = exc.request.url.path
    if "/app/installations/" in path and path.endswith("/access_tokens"):
        if status == 404:
            return InstallationNotFound(
                f"Installation not found ({url}): check that the GitHub App is installed on the repository's "
                "account and that GONOGO_APP_ID belongs to that app.", status, url,
            )  # fmt: skip
        if status == 403 and "suspended" in message.lower():
            return InstallationSuspended(
                f"The installation is suspended ({message}): an owner of the account unsuspends the GitHub App in "
                "its settings (Settings > GitHub Apps > Configure > Unsuspend); the deployments it left waiting are "
                "picked up again by the sweeper once it is.", status, url,
            )  # fmt: skip
        if status == 401 and _clock_refused(message):
            return GitHubAuthError(_CLOCK_ADVICE.format(message=message), status, url)
        if status in (401, 403):
            return GitHubAuthError(
                f"GitHub refused the app's credentials ({status}: {message or 'no message'}): check that "
                "GONOGO_APP_ID is the App ID and GONOGO_PRIVATE_KEY is a current private key of that app.",
                status, url,
            )  # fmt: skip
    if status == 401 and _clock_refused(message):
        return GitHubAuthError(_CLOCK_ADVICE.format(message=message), status, url, message)
    if status == 401:
        return GitHubAuthError(f"GitHub said 401 Unauthorized for {url}: {message}", status, url, message)
    if status in (403, 404) and feature_disabled_message(message):
        return FeatureDisabled(f"GitHub said {status} for {url}: {message}", status, url, message)
    if status == 403 and message.lower().startswith(MISSING_PERMISSION):
        return MissingPermission(f"GitHub said 403 Forbidden for {url}: {message}", status, url, message)
    if status == 403 and "too_large" in codes:
        return TooLarge(f"GitHub said 403 Forbidden for {url}: {message}", status, url, message)
    if status == 403:
        return Forbidden(f"GitHub said 403 Forbidden for {url}: {message}", status, url, message)
    if status == 404:
        return NotFound(f"GitHub said 404 Not Found for {url}: {message}", status, url, message)
    if status == 422:
        return Invalid(f"GitHub refused the request (422) for {url}: {message}", status, url, message)
    if status >= 500:
        return Unavailable(f"GitHub answered {status} for {url} after retries.", status, url, message)
    return GitHubError(f"GitHub answered {status} for {url}: {message}", status, url, message)


# GitHub's answers when a security feature is switched off for a repository (REST docs of each endpoint and
# its "troubleshoot" pages). Only these mean "not configured"; every other 403 or 404 means "could not read".
FEATURE_DISABLED_MESSAGES = (
    "advanced security must be enabled for this repository to use code scanning",
    "code scanning is not enabled for this repository",
    "no analysis found",
    "dependabot alerts are disabled for this repository",
    "dependabot alerts are not available for archived repositories",
    "secret scanning is disabled on this repository",
)
MISSING_PERMISSION = "resource not accessible by integration"


def feature_disabled_message(message: str) -> bool:
    """Tell whether GitHub's error message is one of its documented "feature is off" answers."""
    text = message.strip().lower()
    return any(text.startswith(known) for known in FEATURE_DISABLED_MESSAGES)


def map_error(exc: Exception) -> GitHubError:
    """Translate a githubkit or httpx exception into one of ours."""
    if isinstance(exc, GitHubError):
        return exc
    if isinstance(exc, RequestError) and isinstance(exc.exc, GitHubException):
        return map_error(exc.exc)  # the token request inside the auth flow failed
    if isinstance(exc, AuthCredentialError):
        return GitHubAuthError(f"GitHub app credentials are incomplete: {exc}. Check GONOGO_APP_ID and the private key.")
    if isinstance(exc, RequestFailed) and (wait := getattr(exc, RATE_LIMIT_WAIT, None) or rate_limit_wait(exc)):
        status, url = exc.response.status_code, shown_url(exc.request.url)
        return RateLimited(
            f"GitHub rate limit ({status} for {url}: {_error_message(exc.response.raw_response) or 'no message'}); "
            f"waiting {wait:.0f} s before trying again", wait, status, url,
        )  # fmt: skip
    if isinstance(exc, RequestFailed):
        return _from_response(exc)
    if isinstance(exc, RequestTimeout):
        return Unavailable(f"GitHub did not answer in time ({shown_url(exc.request.url)}).")
    if isinstance(exc, RequestError):
        inner = exc.exc
        if isinstance(inner, ValueError) and "private key" in str(inner).lower() or _is_key_error(inner):
            return GitHubAuthError(
                f"The app's private key cannot be used ({type(inner).__name__}: {inner}): set GONOGO_PRIVATE_KEY "
                "to the PEM private key generated in the GitHub App settings."
            )
        return Unavailable(f"Could not reach GitHub: {type(inner).__name__}: {inner}")
    if _is_key_error(exc):
        return GitHubAuthError(
            f"The app's private key cannot be used ({type(exc).__name__}): set GONOGO_PRIVATE_KEY to the PEM "
            "private key generated in the GitHub App settings."
        )
    if isinstance(exc, httpx.HTTPStatusError):  # its message names the URL, query and all
        status, url = exc.response.status_code, shown_url(exc.request.url)
        return Unavailable(f"{url} answered {status}.", status, url)
    if isinstance(exc, httpx.HTTPError):
        return Unavailable(f"Could not reach GitHub: {type(exc).__name__}: {exc}")
    raise exc


def shown_url(url: httpx.URL | str) -> str:
    """``url`` as errors show it: without its query, where a pre-signed storage URL (an artifact download's
    redirect) carries the signature that grants the blob."""
    base, query, _ = str(url).partition("?")
    return base + ("?\u2026" if query else "")


def _is_key_error(exc: BaseException) -> bool:
    import jwt

    return isinstance(exc, jwt.exceptions.InvalidKeyError | jwt.exceptions.PyJWTError) or (
        isinstance(exc, ValueError) and ("key" in str(exc).lower() or "PEM" in str(exc))
    )


@contextlib.asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn githubkit/httpx failures raised inside the block into our exceptions."""
    try:
        yield
    except GitHubError:
        raise
    except (GitHubException, httpx.HTTPError, ValueError) as exc:
        raise map_error(exc) from exc
    except Exception as exc:
        if _is_key_error(exc):
            raise map_error(exc) from exc
        raise


async def call(awaitable: Awaitable[T]) -> T:
    """Await one githubkit call, translating its errors."""
    async with translate_errors():
        return await awaitable


MAX_CONNECTIONS = 128  # kept-alive connections per event loop
SPARE_CONNECTIONS = 3  # extra connections a pool may open while its kept one is taken


class _Pool:
    """An httpcore pool of one connection, and how many requests it is serving."""

    def __init__(self, tls: ssl.SSLContext, idle: list[_Pool]) -> None:
        # One connection is kept alive (httpcore closes idle ones beyond max_keepalive_connections). A few more
        # may open for a request that finds it still busy: at the cap, or when a response was abandoned
        # without httpcore seeing it closed (a cancelled request) while the slot was handed back.
        limits = httpx.Limits(max_connections=SPARE_CONNECTIONS + 1, max_keepalive_connections=1)
        self.transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits)
        self.busy = 0
        self.idle = idle  # where this pool waits while it serves no request

    def release(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.idle.append(self)


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that hands its connection back once closed."""

    def __init__(self, inner: httpx.AsyncByteStream, pool: _Pool) -> None:
        self.inner = inner
        self.pool: _Pool | None = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self.pool is not None:
                self.pool.release()
                self.pool = None


class SharedTransport(httpx.AsyncBaseTransport):
    """Keep-alive connections per event loop for every githubkit request of a process.

    githubkit opens a fresh httpx client per call (outside ``async with``); given its own transport,
    each client would build an SSL context and a new connection every time. This transport is handed
    to all of them, keeps connections alive between calls, and ignores the per-call ``aclose``; the
    owner closes it once with ``close``. Connections belong to the loop that opened them, so a
    process that runs several loops (tests, CLI commands) gets connections for each.

    Each connection is an httpcore pool of its own. httpcore scans every connection of a pool, with a
    system call for each idle one, whenever a request starts or ends, so in one shared pool the CPU
    cost per request grows with the number of connections (and with the square of the requests in
    flight); a pool of one costs the same however busy the process is. A request takes the most
    recently freed connection to its origin, or a new one while fewer than ``MAX_CONNECTIONS`` are
    open; past that it queues on the least busy.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.given = inner
        self.pools: dict[int, list[_Pool]] = {}  # every pool of an event loop
        self.idle: dict[tuple[int, bytes, bytes, int | None], list[_Pool]] = {}  # free ones per loop and origin
        self._tls: ssl.SSLContext | None = None

    def _pool(self, url: httpx.URL) -> _Pool:
        loop = id(asyncio.get_running_loop())
        key = (loop, url.raw_scheme, url.raw_host, url.port)
        idle = self.idle.get(key)
        if idle is None:
            idle = self.idle[key] = []
        if idle:
            return idle.pop()
        pools = self.pools.setdefault(loop, [])
        if len(pools) < MAX_CONNECTIONS:
            if self._tls is None:
                # httpx's default TLS settings, built once: each context loads the CA bundle (~15 ms of CPU)
                self._tls = httpx.create_ssl_context(verify=True, trust_env=True)
            pools.append(_Pool(self._tls, idle))
            return pools[-1]
        pool = min(pools, key=lambda p: p.busy)  # all busy here: queue where the fewest wait
        if pool.busy == 0:  # free, but kept for another origin
            pool.idle.remove(pool)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # githubkit names the version on REST calls but not on the installation-token request of its auth flow
        request.headers.setdefault("X-GitHub-Api-Version", API_VERSION)
        if self.given is not None:
            return await self.given.handle_async_request(request)
        pool = self._pool(request.url)
        pool.busy += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, pool)
        return response

    async def aclose(self) -> None:
        """Called by every short-lived client; the pools outlive them."""

    async def close(self) -> None:
        """Close this loop's pools (and a given transport); pools of finished loops are dropped."""
        pools = self.pools.pop(id(asyncio.get_running_loop()), [])
        self.pools.clear()
        self.idle.clear()
        if self.given is not None:
            await self.given.aclose()
        for pool in pools:
            await pool.transport.aclose()


@dataclass
class _TokenFlights:
    """What the calls of one GitHubClients share about installation tokens, per (event loop, installation):
    a lock, how many token requests have finished, and the last one's failure with its number."""

    locks: dict[tuple[int, int], asyncio.Lock] = field(default_factory=dict)
    finished: dict[tuple[int, int], int] = field(default_factory=dict)
    failures: dict[tuple[int, int], tuple[int, Exception]] = field(default_factory=dict)


@dataclass
class _SingleFlightAppAuth(AppAuth):
    """githubkit's app/installation auth flow, fetching each installation token once however many calls wait.

    githubkit looks the token up in the cache and, on a miss, fetches it inside the request's auth flow:
    twenty concurrent calls on a cold cache would each ask GitHub for a token. Here the cache look-up and
    any token request happen under one lock per installation (and event loop), so the first call fetches
    and the others find the token cached. The lock is held only until the call's own request is ready.

    A call GitHub answers 401 with an installation token is sent once more with a new token: GitHub stops
    taking a token when it expires, which a clock running slow puts before the cache lets it go, when it is
    revoked, and for a moment after it is issued (replication lag). Without this, every call would fail with
    the refused token until the cache dropped it, and a 401 reads as bad credentials: the job is given up.
    """

    flights: _TokenFlights = field(default_factory=_TokenFlights)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        installation = self.installation_id if isinstance(self.installation_id, int) else 0
        key = (id(asyncio.get_running_loop()), installation)
        flights = self.flights
        lock = flights.locks.get(key)
        if lock is None:
            lock = flights.locks[key] = asyncio.Lock()
        refused = ""  # the installation token GitHub refused on the first try, if it did
        for _ in range(2):
            flow = super().async_auth_flow(request)
            seen = flights.finished.get(key, 0)
            try:
                async with lock:
                    if refused:
                        await self._forget_token(refused)
                    failed = flights.failures.get(key)
                    if failed is not None and failed[0] > seen:
                        # a token request that finished while this call waited failed: share its answer (an unknown
                        # installation costs GitHub one request, not one per waiting call); later calls try again
                        raise failed[1]
                    outgoing = await flow.__anext__()
                    while outgoing is not request:  # the token request: its response goes back to the flow
                        token_response = yield outgoing
                        number = flights.finished[key] = flights.finished.get(key, 0) + 1
                        try:
                            outgoing = await flow.asend(token_response)
                        except Exception as exc:
                            flights.failures[key] = (number, exc)
                            raise
                        flights.failures.pop(key, None)
                response = yield outgoing
                with contextlib.suppress(StopAsyncIteration):
                    await flow.asend(response)
            finally:
                await flow.aclose()
            used = outgoing.headers.get("authorization", "")
            if refused or response.status_code != 401 or not used.startswith("token "):
                return
            refused = used.removeprefix("token ")
            log.info("github.token_refused", extra={"installation_id": installation, "path": request.url.path})

    async def _forget_token(self, token: str) -> None:
        """Drop ``token`` from the cache, unless another call already put a new one there."""
        cache = await self.github.config.cache_strategy.get_async_cache_storage()
        cache_key = self._get_installation_cache_key()
        if await cache.aget(cache_key) == token:
            await cache.aset(cache_key, "", timedelta(0))  # expired at once: the next look-up fetches a new token


@dataclass
class _SingleFlightInstallationAuthStrategy(AppInstallationAuthStrategy):
    flights: _TokenFlights = field(default_factory=_TokenFlights)

    def get_auth_flow(self, github: GitHubCore[Any]) -> httpx.Auth:
        return _SingleFlightAppAuth(
            github, self.app_id, self.private_key, self.client_id, self.client_secret, self.installation_id,
            self.repositories, self.repository_ids, self.permissions, flights=self.flights,
        )  # fmt: skip


class GitHubClients:
    """Creates githubkit clients for the app and its installations.

    Installation tokens are cached until shortly before expiry and fetched once per installation, however
    many calls need one at the same moment.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.app_id or settings.private_key is None:
            raise GitHubAuthError("GONOGO_APP_ID and GONOGO_PRIVATE_KEY are needed to talk to GitHub.")
        check_api_version()
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.github_retries)
        self.timeout = settings.github_timeout_seconds if timeout is None else timeout
        self.transport = SharedTransport(async_transport)
        # per-process token cache: githubkit's default is shared module-wide, which would mix sandboxes in tests
        self._cache = MemCacheStrategy()
        self._installations: dict[int, GitHub[AppInstallationAuthStrategy]] = {}
        self._app: GitHub[AppAuthStrategy] | None = None
        self._token_flights = _TokenFlights()
        self._own_app_id: int | None = None
        self.calls = 0

    def _options(self) -> dict[str, Any]:
        return {
            "base_url": self.settings.github_api_url + "/",
            "user_agent": "gonogo",
            "timeout": self.timeout,
            "auto_retry": self.retry,
            "http_cache": False,
            "cache_strategy": self._cache,
            "async_transport": self.transport,
        }

    def app(self) -> GitHub[AppAuthStrategy]:
        """A client authenticated as the app itself (JWT)."""
        if self._app is None:
            assert self.settings.app_id and self.settings.private_key
            self._app = GitHub(
                AppAuthStrategy(self.settings.app_id, self.settings.private_key.reveal()), **self._options()
            )
        return self._app

    async def own_app_id(self) -> int:
        """The app's numeric id, by which its own check runs are told from a CI job of the same name.

        GONOGO_APP_ID is that id, or the app's client ID (GitHub takes either as a JWT's issuer); for a client
        ID GitHub is asked once (``GET /app``) and the answer kept for the life of the process.
        """
        if self._own_app_id is None:
            given = (self.settings.app_id or "").strip()
            self._own_app_id = int(given) if given.isdigit() else parsed(await call(
                self.app().rest.apps.async_get_authenticated())).id  # fmt: skip
        return self._own_app_id

    def installation(self, installation_id: int) -> GitHub[AppInstallationAuthStrategy]:
        """A client acting as ``installation_id``; its token is fetched lazily and cached."""
        client = self._installations.get(installation_id)
        if client is None:
            assert self.settings.app_id and self.settings.private_key
            strategy = _SingleFlightInstallationAuthStrategy(
                self.settings.app_id, self.settings.private_key.reveal(), installation_id, flights=self._token_flights
            )
            client = GitHub(strategy, **self._options())
            self._installations[installation_id] = client
        return client

    async def aclose(self) -> None:
        self._installations.clear()
        self._app = None
        await self.transport.close()


def check_api_version() -> None:
    """Refuse to run with a githubkit whose REST models (and version header) are not ``API_VERSION``."""
    from githubkit.versions import LATEST_VERSION

    if LATEST_VERSION != API_VERSION:
        raise RuntimeError(
            f"githubkit models GitHub REST API version {LATEST_VERSION}, but gonogo is tested against {API_VERSION}: "
            "install the githubkit and githubkit-schemas versions pinned in pyproject.toml (pip install -e .)."
        )


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def parsed(response: Response[Any]) -> Any:
    """The response body as githubkit's model for it, like ``response.parsed_data``.

    githubkit builds a fresh pydantic ``TypeAdapter`` for every response it parses; for a list or a
    union of models that means generating and compiling a validator schema each time (about 0.1 ms
    of CPU, more under load). Here each response model gets one adapter per process.
    """
    model = getattr(response, "_data_model", None)
    if model is None:  # not a githubkit response as we know it: let it parse itself
        return response.parsed_data
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter.validate_json(response.content)


def _parsed_list(response: Response[Any]) -> list[Any]:
    data = parsed(response)
    if not isinstance(data, list):  # a body of the wrong shape is unreadable, like one that does not parse
        url = shown_url(response.raw_request.url)
        raise UnexpectedAnswer(f"GitHub's answer is not a list (got {type(data).__name__}) for {url}",
                               response.status_code, url)
    return data


async def paginate(
    gh: GitHub[Any], request: Callable[..., Awaitable[Any]], map_func: Callable[[Any], list[T]] | None = None,
    *, limit: int = 10_000, stop: Callable[[T], bool] | None = None, **kwargs: Any,
) -> list[T]:
    """Collect up to ``limit`` items of a paginated REST listing.

    ``map_func`` picks the items out of one page's response (use ``parsed(response)`` for its body);
    by default the page's body is the list of items. ``stop`` ends the listing before the first item it
    holds for, without asking for further pages (for a listing sorted so that every later item holds too).
    """
    items: list[T] = []
    async with translate_errors():
        pages = gh.rest.paginate(request, map_func=map_func or _parsed_list, per_page=100, **kwargs)
        async for item in pages:
            if stop is not None and stop(item):
                break
            items.append(item)
            if len(items) >= limit:
                break
    return items


async def paginate_capped(
    gh: GitHub[Any], request: Callable[..., Awaitable[Any]], cap: int, map_func: Callable[[Any], list[T]] | None = None,
    *, stop: Callable[[T], bool] | None = None, **kwargs: Any,
) -> tuple[list[T], bool]:
    """Collect up to ``cap`` items of a paginated REST listing, and whether the listing held more.

    One item past the cap is asked for: without it, a listing of exactly ``cap`` items could not be told
    from one that was cut. ``map_func``, ``stop`` and ``kwargs`` are as for ``paginate``.
    """
    items: list[T] = await paginate(gh, request, map_func, limit=cap + 1, stop=stop, **kwargs)
    return items[:cap], len(items) > cap


def parse_time(value: str | datetime | None) -> datetime | None:
    """A GitHub timestamp (ISO 8601, "Z" or offset, or naive meaning UTC) as an aware UTC datetime."""
    if not value:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
