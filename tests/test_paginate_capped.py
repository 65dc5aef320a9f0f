"""paginate_capped against the sandbox: a listing that fills the cap exactly is whole, one item more is cut."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from github_app.github import GitHubClients, paginate, paginate_capped, parsed
from github_app.sandbox import SandboxState, async_running_sandbox, generate_key_pair
from github_app.settings import Secret
from tests.helpers import make_settings

KEY, PUBLIC = generate_key_pair()
APP_ID = 4711
REPO = "acme/shop"


def state_with_artifacts(count: int) -> tuple[SandboxState, int]:
    state = SandboxState()
    state.set_app(APP_ID, PUBLIC)
    state.add_installation(42, "acme")
    state.add_repo(REPO)
    commit = state.add_commit(REPO, message="init", branch="main")
    run = state.add_workflow_run(REPO, commit.sha)
    for i in range(count):
        state.add_artifact(REPO, run.id, f"report-{i:03d}", b"PK\x05\x06" + bytes(18))
    return state, run.id


def capped_listing(count: int, cap: int) -> tuple[list[Any], bool, list[Any], int]:
    """What paginate_capped answers for a run with ``count`` artifacts, the whole listing, and the pages asked."""

    async def scenario() -> tuple[list[Any], bool, list[Any], int]:
        state, run_id = state_with_artifacts(count)
        async with async_running_sandbox(state) as sandbox:
            clients = GitHubClients(make_settings(
                "sqlite://", app_id=str(APP_ID), private_key=Secret(KEY), github_api_url=sandbox.url,
            ))  # fmt: skip
            try:
                gh = clients.installation(42)
                request = gh.rest.actions.async_list_workflow_run_artifacts
                owner, name = REPO.split("/")

                def artifacts(response: Any) -> list[Any]:
                    return list(parsed(response).artifacts)

                state.clear_calls()
                items, cut = await paginate_capped(gh, request, cap, artifacts, owner=owner, repo=name, run_id=run_id)
                pages = len(state.calls("GET", f"/repos/{REPO}/actions/runs/*/artifacts"))
                whole = await paginate(gh, request, artifacts, owner=owner, repo=name, run_id=run_id)
            finally:
                await clients.aclose()
        return items, cut, whole, pages

    return asyncio.run(scenario())


@pytest.mark.parametrize("cap", [3, 100])  # 100 fills one page exactly: telling needs the next page's first item
def test_a_listing_of_exactly_the_cap_is_not_cut(cap: int) -> None:
    items, cut, whole, pages = capped_listing(cap, cap)
    assert not cut
    assert [a.id for a in items] == [a.id for a in whole] and len(items) == cap
    assert pages == 1


@pytest.mark.parametrize("cap", [3, 100])
def test_one_item_past_the_cap_is_cut_and_the_cap_is_kept(cap: int) -> None:
    items, cut, whole, pages = capped_listing(cap + 1, cap)
    assert cut
    assert len(whole) == cap + 1
    assert [a.id for a in items] == [a.id for a in whole[:cap]]  # the first ``cap`` in GitHub's order
    assert pages == (2 if cap == 100 else 1)
