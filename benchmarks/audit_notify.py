"""Throughput of the audit chain (append, verify) and of the notification outbox, on SQLite and PostgreSQL.

Each audit append is its own transaction, as the gate writes them; "threads" writers contend for
the chain (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL). The outbox figure is
enqueue-to-delivered to a local HTTP receiver over loopback.

    .venv/bin/python benchmarks/audit_notify.py [--appends 2000] [--messages 500] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from github_app import audit, db, notify
from github_app.serving import ServerThread

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def postgres_engine(url: str) -> Iterator[Engine]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = db.make_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        db.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench_appends(engine: Engine, total: int, threads: int) -> float:
    per = total // threads

    def writer(n: int) -> None:
        for i in range(per):
            with engine.begin() as conn:
                audit.append(conn, "evaluation", repository="octo/shop", actor=f"w{n}",
                             data={"i": i, "score": 81.5, "reasons": ["a reason", "another"]})  # fmt: skip

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - start)


def bench_verify(engine: Engine) -> tuple[int, float]:
    start = time.perf_counter()
    report = audit.verify(engine)
    elapsed = time.perf_counter() - start
    assert report.ok, report.summary()
    return report.entries, report.entries / elapsed


def bench_outbox(engine: Engine, messages: int) -> float:
    async def ok(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    with ServerThread(Starlette(routes=[Route("/hook", ok, methods=["POST"])])) as srv:
        start = time.perf_counter()
        with engine.begin() as conn:
            for i in range(messages):
                notify.enqueue(conn, key=f"bench-{i}", channel="webhook", url=f"{srv.url}/hook",
                               body={"event": "escalated", "i": i}, secret_env="GONOGO_NOTIFY_BENCH")  # fmt: skip
        dispatcher = notify.OutboxDispatcher(engine, batch_size=50, environ={"GONOGO_NOTIFY_BENCH": "s"})
        sent = asyncio.run(dispatcher.run_until_idle(timeout=600))
        elapsed = time.perf_counter() - start
    assert sent == messages
    return messages / elapsed


def run(name: str, engine: Engine, appends: int, messages: int) -> None:
    one = bench_appends(engine, appends, 1)
    four = bench_appends(engine, appends, 4)
    entries, verify_rate = bench_verify(engine)
    outbox = bench_outbox(engine, messages)
    print(f"{name:10}  append 1 thread {one:7.0f}/s   append 4 threads {four:7.0f}/s   "
          f"verify {entries} entries {verify_rate:8.0f}/s   outbox {messages} signed POSTs {outbox:6.0f}/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with sqlite_engine() as engine:
        run("sqlite", engine, args.appends, args.messages)
    if not args.no_postgres:
        with postgres_engine(args.postgres) as engine:
            run("postgresql", engine, args.appends, args.messages)


if __name__ == "__main__":
    main()
