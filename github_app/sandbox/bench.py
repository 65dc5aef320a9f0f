"""Measure the sandbox's own cost per call: `python -m github_app.sandbox.bench [--calls N] [--concurrency C]`."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy

from github_app.sandbox.scenario import DEFAULT_CORPUS
from github_app.sandbox.server import running_sandbox
from github_app.sandbox.state import SandboxState

DEMO = __import__("pathlib").Path(__file__).resolve().parent / "scenarios" / "demo.yml"


async def _measure(url: str, state: SandboxState, calls: int, concurrency: int, http_cache: bool
                   ) -> dict[str, float]:
    assert state.app is not None and state.app.private_key_pem is not None
    _, dep = state.deployment("all-green")
    gh: GitHub[Any] = GitHub(AppInstallationAuthStrategy(state.app.id, state.app.private_key_pem, 4242),
                             base_url=url + "/", auto_retry=False, cache_strategy=MemCacheStrategy(),
                             http_cache=http_cache)
    timings: list[float] = []
    async with gh:
        await gh.rest.checks.async_list_for_ref("acme", "shop", dep.sha)  # token exchange, connection warm-up
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                started = time.perf_counter()
                response = await gh.rest.checks.async_list_for_ref("acme", "shop", dep.sha)
                _ = response.parsed_data  # include githubkit's model parsing, as gonogo pays it
                timings.append(time.perf_counter() - started)

        wall = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        wall = time.perf_counter() - wall
    timings.sort()
    return {"p50_ms": statistics.median(timings) * 1000, "p99_ms": timings[int(len(timings) * 0.99) - 1] * 1000,
            "calls_per_s": calls / wall}


def main() -> None:
    """Print p50/p99 latency and throughput of list-check-runs through githubkit, without and with latency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    state = SandboxState.from_scenario(DEMO, corpus_root=DEFAULT_CORPUS)
    with running_sandbox(state) as sandbox:
        for http_cache, latency, concurrency in ((True, 0.0, 1), (False, 0.0, 1), (False, 0.0, args.concurrency),
                                                 (False, 0.05, 1), (False, 0.05, args.concurrency)):
            state.latency = latency
            figures = asyncio.run(_measure(sandbox.url, state, args.calls, concurrency, http_cache))
            print(f"githubkit http_cache {'on ' if http_cache else 'off'}  latency {latency * 1000:3.0f} ms  "
                  f"concurrency {concurrency:3d}  p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
                  f"{figures['calls_per_s']:7.1f} calls/s")

if __name__ == "__main__":
    main()
