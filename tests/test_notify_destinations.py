"""A notification goes to the address gonogo checked, not to whatever the name resolves to a moment later.

The policy names the URL, so its owner also owns the name's DNS: answering a public address to the check
and a loopback or metadata address to the connection (DNS rebinding) would carry a notification, and its
signature, into the gonogo server's own network. The resolver is faked at its edge, the event loop's
``getaddrinfo``, which both gonogo's check and the HTTP client's connection use.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from github_app import db, notify
from github_app.db.models import OutboxMessage
from github_app.serving import ServerThread
from tests.test_notify import Receiver

PUBLIC = "8.8.8.8"  # what the name says first: a public address, so the check lets it through
HOST = "hooks.rebind.test"


def _name(host: Any) -> str:
    return host.decode() if isinstance(host, bytes) else str(host)  # the HTTP client asks with IDNA bytes


class RebindingLoop(asyncio.SelectorEventLoop):
    """An event loop whose resolver answers ``answers`` in turn for HOST (the last one from then on), and whose
    connections to PUBLIC are refused, so nothing leaves this machine."""

    answers: ClassVar[list[str]] = []
    lookups: ClassVar[list[str]] = []
    connected: ClassVar[list[str]] = []

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if _name(host) == HOST:
            address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            self.lookups.append(address)
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]
        return await super().getaddrinfo(host, port, *args, **kwargs)

    async def create_connection(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None,
                                *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # fmt: skip
        self.connected.append(str(host))
        if host == PUBLIC:
            raise ConnectionRefusedError(f"{PUBLIC} is not reachable from the tests")
        return await super().create_connection(protocol_factory, host, port, *args, **kwargs)


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _step(engine: Engine, answers: list[str]) -> None:
    RebindingLoop.answers, RebindingLoop.lookups, RebindingLoop.connected = list(answers), [], []
    dispatcher = notify.OutboxDispatcher(engine, environ={}, timeout=2.0, lease_seconds=30.0)
    with asyncio.Runner(loop_factory=RebindingLoop) as runner:
        runner.run(dispatcher.step())


def _row(engine: Engine) -> OutboxMessage:
    with Session(engine) as session:
        return session.scalars(select(OutboxMessage)).one()


@pytest.mark.parametrize("second", ["127.0.0.1", "169.254.169.254"])
def test_a_name_that_answers_a_public_address_and_then_a_private_one_is_never_posted_to(
    engine: Engine, second: str
) -> None:  # fmt: skip
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        port = srv.url.rsplit(":", 1)[1]
        with engine.begin() as conn:
            notify.enqueue(conn, key="rebind", channel="webhook", url=f"http://{HOST}:{port}/hook",
                           body={"event": "approved"})  # fmt: skip
        _step(engine, [PUBLIC, second])
    assert sum(receiver.attempts.values()) == 0  # nothing reached the server's own network
    assert RebindingLoop.connected == [PUBLIC]  # the connection went to the address that was checked
    assert _row(engine).state == "pending"  # unreachable for now: retried later, still checked each time


def test_a_name_that_does_not_resolve_for_the_check_is_not_sent(engine: Engine) -> None:
    """A name the check cannot resolve is not handed to the HTTP client, whose own lookup could answer loopback."""

    class Unresolved(RebindingLoop):
        calls = 0

        async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if _name(host) == HOST and Unresolved.calls == 0:
                Unresolved.calls += 1
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return await super().getaddrinfo(host, port, *args, **kwargs)

    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        port = srv.url.rsplit(":", 1)[1]
        with engine.begin() as conn:
            notify.enqueue(conn, key="vanishing", channel="webhook", url=f"http://{HOST}:{port}/hook",
                           body={"event": "approved"})  # fmt: skip
        RebindingLoop.answers, RebindingLoop.lookups, RebindingLoop.connected = ["127.0.0.1"], [], []
        dispatcher = notify.OutboxDispatcher(engine, environ={}, timeout=2.0, lease_seconds=30.0)
        with asyncio.Runner(loop_factory=Unresolved) as runner:
            runner.run(dispatcher.step())
    assert sum(receiver.attempts.values()) == 0
    row = _row(engine)
    assert row.state == "pending" and "does not resolve" in (row.last_error or "")


def test_each_attempt_of_a_deployment_with_long_names_is_announced_and_audited_as_its_own(engine: Engine) -> None:
    """GitHub allows owner/name up to 140 characters and environments up to 255: the deployment key
    (repository/run/environment/attempt) then runs past the outbox key's room, and a re-run's attempt must
    still get its own message, not be taken for the first attempt's and dropped."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from github_app import audit
    from github_app.db.models import AuditEntry, Deployment
    from tests.test_notify import LINKS, SUMMARY, _channels

    repository = f"{'o' * 39}/{'n' * 100}"
    environment = "production-" + "e" * 244
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        channels = _channels(srv.url)[:1]
        keys = [f"{repository}/123456789012/{environment}/{attempt}" for attempt in (1, 2)]
        with engine.begin() as conn:
            conn.execute(insert(Deployment), [
                {"key": key, "repository": repository, "environment": environment, "sha": "a" * 40,
                 "run_id": 123456789012, "created_at": datetime.now(UTC), "state": "escalated"} for key in keys])  # fmt: skip
            new = [notify.enqueue_event(conn, deployment_key=key, event="escalated", decision_summary=SUMMARY,
                                        links=LINKS, channels=channels) for key in keys]  # fmt: skip
        assert new == [1, 1]
        sent = asyncio.run(notify.OutboxDispatcher(
            engine, environ={notify.NETWORKS_VARIABLE: "127.0.0.0/8"}, timeout=2.0, lease_seconds=30.0,
            retry_base_seconds=0.01, retry_max_seconds=0.05, poll_seconds=0.05).run_until_idle(timeout=20))  # fmt: skip
    assert sent == 2
    with Session(engine) as session:
        audited = session.scalars(select(AuditEntry.deployment_key).where(AuditEntry.kind == "notification")).all()
    assert sorted(audited) == keys  # each outcome is filed under its own deployment
    assert audit.verify(engine).ok


def test_a_decision_needed_notification_links_to_where_the_decision_is_made(database_url: str) -> None:
    """docs/notifications.md: link buttons to the check run, the workflow run and the pull request."""
    from tests.scenarios import LABEL, REPO, release_state
    from tests.world import running_world

    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as hooks:
        policy = f"""
environments:
  production:
    reviewers:
      teams: [acme/sre]
    notifications:
      - {{type: slack, url: "{hooks.url}/slack"}}
"""
        state = release_state(checks_running=True, policy=policy, team_members=("rita",))
        with running_world(database_url, state, notification_networks="127.0.0.0/8") as world:
            world.escalate(LABEL)
            delivered = world.wait(lambda: [m for ms in receiver.delivered.values() for m in ms], what="a notification")
            _, dep = world.state.deployment(LABEL)
            run = world.check_run(LABEL)
    (message,) = delivered
    buttons = {b["text"]["text"]: b["url"] for block in message["body"]["blocks"] if block["type"] == "actions"
               for b in block["elements"]}  # fmt: skip
    web = world.api_url  # the sandbox serves GitHub's API at its root, as GitHub Enterprise Server does at /api/v3
    assert buttons == {
        "Check run": f"{web}/{REPO}/runs/{run.id}",
        "Workflow run": f"{web}/{REPO}/actions/runs/{dep.run_id}",
        "Pull request": f"{web}/{REPO}/pull/7",
    }


def test_the_web_address_of_each_kind_of_github() -> None:
    from github_app.features.announcements import web_base

    assert web_base("https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule") == "https://github.com"
    assert web_base("https://api.octocorp.ghe.com/repos/o/r") == "https://octocorp.ghe.com"
    assert web_base("https://ghes.example.com/api/v3/repos/o/r") == "https://ghes.example.com"


def _tls_receiver(tmp_path: Any, name: str) -> tuple[Any, Any, list[bytes]]:
    """A one-request-per-connection HTTPS receiver on 127.0.0.1 with a certificate for ``name`` from a test CA;
    returns its socket, a client SSL context trusting the CA, and the request heads it received."""
    import datetime as dt
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def issue(cn: str, signer: Any = None, issuer: Any = None, san: str | None = None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=san is None, path_length=None), critical=True))  # fmt: skip
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return key, builder.sign(signer or key, hashes.SHA256())

    ca_key, ca = issue("gonogo test CA")
    leaf_key, leaf = issue(name, ca_key, ca.subject, san=name)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                buffer = b""
                while True:  # requests one after another on the connection (keep-alive, as real receivers do)
                    while b"\r\n\r\n" not in buffer:
                        chunk = tls.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                    while len(buffer) < length:
                        buffer += tls.recv(65536)
                    buffer = buffer[length:]
                    heads.append(head)
                    close = b"connection: close" in head.lower()
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                                + (b"connection: close\r\n" if close else b"") + b"\r\nok")  # fmt: skip
                    if close:
                        return
        except (OSError, ssl.SSLError):
            conn.close()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, client_ctx, heads


def test_https_to_the_checked_address_still_verifies_the_certificate_for_the_name(engine: Engine, tmp_path: Any) -> None:
    """Pinning the address must not weaken TLS: the certificate is checked against the URL's host name."""
    import httpx

    listener, client_ctx, heads = _tls_receiver(tmp_path, HOST)
    port = listener.getsockname()[1]
    try:
        with engine.begin() as conn:
            for key, name in (("right", HOST), ("wrong", "other.rebind.test")):
                notify.enqueue(conn, key=key, channel="slack", url=f"https://{name}:{port}/services/T/B/x",
                               body={"text": key})  # fmt: skip
        RebindingLoop.answers, RebindingLoop.lookups, RebindingLoop.connected = ["127.0.0.1"], [], []

        class BothNames(RebindingLoop):
            async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                return await super().getaddrinfo(HOST if _name(host) == "other.rebind.test" else host, port, *args,
                                                 **kwargs)  # fmt: skip

        dispatcher = notify.OutboxDispatcher(engine, lambda: httpx.AsyncClient(verify=client_ctx),
                                             environ={notify.NETWORKS_VARIABLE: "127.0.0.0/8"}, timeout=2.0,
                                             lease_seconds=30.0)  # fmt: skip
        with asyncio.Runner(loop_factory=BothNames) as runner:
            runner.run(dispatcher.step())
    finally:
        listener.close()
    with Session(engine) as session:
        states = {m.key: (m.state, m.last_error) for m in session.scalars(select(OutboxMessage))}
    assert states["right"] == ("sent", None)
    assert states["wrong"][0] == "pending" and "ConnectError" in (states["wrong"][1] or "")  # no certificate for it
    assert [h.split(b"\r\n")[1] for h in heads] == [f"Host: {HOST}:{port}".encode()], heads


def test_behind_an_egress_proxy_the_proxy_gets_the_name(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP(S)_PROXY set, the proxy resolves and allow-lists by name (and the server may have no DNS for
    the outside at all): gonogo hands it the URL as written, not an address of its own lookup."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    lines: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            lines.append(conn.recv(65536).split(b"\r\n")[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with engine.begin() as conn:
        notify.enqueue(conn, key="proxied", channel="slack", url="http://hooks.outside.test/services/T/B/x",
                       body={"text": "hi"})  # fmt: skip
    try:
        # the name does not resolve here: only the proxy can reach it
        asyncio.run(notify.OutboxDispatcher(engine, environ={}, timeout=2.0, lease_seconds=30.0).step())
    finally:
        listener.close()
    assert lines == [b"POST http://hooks.outside.test/services/T/B/x HTTP/1.1"]
    assert _row(engine).state == "sent"


def test_a_connection_verified_for_one_name_is_not_reused_for_another_at_the_same_address(
    engine: Engine, tmp_path: Any
) -> None:  # fmt: skip
    """Two receivers behind one address (a shared load balancer): requests go to the address, so the HTTP
    client's pool would hand the second name the first name's TLS connection, its certificate never checked."""
    from datetime import UTC, datetime, timedelta

    import httpx

    listener, client_ctx, heads = _tls_receiver(tmp_path, HOST)
    port = listener.getsockname()[1]
    other = "other.rebind.test"

    class BothNames(RebindingLoop):
        async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return await super().getaddrinfo(HOST if _name(host) == other else host, port, *args, **kwargs)

    try:
        with engine.begin() as conn:
            notify.enqueue(conn, key="first", channel="slack", url=f"https://{HOST}:{port}/a", body={"text": "1"})
            notify.enqueue(conn, key="second", channel="slack", url=f"https://{other}:{port}/b", body={"text": "2"},
                           now=datetime.now(UTC) + timedelta(seconds=0.5))  # after the first, on the same client
        RebindingLoop.answers, RebindingLoop.lookups, RebindingLoop.connected = ["127.0.0.1"], [], []
        dispatcher = notify.OutboxDispatcher(engine, lambda: httpx.AsyncClient(verify=client_ctx),
                                             environ={notify.NETWORKS_VARIABLE: "127.0.0.0/8"}, timeout=2.0,
                                             lease_seconds=30.0, max_attempts=1, poll_seconds=0.05)  # fmt: skip
        with asyncio.Runner(loop_factory=BothNames) as runner:
            runner.run(dispatcher.run_until_idle(timeout=10))
    finally:
        listener.close()
    with Session(engine) as session:
        states = {m.key: m.state for m in session.scalars(select(OutboxMessage))}
    assert states == {"first": "sent", "second": "dead"}  # no certificate names other.rebind.test
    assert all(other.encode() not in h for h in heads), heads
    assert len(heads) == 1, heads


def test_a_receiver_with_an_unreachable_first_address_is_reached_at_its_next(engine: Engine) -> None:
    """A dual-stack name on a server without IPv6: the client tried each address before the pinning, and the
    pinned request must too, or such a receiver never gets a message."""
    v6 = "2606:4700:4700::1111"

    class DualStack(RebindingLoop):
        async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if _name(host) == HOST:
                return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (v6, int(port), 0, 0)),
                        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", int(port)))]  # fmt: skip
            return await super().getaddrinfo(host, port, *args, **kwargs)

        async def create_connection(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None,
                                    *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # fmt: skip
            if host == v6:
                self.connected.append(str(host))
                raise OSError(101, "Network is unreachable")
            return await super().create_connection(protocol_factory, host, port, *args, **kwargs)

    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        port = srv.url.rsplit(":", 1)[1]
        with engine.begin() as conn:
            notify.enqueue(conn, key="dual", channel="webhook", url=f"http://{HOST}:{port}/hook",
                           body={"event": "approved"})  # fmt: skip
        RebindingLoop.answers, RebindingLoop.lookups, RebindingLoop.connected = ["127.0.0.1"], [], []
        dispatcher = notify.OutboxDispatcher(engine, environ={notify.NETWORKS_VARIABLE: "127.0.0.0/8"}, timeout=2.0,
                                             lease_seconds=30.0)  # fmt: skip
        with asyncio.Runner(loop_factory=DualStack) as runner:
            runner.run(dispatcher.step())
    assert RebindingLoop.connected == [v6, "127.0.0.1"]
    assert sum(receiver.attempts.values()) == 1 and _row(engine).state == "sent"


def test_a_pinned_request_names_its_host_as_the_client_would() -> None:
    """An internationalised name goes out IDNA-encoded in the Host header and as the TLS server name."""
    target, headers, extensions = notify.pinned_request("https://u:p@hooks.bücher.example:8443/s/T?x=1", "2001:db8::5")
    assert target == "https://u:p@[2001:db8::5]:8443/s/T?x=1"
    assert headers == {"Host": "hooks.xn--bcher-kva.example:8443", "Connection": "close"}
    assert extensions == {"sni_hostname": "hooks.xn--bcher-kva.example"}
    assert notify.pinned_request("http://hooks.example/x", "203.0.113.9") == (
        "http://203.0.113.9/x", {"Host": "hooks.example", "Connection": "close"}, {})  # fmt: skip
