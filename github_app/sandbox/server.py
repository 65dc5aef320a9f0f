"""Run the sandbox over real HTTP on a loopback port, in a background thread or in the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn

from github_app.sandbox.app import create_sandbox_app
from github_app.sandbox.faults import DROP_SENTINEL
from github_app.sandbox.state import SandboxState
from github_app.sandbox.storage import STORAGE_HOST, StorageApp

log = logging.getLogger(__name__)


class _HideDropNoise(logging.Filter):
    """Keep uvicorn from reporting the sandbox's deliberate dropped connections as errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return DROP_SENTINEL not in str(record.args or "")


def quiet_uvicorn() -> None:
    """Install the filter that hides deliberate connection drops from uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDropNoise) for f in logger.filters):
        logger.addFilter(_HideDropNoise())


@dataclass
class RunningSandbox:
    """A sandbox being served: its state and its base URL (use it as githubkit's base_url)."""

    state: SandboxState
    url: str
    server: uvicorn.Server
    storage: uvicorn.Server | None = None  # the blob storage host artifact downloads redirect to

    @property
    def port(self) -> int:
        """Return the TCP port."""
        return int(self.url.rsplit(":", 1)[1])


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(state: SandboxState, log_level: str) -> uvicorn.Server:
    quiet_uvicorn()
    config = uvicorn.Config(create_sandbox_app(state), log_level=log_level, access_log=False, lifespan="off",
                            proxy_headers=False, ws="none", timeout_keep_alive=30)
    return uvicorn.Server(config)


def _storage_server(state: SandboxState, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(StorageApp(state), log_level=log_level, access_log=False, lifespan="off",
                            proxy_headers=False, ws="none")
    return uvicorn.Server(config)


def _storage_socket(host: str) -> socket.socket | None:
    """A socket for the storage host: another loopback address when the API is on loopback."""
    if not host.startswith("127."):
        return None  # served elsewhere: downloads stay on the API host
    try:
        return _bind(STORAGE_HOST, 0)
    except OSError:  # no 127.0.0.2 on this system
        return None


@contextlib.contextmanager
def running_sandbox(state: SandboxState, *, host: str = "127.0.0.1", port: int = 0,
                    log_level: str = "warning") -> Iterator[RunningSandbox]:
    """Serve the sandbox (and its blob storage host) in background threads on free loopback ports; stop on exit."""
    sock = _bind(host, port)
    server = _server(state, log_level)
    servers = [(server, sock, "gonogo-sandbox")]
    storage_sock = _storage_socket(host)
    storage = _storage_server(state, log_level) if storage_sock else None
    if storage is not None and storage_sock is not None:
        servers.append((storage, storage_sock, "gonogo-sandbox-storage"))
    threads = []
    for srv, srv_sock, name in servers:
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [srv_sock]}, name=name, daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + 10
    while not all(srv.started for srv, _, _ in servers):
        if not all(t.is_alive() for t in threads) or time.monotonic() > deadline:
            for _, srv_sock, _ in servers:
                srv_sock.close()
            raise RuntimeError("The GitHub sandbox did not start within 10 s; see the uvicorn log above")
        time.sleep(0.01)
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.api_url = url
    if storage_sock is not None:
        state.storage_url = f"http://{STORAGE_HOST}:{storage_sock.getsockname()[1]}"
    log.info("sandbox.started", extra={"url": url, "storage_url": state.storage_url})
    try:
        yield RunningSandbox(state=state, url=url, server=server, storage=storage)
    finally:
        for srv, _, _ in servers:
            srv.should_exit = True
        for thread in threads:
            thread.join(timeout=10)
        for _, srv_sock, _ in servers:
            srv_sock.close()
        state.storage_url = None


@contextlib.asynccontextmanager
async def async_running_sandbox(state: SandboxState, *, host: str = "127.0.0.1", port: int = 0,
                                log_level: str = "warning") -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox (and its blob storage host) as tasks of the running event loop; stop them on exit."""
    sock = _bind(host, port)
    server = _server(state, log_level)
    servers = [(server, sock)]
    storage_sock = _storage_socket(host)
    storage = _storage_server(state, log_level) if storage_sock else None
    if storage is not None and storage_sock is not None:
        servers.append((storage, storage_sock))
    tasks = [asyncio.create_task(srv.serve(sockets=[srv_sock])) for srv, srv_sock in servers]
    while not all(srv.started for srv, _ in servers):
        failed = next((task for task in tasks if task.done()), None)
        if failed is not None:
            for _, srv_sock in servers:
                srv_sock.close()
            await failed  # re-raise the start-up error
            raise RuntimeError("The GitHub sandbox stopped during start-up")
        await asyncio.sleep(0.01)
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.api_url = url
    if storage_sock is not None:
        state.storage_url = f"http://{STORAGE_HOST}:{storage_sock.getsockname()[1]}"
    try:
        yield RunningSandbox(state=state, url=url, server=server, storage=storage)
    finally:
        for srv, _ in servers:
            srv.should_exit = True
        for task in tasks:
            await task
        for _, srv_sock in servers:
            srv_sock.close()
        state.storage_url = None
