"""GitHubClients against the sandbox: one installation token however many calls need it at once."""

from __future__ import annotations

import asyncio

from github_app.github import GitHubClients, InstallationNotFound, call
from github_app.sandbox import SandboxState, async_running_sandbox, generate_key_pair
from github_app.settings import Secret
from tests.helpers import make_settings

KEY, PUBLIC = generate_key_pair()
APP_ID = 4711


def state_with_repo() -> SandboxState:
    state = SandboxState()
    state.set_app(APP_ID, PUBLIC)
    state.add_installation(42, "acme")
    state.add_installation(43, "globex")
    state.add_repo("acme/shop")
    state.add_repo("globex/billing")
    state.add_commit("acme/shop", message="init", branch="main")
    state.add_commit("globex/billing", message="init", branch="main")
    return state


def clients_for(url: str) -> GitHubClients:
    return GitHubClients(make_settings("sqlite://", app_id=str(APP_ID), private_key=Secret(KEY), github_api_url=url))


def test_concurrent_calls_on_a_cold_cache_fetch_one_token_per_installation() -> None:
    async def scenario() -> None:
        state = state_with_repo()
        state.latency = 0.05  # a slow token request is when callers pile up behind it
        async with async_running_sandbox(state) as sandbox:
            clients = clients_for(sandbox.url)
            try:
                shop, billing = clients.installation(42), clients.installation(43)
                answers = await asyncio.gather(
                    *(call(shop.rest.repos.async_get("acme", "shop")) for _ in range(20)),
                    *(call(billing.rest.repos.async_get("globex", "billing")) for _ in range(5)),
                )
                assert [a.parsed_data.full_name for a in answers] == ["acme/shop"] * 20 + ["globex/billing"] * 5
                tokens = state.calls("POST", "/app/installations/*/access_tokens")
                assert sorted(c.path for c in tokens) == [
                    "/app/installations/42/access_tokens", "/app/installations/43/access_tokens",
                ]
                # later calls reuse the cached token
                await call(shop.rest.repos.async_get("acme", "shop"))
                assert len(state.calls("POST", "/app/installations/*/access_tokens")) == 2
            finally:
                await clients.aclose()

    asyncio.run(scenario())


def test_a_failed_token_request_fails_every_waiting_call_and_the_next_call_tries_again() -> None:
    async def scenario() -> None:
        state = state_with_repo()
        state.latency = 0.05  # the calls queue behind the first one's token request
        async with async_running_sandbox(state) as sandbox:
            clients = clients_for(sandbox.url)
            try:
                gh = clients.installation(999)  # not installed: GitHub answers 404 to the token request
                results = await asyncio.gather(
                    *(call(gh.rest.repos.async_get("acme", "shop")) for _ in range(6)), return_exceptions=True
                )
                assert all(isinstance(r, InstallationNotFound) for r in results), results
                # the calls that waited on the failed request share its answer instead of asking again
                assert len(state.calls("POST", "/app/installations/999/access_tokens")) == 1
                assert not state.calls("GET", "/repos/acme/shop")
                # a call made after the failure asks again (and fails again while nothing changed)
                again = await asyncio.gather(call(gh.rest.repos.async_get("acme", "shop")), return_exceptions=True)
                assert isinstance(again[0], InstallationNotFound)
                assert len(state.calls("POST", "/app/installations/999/access_tokens")) == 2
                state.add_installation(999, "acme")
                answer = await call(gh.rest.repos.async_get("acme", "shop"))
                assert answer.parsed_data.full_name == "acme/shop"
            finally:
                await clients.aclose()

    asyncio.run(scenario())
