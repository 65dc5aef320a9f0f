"""Decision latency: from the webhook POST to the sandbox receiving gonogo's review call.

The GitHub sandbox runs in this process and adds a fixed latency to every call; gonogo runs as
its own `gonogo serve` process on SQLite (or PostgreSQL with --postgres). N deployments are fired
with C in flight at a time, and for each one we take the time from the POST to the moment the
sandbox received the protection-rule answer (approve/reject) for its run.

    python benchmarks/decision_latency.py [--deployments 200] [--concurrency 20] [--latency 0.05]

It also reports the CPU time each process spent during the measured run (both share this machine's
cores), and ``--profile FILE`` samples the gonogo process with py-spy (only the thread holding the GIL) (``pip install py-spy``) into
FILE as collapsed stacks (``--profile-format speedscope`` for https://www.speedscope.app).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from github_app.sandbox import SandboxState, generate_key_pair, running_sandbox
from github_app.sandbox.webhooks import (
    deployment_protection_rule_payload,
    deployment_status_payload,
    send_webhook,
)
from github_app.serving import free_port

REPO = "acme/shop"
SECRET = "bench-secret"
# artifact downloads go to the storage host (pre-signed URLs) or, without one, to the sandbox's own blob route
BLOB_PATHS = ("/_storage/", "/_sandbox/blobs/")


def junit(total: int) -> str:
    cases = "".join(f'<testcase classname="t" name="case_{i}" time="0.01"/>' for i in range(total))
    return f'<testsuite name="unit" tests="{total}" failures="0" errors="0" skipped="0">{cases}</testsuite>'


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def build_state(n: int) -> tuple[SandboxState, str, list[str], int]:
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(31337, public_pem)
    state.add_installation(4242, "acme")
    state.add_repo(REPO)
    base = state.add_commit(REPO, message="base", author="alice", branch="main",
                            files=[{"filename": "app/main.py", "status": "added", "additions": 200}])  # fmt: skip
    tests_zip = zipped({"junit.xml": junit(200)})
    coverage_zip = zipped({"coverage.xml": '<coverage line-rate="0.9" branch-rate="0.8" lines-valid="100" '
                                           'lines-covered="90" version="7" timestamp="1"><packages/></coverage>'})  # fmt: skip
    # the live release: gated by gonogo like the others (green), then deployed (its success status is sent once
    # gonogo has approved it), so the measured decisions compare with a release gonogo let through, as in a
    # steady state; only such a release counts as the last good one (docs/outcomes.md)
    def green(sha: str) -> None:  # every check passed, and CI uploaded its test and coverage reports
        for name in ("build", "tests", "lint"):
            state.add_check_run(REPO, sha, name, conclusion="success")
        run = state.add_workflow_run(REPO, sha, name="CI", status="completed", conclusion="success")
        state.add_artifact(REPO, run.id, "test-results", tests_zip)
        state.add_artifact(REPO, run.id, "coverage", coverage_zip)

    green(base.sha)
    prev = state.add_deployment(REPO, base.sha, "production", creator="alice")
    prev.name = "live"
    state.named_deployments[prev.name] = (REPO, prev.id)
    labels = []
    for i in range(n):
        head = state.add_commit(REPO, message=f"change {i}", author="bob", parents=[base.sha],
                                files=[{"filename": f"app/mod{i % 7}.py", "additions": 20 + i % 30, "deletions": 5}])  # fmt: skip
        green(head.sha)
        dep = state.add_deployment(REPO, head.sha, "production", creator="bob")
        dep.name = f"d{i}"
        state.named_deployments[dep.name] = (REPO, dep.id)
        labels.append(dep.name)
    return state, private_pem, labels, prev.id


def route_of(path: str) -> str:
    """A call's path with ids and shas generalised, so calls group by route."""
    path = re.sub(r"\b[0-9a-f]{40}\b", "{sha}", path.split("?")[0])
    if path.startswith(BLOB_PATHS):
        return "artifact blob download (storage host)"
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the sandbox adds to every call")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL instead of SQLite")
    parser.add_argument("--routes", action="store_true", help="list GitHub calls per decision by route")
    parser.add_argument("--profile", default=None, help="sample gonogo with py-spy into this file")
    parser.add_argument("--profile-format", default="raw", choices=["raw", "speedscope", "flamegraph"])
    parser.add_argument("--profile-all-threads", action="store_true",
                        help="sample every running thread, not only the one holding the GIL (shows C code that "
                             "releases it, e.g. SQLite, hashing, TLS set-up)")
    args = parser.parse_args()

    state, private_pem, labels, previous = build_state(args.deployments)
    schema = None
    database_url = None
    if args.postgres:  # a schema of its own, dropped at the end: the database's own tables stay untouched
        from ingest import fresh_pg_schema

        database_url, schema = fresh_pg_schema(args.postgres)
    try:
        run(args, state, private_pem, labels, previous, database_url)
    finally:
        if schema:
            from ingest import drop_pg_schema

            drop_pg_schema(args.postgres, schema)


def run(args: argparse.Namespace, state: SandboxState, private_pem: str, labels: list[str], previous: int,
        database_url: str | None) -> None:
    webhooks = httpx.Client(timeout=10)  # one keep-alive client for every delivery, as GitHub's sender would
    with tempfile.TemporaryDirectory() as tmp, running_sandbox(state) as sandbox, webhooks:
        state.latency = args.latency
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
        env.update({
            "GONOGO_WEBHOOK_SECRET": SECRET, "GONOGO_APP_ID": "31337", "GONOGO_PRIVATE_KEY": private_pem,
            "GONOGO_GITHUB_API_URL": sandbox.url, "GONOGO_DATABASE_URL": database_url or f"sqlite:///{tmp}/bench.db",
            "GONOGO_WORKERS": str(args.workers), "GONOGO_POLL_SECONDS": "0.05",
        })  # fmt: skip
        if database_url:
            subprocess.run([sys.executable, "-m", "github_app", "db", "upgrade"], env=env, check=True, capture_output=True)
        with open(Path(tmp) / "app.log", "w") as log:
            app = subprocess.Popen(
                [sys.executable, "-m", "github_app", "--log-level", "warning", "serve", "--port", str(port)],
                env=env, cwd=tmp, stdout=log, stderr=log,
            )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # the live release: gonogo gates it, then learns it went out the way it does in production, from
            # its deployment status
            send_webhook(base, SECRET, "deployment_protection_rule",
                         deployment_protection_rule_payload(state, "live", full_name=REPO))  # fmt: skip
            live = state.gate(REPO, state.deployment("live")[1].run_id, "production")
            for _ in range(600):
                if live.answer is not None:
                    break
                time.sleep(0.05)
            if live.answer != "approved":
                raise SystemExit(f"the live release was not approved by gonogo ({live.answer}): see the app log")
            state.add_deployment_status(REPO, previous, "success")
            status = deployment_status_payload(state, previous, full_name=REPO)
            send_webhook(base, SECRET, "deployment_status", status)
            time.sleep(1.0)
            for label in labels:  # the releases to decide were created after the live one went out, as in use
                state.deployment(label)[1].created_at = state.now()
            payloads = {label: deployment_protection_rule_payload(state, label, full_name=REPO) for label in labels}
            sent: dict[int, float] = {}
            run_of = {label: state.deployment(label)[1].run_id for label in labels}
            done: dict[int, float] = {}
            lock = threading.Lock()
            slots = threading.Semaphore(args.concurrency)
            state.clear_calls()

            def answered(run_id: int) -> float | None:
                gate = state.gate(REPO, run_id, "production")
                if gate.answer is None:
                    return None
                # the sandbox stamps each review call with the time it arrived
                return next((r.at for r in gate.history if r.state and r.accepted), None)

            def fire(label: str) -> None:
                slots.acquire()
                run_id = run_of[label]
                with lock:
                    sent[run_id] = time.time()
                send_webhook(base, SECRET, "deployment_protection_rule", payloads[label], client=webhooks)
                deadline = time.time() + 120
                while time.time() < deadline:
                    at = answered(run_id)
                    if at is not None:
                        with lock:
                            done[run_id] = at
                        break
                    time.sleep(0.05)
                slots.release()

            spy = None
            if args.profile:
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                spy = subprocess.Popen(
                    [py_spy, "record", "--pid", str(app.pid), "--rate", "200", "--format", args.profile_format,
                     "--output", args.profile, "--nonblocking", *([] if args.profile_all_threads else ["--gil"])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                time.sleep(1.0)
            app_cpu_start = process_cpu_seconds(app.pid)
            bench_cpu_start = own_cpu_seconds()
            start = time.time()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(fire, labels))
            wall = time.time() - start
            app_cpu = process_cpu_seconds(app.pid) - app_cpu_start
            bench_cpu = own_cpu_seconds() - bench_cpu_start
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
        finally:
            app.terminate()
            app.wait(timeout=30)
        calls = state.calls()
        per_route = Counter(c.method + " " + route_of(c.path) for c in calls)
        latencies = sorted(done[r] - sent[r] for r in done)
        # when gonogo's first call about each run reached the sandbox: splits intake and queueing from evaluation
        first_call: dict[int, float] = {}
        for c in calls:
            match = re.search(r"/actions/runs/(\d+)/", c.path)
            if match and int(match.group(1)) in sent:
                run_id = int(match.group(1))
                first_call[run_id] = min(first_call.get(run_id, c.at), c.at)
        until_first = sorted(first_call[r] - sent[r] for r in first_call)
        token_calls = sum(1 for c in calls if c.path.endswith("/access_tokens"))
        blob_calls = sum(1 for c in calls if c.path.startswith(BLOB_PATHS))

    n = len(latencies)
    print(f"\n{args.deployments} deployments, {args.concurrency} in flight, sandbox latency "
          f"{args.latency * 1000:.0f} ms per call, {args.workers} gonogo workers, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}\n")  # fmt: skip
    print(f"answered           {n} of {args.deployments} in {wall:.1f} s")
    if n:
        print(f"latency p50        {statistics.median(latencies) * 1000:.0f} ms")
        print(f"latency p90        {latencies[int(n * 0.9) - 1] * 1000:.0f} ms")
        print(f"latency p99        {latencies[max(int(n * 0.99) - 1, 0)] * 1000:.0f} ms")
    if until_first:
        print(f"first GitHub call  p50 {statistics.median(until_first) * 1000:.0f} ms after the POST "
              "(webhook stored, claimed by a worker, deployment leased)")  # fmt: skip
    api_calls = len(calls) - token_calls - blob_calls
    print(f"CPU                gonogo {app_cpu:.1f} s ({app_cpu / max(n, 1) * 1000:.0f} ms per decision), "
          f"benchmark + sandbox {bench_cpu:.1f} s, over {wall:.1f} s of wall clock")  # fmt: skip
    print(f"GitHub calls       {api_calls / max(args.deployments, 1):.1f} per decision "
          f"(+ {token_calls} token requests, {blob_calls} artifact blob downloads in all)")  # fmt: skip
    if args.routes:
        for route, count in per_route.most_common():
            print(f"  {count / max(args.deployments, 1):5.2f}  {route}")
    if args.profile:
        print(f"profile            {args.profile}")


if __name__ == "__main__":
    main()
