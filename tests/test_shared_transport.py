"""The shared transport: one kept-alive connection per request in flight, reused per origin, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx

from github_app.github import SharedTransport
from github_app.sandbox import SandboxState, running_sandbox


def test_connections_are_reused_per_origin_and_opened_only_for_concurrent_requests() -> None:
    with running_sandbox(SandboxState()) as one, running_sandbox(SandboxState()) as two:

        async def scenario() -> dict[str, object]:
            transport = SharedTransport()
            try:
                async with httpx.AsyncClient(transport=transport) as client:
                    for _ in range(5):  # one after another: one connection does it all
                        assert (await client.get(f"{one.url}/rate_limit")).status_code < 500
                    sequential = len(transport.pools[id(asyncio.get_running_loop())])
                    statuses = await asyncio.gather(*(client.get(f"{one.url}/rate_limit") for _ in range(4)))
                    concurrent = len(transport.pools[id(asyncio.get_running_loop())])
                    await client.get(f"{two.url}/rate_limit")  # another origin gets a connection of its own
                    pools = transport.pools[id(asyncio.get_running_loop())]
                    idle = sorted(len(v) for v in transport.idle.values())
                    busy = [p.busy for p in pools]
            finally:
                await transport.close()
            return {"sequential": sequential, "concurrent": concurrent, "total": len(pools), "idle": idle,
                    "busy": busy, "statuses": [r.status_code for r in statuses]}  # fmt: skip

        seen = asyncio.run(scenario())
    assert seen["sequential"] == 1
    assert seen["concurrent"] == 4  # the kept connection plus three more, one per request in flight
    assert seen["total"] == 5 and seen["idle"] == [1, 4]  # every connection handed back, per origin
    assert seen["busy"] == [0] * 5
    assert all(isinstance(s, int) and s < 500 for s in seen["statuses"])  # type: ignore[attr-defined]
