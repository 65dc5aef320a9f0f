"""The blob storage an artifact download redirects to: another host, reached by a pre-signed URL.

GitHub answers an artifact download with a 302 to a short-lived URL on its storage service. That URL
carries its own signature; a client that sends the GitHub token along leaks it to another host, and the
storage refuses the request. This app plays that host on its own loopback address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from github_app.sandbox.faults import Receive, Scope, Send, _fault_response, read_body
from github_app.sandbox.state import Call, SandboxState

STORAGE_HOST = "127.0.0.2"  # another host than the API's 127.0.0.1, as GitHub's storage is another origin
BLOB_PREFIX = "/blobs/"
_AUTH_REFUSED = (b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>InvalidAuthenticationInfo</Code>"
                 b"<Message>Authentication information is not given in the correct format. Check the value of "
                 b"Authorization header.</Message></Error>")  # fmt: skip
_NOT_FOUND = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code></Error>"
_SIGNATURE_REFUSED = (b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>"
                      b"<Message>Server failed to authenticate the request. Make sure the value of Authorization "
                      b"header is formed correctly including the signature.</Message></Error>")  # fmt: skip
URL_LIFETIME = 60  # seconds: GitHub's download URL "expires after 1 minute"


def _signature(state: SandboxState, path: str, expiry: str) -> str:
    key = (state.app.private_key_pem if state.app and state.app.private_key_pem else "sandbox").encode()
    digest = hmac.new(key, f"{path}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_query(state: SandboxState, path: str) -> str:
    """The query of a pre-signed URL for ``path``, valid for a minute: its expiry and signature (as Azure's SAS)."""
    expiry = datetime.fromtimestamp(state.now() + URL_LIFETIME, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return urlencode({"sv": "2024-08-04", "sr": "b", "sp": "r", "se": expiry, "sig": _signature(state, path, expiry)})


def signature_valid(state: SandboxState, path: str, params: Mapping[str, str]) -> bool:
    """Whether the query ``params`` sign ``path`` and have not expired."""
    expiry, sig = params.get("se", ""), params.get("sig", "")
    try:
        until = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return False
    return until > state.now() and hmac.compare_digest(sig, _signature(state, path, expiry))


class StorageApp:
    """Serve artifact blobs by their pre-signed key; refuse (and record) any request that carries a token."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        started, at, path = time.perf_counter(), self.state.now(), scope["path"]
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        fault = next((f for f in self.state.take_faults(scope["method"], "/_storage" + path) if f.kind != "latency"),
                     None)  # fmt: skip
        if fault is not None:  # the storage host failing (a test arms it like any sandbox fault)
            status, headers, body = _fault_response(fault, self.state.now())
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            status, body, headers = self._answer(path, authorization is not None, query)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.state.record(Call(method=scope["method"], path="/_storage" + path, query={}, status=status, body=None,
                               at=at, duration=time.perf_counter() - started, fault=None, installation_id=None,
                               response_headers={"authorization-sent": "yes" if authorization else "no"}))

    def _answer(self, path: str, with_token: bool, query: Mapping[str, str]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        xml = [(b"content-type", b"application/xml")]
        if with_token:
            # a pre-signed URL must come alone: a token here has leaked from the API host
            with self.state.lock:
                self.state.leaked_tokens += 1
            return 403, _AUTH_REFUSED, xml
        if not signature_valid(self.state, path, query):
            return 403, _SIGNATURE_REFUSED, xml
        key = path.removeprefix(BLOB_PREFIX).split("/", 1)[0] if path.startswith(BLOB_PREFIX) else ""
        with self.state.lock:
            for repo in self.state.repos.values():
                for art in repo.artifacts.values():
                    if key and art.blob_key == key:
                        return 200, art.data, [(b"content-type", b"application/zip"),
                                               (b"content-disposition", f'attachment; filename="{art.name}.zip"'.encode())]  # fmt: skip
        return 404, _NOT_FOUND, xml
