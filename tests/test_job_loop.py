"""The wake-and-poll loop shared by the inbox workers and the outbox dispatcher (github_app.jobs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from github_app.jobs import ConsumerLoop, Doorbell


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def test_a_ring_with_no_one_resting_is_remembered_once() -> None:
    async def scenario() -> None:
        bell: Doorbell[str] = Doorbell()
        stop = asyncio.Event()
        bell.ring()  # nobody rests: the next consumer to rest looks again at once
        async with asyncio.timeout(5):
            assert await bell.rest(None, stop) is None
        resting = asyncio.ensure_future(bell.rest(None, stop))  # the ring was used up: this one waits in line
        await _until(lambda: bell.resting == 1)
        assert not resting.done()
        bell.ring()
        async with asyncio.timeout(5):
            assert await resting is None
        assert bell.resting == 0

    asyncio.run(scenario())


def test_a_rest_gives_up_its_place_at_its_timeout_or_the_stop() -> None:
    async def scenario() -> None:
        bell: Doorbell[str] = Doorbell()
        stop = asyncio.Event()
        assert await bell.rest(0.01, stop) is None
        assert bell.resting == 0  # a later ring is not spent on a consumer that left
        waiting = asyncio.ensure_future(bell.rest(None, stop))
        await _until(lambda: bell.resting == 1)
        stop.set()
        async with asyncio.timeout(5):
            assert await waiting is None
        assert bell.resting == 0
        assert await bell.rest(None, stop) is None  # stopped: nobody rests any more

    asyncio.run(scenario())


def test_a_reserved_consumer_gets_its_job_even_after_its_timeout() -> None:
    async def scenario() -> None:
        bell: Doorbell[str] = Doorbell()
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(bell.rest(0.01, stop))
        await _until(lambda: bell.resting == 1)
        (reserved,) = bell.reserve(3)  # the producer stores a job leased to this consumer ...
        await asyncio.sleep(0.05)  # ... which takes longer than the consumer meant to rest
        reserved.set_result("job-1")
        async with asyncio.timeout(5):
            assert await waiting == "job-1"  # handed over, not dropped for the lease to run out

    asyncio.run(scenario())


def test_close_releases_everyone_resting_and_reserves_no_one() -> None:
    async def scenario() -> None:
        bell: Doorbell[str] = Doorbell()
        stop = asyncio.Event()
        resting = [asyncio.ensure_future(bell.rest(None, stop)) for _ in range(3)]
        await _until(lambda: bell.resting == 3)
        bell.close()
        async with asyncio.timeout(5):
            assert await asyncio.gather(*resting) == [None, None, None]
        assert bell.reserve(2) == []

    asyncio.run(scenario())


def test_the_loop_works_while_there_is_work_then_handles_what_is_handed_over() -> None:
    async def scenario() -> None:
        bell: Doorbell[str] = Doorbell()
        stop = asyncio.Event()
        queue = ["a", "b"]
        done: list[str] = []

        async def step() -> bool:
            if not queue:
                return False
            done.append(queue.pop(0))
            return True

        async def handle(job: str) -> None:
            done.append(job)

        async def until_rung() -> float | None:
            return None

        loop = ConsumerLoop(name="test", step=step, doorbell=bell, stop=stop, poll_seconds=30.0,
                            idle_wait=until_rung, handle=handle)  # fmt: skip
        task = asyncio.ensure_future(loop.run())
        await _until(lambda: bell.resting == 1)
        assert done == ["a", "b"]  # both claimed before resting
        (reserved,) = bell.reserve(1)
        reserved.set_result("handed")
        await _until(lambda: bell.resting == 1 and "handed" in done)
        queue.append("c")
        bell.ring()  # new work stored elsewhere: the consumer claims it
        await _until(lambda: "c" in done)
        stop.set()
        async with asyncio.timeout(5):
            await task
        assert done == ["a", "b", "handed", "c"]

    asyncio.run(scenario())


def test_the_loop_survives_a_failing_step_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        bell: Doorbell[None] = Doorbell()
        stop = asyncio.Event()
        calls: list[int] = []

        async def step() -> bool:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("database restarting")
            stop.set()
            return False

        async def short_wait() -> float | None:
            return 0.01

        loop = ConsumerLoop(name="test", step=step, doorbell=bell, stop=stop, poll_seconds=0.01,
                            idle_wait=short_wait, log_fields={"worker": 7})  # fmt: skip
        bell.ring()  # cut the rest after the failure short, so the test does not wait out its second
        async with asyncio.timeout(10):
            await loop.run()
        assert len(calls) == 2  # it looked again after the failure

    with caplog.at_level(logging.ERROR, logger="github_app.jobs"):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.getMessage() == "test.loop_error"]
    assert len(errors) == 1 and errors[0].worker == 7  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], ConnectionError)
