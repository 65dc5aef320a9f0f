"""Webhook ingest throughput and latency: gonogo's durable intake vs a bare Starlette route.

Starts each server as its own process (uvicorn, one process, like `gonogo serve`), then drives it
from this process with N concurrent keep-alive connections sending signed ~20 KB deliveries, and
reports acknowledged deliveries per second with p50/p99 latency.

    python benchmarks/ingest.py [--requests 6000] [--concurrency 32] [--postgres URL]

Beside the rates it reports the CPU time each delivery cost in the server, in PostgreSQL's processes
and in this sender, since all three share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

from github_app.webhooks import signature_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hook(request):
    await request.body()
    return JSONResponse({"status": "accepted"}, status_code=202)

app = Starlette(routes=[Route("/webhooks/github", hook, methods=["POST"])])
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CORPUS_PAYLOAD = ROOT.parent / "shared" / "corpus" / "github" / "webhooks" / "workflow_run" / "completed.payload.json"


@functools.cache
def _corpus_payload() -> dict[str, object]:
    return dict(json.loads(CORPUS_PAYLOAD.read_bytes()))


def payload(i: int) -> bytes:
    """A real ~21 KB GitHub payload (workflow_run.completed from the shared corpus), or, without the
    corpus, a synthetic one of the same size. The real one matters: how well a body compresses
    decides what storing it costs."""
    if CORPUS_PAYLOAD.is_file():
        return json.dumps({**_corpus_payload(), "hook_id": i}).encode()
    body = {
        "action": "created",
        "zen": "Approachable is better than simple.",
        "hook_id": i,
        "repository": {"full_name": "octo-org/payments", "id": 1296269},
        "installation": {"id": 42},
        "padding": [{"k": f"value-{j}", "n": j} for j in range(700)],
    }
    return json.dumps(body).encode()


def build_request(i: int, port: int) -> bytes:
    body = payload(i)
    sig = signature_for(SECRET, body)
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: ping\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\nX-Hub-Signature-256: {sig}\r\n"
        f"User-Agent: GitHub-Hookshot/bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection(port: int, requests: list[bytes], latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in requests:
            start = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            code = int(status_line.split()[1])
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        writer.close()


async def drive(reqs: list[bytes], port: int, concurrency: int) -> dict[str, float]:
    total = len(reqs)
    per_conn = [reqs[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    await asyncio.gather(*(connection(port, chunk, latencies, statuses) for chunk in per_conn))
    elapsed = time.perf_counter() - start
    latencies.sort()
    acked = sum(n for code, n in statuses.items() if 200 <= code < 300)
    return {
        "requests": total,
        "acknowledged": acked,
        "per_second": acked / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "payload_bytes": len(payload(0)),
        "statuses": json.dumps(statuses),
    }


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with code {proc.returncode}")
        try:
            httpx.post(f"http://127.0.0.1:{port}/webhooks/github", content=b"{}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _database_processes() -> list[psutil.Process]:
    """PostgreSQL's server processes (backends, WAL writer, checkpointer), if it runs on this machine."""
    found = []
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            found.append(p)
    return found


def run_server(cmd: list[str], env: dict[str, str], cwd: str, port: int, total: int, concurrency: int) -> dict[str, float]:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(port, proc)
        asyncio.run(drive([build_request(i, port) for i in range(min(500, total))], port, concurrency))  # warm-up
        reqs = [build_request(i, port) for i in range(total)]
        server = [psutil.Process(proc.pid)]
        database = _database_processes()
        me = psutil.Process()
        before = (_cpu_seconds(server), _cpu_seconds(database), _cpu_seconds([me]))
        result = asyncio.run(drive(reqs, port, concurrency))
        after = (_cpu_seconds(server), _cpu_seconds(database), _cpu_seconds([me]))
        # CPU time per acknowledged delivery, in microseconds: where the two cores went
        n = max(1, int(result["acknowledged"]))
        for key, b, a in zip(("server_us", "database_us", "sender_us"), before, after, strict=True):
            result[key] = (a - b) / n * 1e6
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fresh_pg_schema(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_pg_schema(base: str, schema: str) -> None:
    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="in-process workers draining while ingesting")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bare_app.py").write_text(BARE_APP)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
        port = free_port()
        results["bare route"] = run_server(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
             "--no-access-log"],
            base_env, tmp, port, args.requests, args.concurrency,
        )  # fmt: skip
        key = subprocess.run(
            ["openssl", "genrsa", "2048"], capture_output=True, text=True, check=False
        ).stdout or "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n"
        targets = {"gonogo sqlite": f"sqlite:///{tmp}/bench.db"}
        schema = None
        try:
            pg_url, schema = fresh_pg_schema(args.postgres)
            targets["gonogo postgresql"] = pg_url
        except Exception as exc:  # noqa: BLE001 - report and go on with SQLite only
            print(f"PostgreSQL not reachable ({type(exc).__name__}); skipping it", file=sys.stderr)
        try:
            for name, url in targets.items():
                env = dict(base_env, GONOGO_WEBHOOK_SECRET=SECRET, GONOGO_DATABASE_URL=url, GONOGO_APP_ID="1",
                           GONOGO_PRIVATE_KEY=key)  # fmt: skip
                subprocess.run([sys.executable, "-m", "github_app", "db", "upgrade"], env=env, cwd=tmp, check=True,
                               capture_output=True)  # fmt: skip
                port = free_port()
                results[name] = run_server(
                    [sys.executable, "-m", "github_app", "--log-level", "warning", "serve", "--port", str(port),
                     "--workers", str(args.workers)],
                    env, tmp, port, args.requests, args.concurrency,
                )  # fmt: skip
        finally:
            if schema:
                drop_pg_schema(args.postgres, schema)

    bare = results["bare route"]["per_second"]
    print(f"\n{args.requests} signed deliveries of ~{results['bare route']['payload_bytes'] / 1024:.0f} KB, "
          f"{args.concurrency} concurrent senders, {args.workers} in-process workers\n")  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"{'target':20} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}  "
          f"{'CPU µs/delivery: server':>23} {'database':>8} {'sender':>6} {'cores busy':>10} {'CPU-bound max/s':>15}  "
          f"statuses")  # fmt: skip
    for name, r in results.items():
        # everything runs on this machine's cores: the CPU one delivery costs in all three processes
        # bounds the rate, whatever the software does, at cores * 1e6 / (µs per delivery)
        spent = r["server_us"] + r["database_us"] + r["sender_us"]
        print(f"{name:20} {r['per_second']:9.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
              f"{bare / r['per_second']:7.2f}x  {r['server_us']:23.0f} {r['database_us']:8.0f} {r['sender_us']:6.0f} "
              f"{r['per_second'] * spent / 1e6:10.2f} {cores * 1e6 / spent:15.0f}  {r['statuses']}")  # fmt: skip
    print(f"\n'cores busy' is the share of this machine's {cores} cores the three processes used together; "
          "'CPU-bound max/s' is the rate at which they would use them all, at the measured cost per delivery.")


if __name__ == "__main__":
    main()
