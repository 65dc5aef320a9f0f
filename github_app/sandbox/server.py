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


@contextlib.contextmanager
def running_sandbox(state: SandboxState, *, host: str = "127.0.0.1", port: int = 0,
                    log_level: str = "warning") -> Iterator[RunningSandbox]:
    """Serve the sandbox in a background thread on a free loopback port; stop it on exit."""
    sock = _bind(host, port)
    server = _server(state, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gonogo-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("The GitHub sandbox did not start within 10 s; see the uvicorn log above")
        time.sleep(0.01)
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.api_url = url
    log.info("sandbox.started", extra={"url": url})
    try:
        yield RunningSandbox(state=state, url=url, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.asynccontextmanager
async def async_running_sandbox(state: SandboxState, *, host: str = "127.0.0.1", port: int = 0,
                                log_level: str = "warning") -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox as a task of the running event loop; stop it on exit."""
    sock = _bind(host, port)
    server = _server(state, log_level)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            await task  # re-raise the start-up error
            raise RuntimeError("The GitHub sandbox stopped during start-up")
        await asyncio.sleep(0.01)
    url = f"http://{host}:{sock.getsockname()[1]}"
    state.api_url = url
    try:
        yield RunningSandbox(state=state, url=url, server=server)
    finally:
        server.should_exit = True
        await task
        sock.close()
