"""The gate under GitHub faults: retries honour GitHub's hints, and every story ends in exactly one answer."""

from __future__ import annotations

from github_app.sandbox import generate_key_pair
from github_app.settings import Secret
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

REVIEW = "/repos/acme/api/actions/runs/*/deployment_protection_rule"


def answers(world: World) -> list:
    return [r for r in world.state.reviews(REPO) if r.state is not None and r.accepted]


def test_two_server_errors_then_success_give_one_answer(database_url):
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", "/repos/acme/api/commits/*/check-runs", "status", status=502, times=2)
        world.state.inject("POST", REVIEW, "status", status=503, times=2)
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "approved"
        assert [r.state for r in answers(world)] == ["approved"]
        failed = [c for c in world.state.calls("GET", "/repos/acme/api/commits/*/check-runs") if c.status == 502]
        assert len(failed) == 2


def test_secondary_rate_limit_retry_after_is_honoured(database_url):
    with running_world(database_url, release_state()) as world:
        world.state.inject("POST", "/repos/acme/api/check-runs", "secondary_rate_limit", retry_after=2, times=1)
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "approved"
        creates = world.state.calls("POST", "/repos/acme/api/check-runs")
        assert [c.status for c in creates] == [403, 201]
        assert creates[1].at - creates[0].at >= 1.9  # waited as GitHub asked
        assert len(answers(world)) == 1


def test_three_seconds_of_latency_still_decides_once(database_url):
    with running_world(database_url, release_state()) as world:
        world.state.inject("*", None, "latency", seconds=3.0, times=3)
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL, timeout=60).answer == "approved"
        assert len(answers(world)) == 1


def test_github_down_longer_than_the_retry_budget_falls_back_to_the_inbox(database_url):
    with running_world(database_url, release_state(), retry_base_seconds=0.5, retry_max_seconds=1.0) as world:
        # GitHub fails until we say so: githubkit's retries give up, the delivery goes back to the inbox
        world.state.inject("*", "/repos/*", "status", status=502, times=None)
        world.request_gate(LABEL)
        world.wait(lambda: [d for d in world.deliveries() if d.last_error and "502" in d.last_error],
                   timeout=90, what="the first attempt to fail")  # fmt: skip
        world.state.clear_faults()  # GitHub is back
        assert world.wait_decided(LABEL, timeout=90).answer == "approved"
        assert len(answers(world)) == 1
        [_only] = world.deliveries()  # exactly one delivery
        world.wait(lambda: world.deliveries()[0].state == "done", what="the delivery to finish")
        assert world.deliveries()[0].attempts >= 2


def test_unknown_installation_ends_dead_with_an_error_that_says_what_to_check(database_url):
    with running_world(database_url) as world:
        world.request_gate("unknown-installation")
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
        assert "Installation not found" in dead.last_error and "installed" in dead.last_error
        assert dead.attempts == 1  # not retried: retrying cannot help


def test_bad_private_key_ends_dead_with_an_error_that_says_what_to_check(database_url):
    other_key, _ = generate_key_pair()
    with running_world(database_url, release_state(), private_key=Secret(other_key)) as world:
        world.request_gate(LABEL)
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
        assert "GONOGO_PRIVATE_KEY" in dead.last_error and "GONOGO_APP_ID" in dead.last_error
        assert world.gate(LABEL).answer is None


def test_malformed_private_key_ends_dead(database_url):
    broken = "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n"
    with running_world(database_url, release_state(), private_key=Secret(broken)) as world:
        world.request_gate(LABEL)
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
        assert "private key" in dead.last_error.lower() and "GONOGO_PRIVATE_KEY" in dead.last_error
