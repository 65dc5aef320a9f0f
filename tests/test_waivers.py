"""Waivers: storage, expiry with an explicit clock, revocation, audit entries, the PR command parser, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from github_app import audit, db, waivers
from github_app.cli import cli
from github_app.db.models import AuditEntry
from github_app.waivers import Command, CommandError, WaiverError, parse_command
from rules.pipeline import evaluate
from rules.policy import default_policy
from rules.samples import clean_evidence

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SHA = "a" * 40
CRITICAL = {"counts": {"critical": 1}, "findings": [{"source": "trivy", "rule_id": "CVE-2021-44228", "severity": "critical", "package": "log4j"}]}


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _add(engine: Engine, **kw) -> int:
    args = {"repository": "octo/shop", "environment": "production", "rule_id": "GNG-SEC-001", "sha": None,
            "expires_at": NOW + timedelta(days=10), "reason": "JNDI lookups disabled", "author": "alice"}  # fmt: skip
    args.update(kw)
    with Session(engine) as session, session.begin():
        row = waivers.add_waiver(session, now=NOW, **args)
        return row.id


# --- storage and expiry ---------------------------------------------------------------------


def test_active_waivers_match_repository_environment_and_sha_and_expire_by_themselves(engine: Engine) -> None:
    env_wide = _add(engine)
    _add(engine, sha=SHA, rule_id="GNG-SEC-002", expires_at=NOW + timedelta(days=2))
    _add(engine, environment="staging", rule_id="GNG-QUAL-001")
    _add(engine, repository="octo/other")
    _add(engine, environment="*", rule_id="GNG-SEC-003", expires_at=NOW + timedelta(hours=1))

    got = waivers.active_waivers(engine, "octo/shop", "production", SHA, NOW)
    assert [w.rule_id for w in got] == ["GNG-SEC-001", "GNG-SEC-002", "GNG-SEC-003"]
    assert got[0].author == "alice" and got[0].expires_at == NOW + timedelta(days=10)
    assert got[0].granted_at == NOW  # the waivers.max_lifetime in force at decision time counts from here
    # another commit: the sha-bound waiver does not apply
    assert [w.rule_id for w in waivers.active_waivers(engine, "octo/shop", "production", "b" * 40, NOW)] == [
        "GNG-SEC-001", "GNG-SEC-003"]  # fmt: skip
    # two hours on the wildcard one has expired; three days on, the sha one too; eleven days on, none
    later = waivers.active_waivers(engine, "octo/shop", "production", SHA, NOW + timedelta(hours=2))
    assert [w.rule_id for w in later] == ["GNG-SEC-001", "GNG-SEC-002"]
    assert [w.rule_id for w in waivers.active_waivers(engine, "octo/shop", "production", SHA, NOW + timedelta(days=3))] == [
        "GNG-SEC-001"]  # fmt: skip
    assert waivers.active_waivers(engine, "octo/shop", "production", SHA, NOW + timedelta(days=10)) == []
    # exactly at expiry the waiver no longer counts
    with Session(engine) as session:
        assert waivers.active_waivers(session, "octo/shop", "production", SHA, NOW + timedelta(days=10)) == []
    assert env_wide == 1


def test_a_stored_waiver_turns_no_go_into_go_for_that_environment_only_until_expiry(engine: Engine) -> None:
    _add(engine, expires_at=NOW + timedelta(days=1))
    evidence = clean_evidence(security=CRITICAL)
    policy = default_policy()

    def verdict(environment: str, when: datetime) -> str:
        active = waivers.active_waivers(engine, "octo/shop", environment, SHA, when)
        return evaluate(evidence, policy, environment, when, waivers=active).verdict

    assert verdict("production", NOW) == "go"
    assert verdict("staging", NOW) == "no-go"
    assert verdict("production", NOW + timedelta(days=1, seconds=1)) == "no-go"


def test_invalid_waivers_are_refused(engine: Engine) -> None:
    with pytest.raises(WaiverError, match="unknown rule id"):
        _add(engine, rule_id="GNG-XXX-999")
    with pytest.raises(WaiverError, match="needs a reason"):
        _add(engine, reason="   ")
    with pytest.raises(WaiverError, match="already be expired"):
        _add(engine, expires_at=NOW - timedelta(minutes=1))
    with pytest.raises(WaiverError, match="full commit sha"):
        _add(engine, sha="abc123")
    assert waivers.list_waivers(engine, include_inactive=True) == []


def test_revoke_stops_the_waiver_and_both_steps_are_audited(engine: Engine) -> None:
    wid = _add(engine)
    row = waivers.revoke(engine, wid, by="bob", now=NOW + timedelta(hours=1))
    assert row.revoked_by == "bob" and row.revoked_at == NOW + timedelta(hours=1)
    assert waivers.active_waivers(engine, "octo/shop", "production", SHA, NOW + timedelta(hours=2)) == []
    with pytest.raises(WaiverError, match="already revoked by bob"):
        waivers.revoke(engine, wid, by="carol")
    with pytest.raises(WaiverError, match="no waiver with id 999"):
        waivers.revoke(engine, 999, by="carol")
    with Session(engine) as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [(e.kind, e.actor, e.data["action"]) for e in entries] == [("waiver", "alice", "add"), ("waiver", "bob", "revoke")]
    assert entries[0].data["rule_id"] == "GNG-SEC-001" and entries[0].repository == "octo/shop"
    assert audit.verify(engine).ok


def test_add_waiver_on_a_plain_connection_rolls_back_with_the_caller(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        row = waivers.add_waiver(conn, "octo/shop", "production", "GNG-SEC-001", None, NOW + timedelta(days=1),
                                 "r", "alice", now=NOW)  # fmt: skip
        assert row.id is not None
        raise RuntimeError("the comment reply failed")
    assert waivers.list_waivers(engine, include_inactive=True) == []
    with engine.connect() as conn:
        assert conn.execute(select(AuditEntry.id)).first() is None


# --- command parsing ------------------------------------------------------------------------


@pytest.mark.parametrize("body, expected", [
    ("/gonogo approve tested on staging", Command("approve", "tested on staging")),
    ("LGTM\r\n\r\n/GoNoGo Reject   p99 doubled in the load test ", Command("reject", "p99 doubled in the load test")),
    ("/gonogo override\tincident INC-42 hotfix", Command("override", "incident INC-42 hotfix")),
    ("/gonogo waive gng-sec-001 until 2026-12-31 not reachable, JNDI disabled",
     Command("waive", "not reachable, JNDI disabled", "GNG-SEC-001", datetime(2027, 1, 1, tzinfo=UTC))),
    (f"/gonogo waive GNG-SEC-001 for {SHA.upper()} until 2026-07-01T18:00:00+02:00 vendor fix on Monday",
     Command("waive", "vendor fix on Monday", "GNG-SEC-001", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), SHA)),
])  # fmt: skip
def test_commands_parse(body: str, expected: Command) -> None:
    got = parse_command(body, now=NOW)
    assert got is not None
    assert (got.action, got.reason, got.rule_id, got.until, got.sha) == (
        expected.action, expected.reason, expected.rule_id, expected.until, expected.sha)  # fmt: skip
    assert got.line.lower().startswith("/gonogo")


@pytest.mark.parametrize("body", [
    "", "looks good to me", "/gonogoapprove yes", "see `/gonogo approve` in the docs",
    "> /gonogo approve quoted from someone else", "```\n/gonogo approve inside a code block\n```",
    # what GitHub shows as code, or does not show at all, is not a command either
    "    /gonogo approve in an indented code block", "notes:\n\n\t/gonogo approve in a tab-indented code block",
    "~~~\n```\n/gonogo approve inside a tilde fence that holds a backtick line\n```\n~~~",
    "````\n```\n/gonogo approve inside a four-backtick fence\n````",
    "  ```python\n/gonogo approve inside an indented fence with an info string\n  ```",
    "<!--\n/gonogo approve hidden in an HTML comment, invisible on the page\n-->",
    "text <!-- start\n/gonogo approve hidden after text on the comment's first line\n-->",
    "<pre>\n/gonogo approve inside a pre block\n</pre>",
    "```\n/gonogo approve inside a fence never closed",
])  # fmt: skip
def test_comments_without_a_command_give_none(body: str) -> None:
    assert parse_command(body) is None


@pytest.mark.parametrize("body", [
    "   /gonogo approve indented by three spaces is still a paragraph",
    "```\ncode\n```\n/gonogo approve after a closed fence",
    "~~~~\n~~~\nstill inside\n~~~~\n/gonogo approve after a tilde fence closed by a long enough line",
    "<!-- a note -->\n/gonogo approve after a one-line HTML comment",
    "<pre>x</pre>\n/gonogo approve after a one-line pre",
])  # fmt: skip
def test_commands_after_code_and_comments_still_count(body: str) -> None:
    cmd = parse_command(body)
    assert cmd is not None and cmd.action == "approve"


@pytest.mark.parametrize("body, message", [
    ("/gonogo", "needs an action"),
    ("/gonogo deploy now", "`deploy` is not a gonogo command"),
    ("/gonogo approve", "needs a reason"),
    ("/gonogo reject   ", "needs a reason"),
    ("/gonogo waive", "needs a rule id"),
    ("/gonogo waive GNG-SEC-01 until 2026-12-31 x", "Did you mean GNG-SEC-001"),
    ("/gonogo waive NOPE until 2026-12-31 x", "not a gonogo rule id"),
    ("/gonogo waive GNG-SEC-001 because reasons", "write `until YYYY-MM-DD`"),
    ("/gonogo waive GNG-SEC-001 until", "must be followed by a date"),
    ("/gonogo waive GNG-SEC-001 until 2026-02-30 x", "not a valid date"),
    ("/gonogo waive GNG-SEC-001 until 31/12/2026 x", "not a date"),
    ("/gonogo waive GNG-SEC-001 until 2026-01-01 too late", "already past"),
    ("/gonogo waive GNG-SEC-001 until 2026-12-31", "say why GNG-SEC-001"),
    ("/gonogo waive GNG-SEC-001 for abc123 until 2026-12-31 x", "not a full commit sha"),
    ("/gonogo waive GNG-SEC-001 for", "followed by the full commit sha"),
])  # fmt: skip
def test_malformed_commands_explain_what_to_write(body: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        parse_command(body, now=NOW)


def test_first_command_line_wins() -> None:
    cmd = parse_command("/gonogo approve first\n/gonogo reject second")
    assert cmd is not None and cmd.action == "approve"


# --- CLI ------------------------------------------------------------------------------------


def test_cli_add_list_and_revoke(engine: Engine, database_url: str) -> None:
    runner = CliRunner()
    base = ["--database-url", database_url]
    added = runner.invoke(cli, ["waivers", "add", *base, "--repo", "octo/shop", "-e", "production", "--rule", "gng-sec-001",
                                "--until", "2099-12-31", "--reason", "accepted risk", "--by", "ops"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Waiver 1 added: GNG-SEC-001" in added.stdout
    _add(engine, environment="staging", expires_at=NOW + timedelta(days=1))  # expired by the real clock long after 2026

    listed = runner.invoke(cli, ["waivers", "list", *base, "--repo", "octo/shop"])
    assert listed.exit_code == 0 and "accepted risk" in listed.stdout and "staging" not in listed.stdout
    rows = json.loads(runner.invoke(cli, ["waivers", "list", *base, "--all", "--format", "json"]).stdout)
    assert [r["status"] for r in rows] == ["expired" if datetime.now(UTC) > NOW + timedelta(days=1) else "active", "active"]

    revoked = runner.invoke(cli, ["waivers", "revoke", *base, "1", "--by", "carol"])
    assert revoked.exit_code == 0 and "revoked by carol" in revoked.stdout
    again = runner.invoke(cli, ["waivers", "revoke", *base, "1"])
    assert again.exit_code == 1 and "already revoked by carol" in again.output
    assert "No active waivers" in runner.invoke(cli, ["waivers", "list", *base, "-e", "production"]).stdout
    bad = runner.invoke(cli, ["waivers", "add", *base, "--repo", "o/r", "-e", "p", "--rule", "GNG-SEC-001",
                              "--until", "someday", "--reason", "x"])  # fmt: skip
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_a_waiver_end_beyond_the_calendar_is_a_command_error_not_an_overflow() -> None:
    for end in ("9999-12-31", "9999-12-31T23:59:59-05:00"):
        with pytest.raises(CommandError, match="too far away"):
            parse_command(f"/gonogo waive GNG-SEC-001 until {end} forever", now=NOW)


def test_commands_name_an_environment_and_a_waiver_its_scope() -> None:
    envs = {"production", "staging"}
    cmd = parse_command("/GONOGO APPROVE Production checked by hand", now=NOW, environments=envs)
    assert cmd is not None and (cmd.action, cmd.environment, cmd.reason) == ("approve", "Production", "checked by hand")
    cmd = parse_command("/gonogo approve production@1a2b3c4 ok", now=NOW, environments=envs)
    assert cmd is not None and (cmd.environment, cmd.reason) == ("production@1a2b3c4", "ok")
    cmd = parse_command("/gonogo approve productive talk", now=NOW, environments=envs)
    assert cmd is not None and (cmd.environment, cmd.reason) == (None, "productive talk")
    cmd = parse_command("/gonogo waive staging GNG-SEC-001 --env-wide until 2026-06-10 known", now=NOW, environments=envs)
    assert cmd is not None and (cmd.environment, cmd.rule_id, cmd.env_wide, cmd.sha) == ("staging", "GNG-SEC-001", True, None)
    cmd = parse_command("/gonogo waive --env-wide GNG-SEC-001 until 2026-06-10 known", now=NOW)
    assert cmd is not None and cmd.env_wide
    with pytest.raises(CommandError, match="not both"):
        parse_command(f"/gonogo waive GNG-SEC-001 --env-wide for {SHA} until 2026-06-10 known", now=NOW)


def test_a_waiver_typed_on_the_command_line_applies_whatever_the_case(engine: Engine, database_url: str) -> None:
    # GitHub's names ignore case, and so do the policy's environment names; a waiver typed as acme/shop for
    # Production must not silently miss the deployments of Acme/Shop to production
    runner = CliRunner()
    added = runner.invoke(cli, ["waivers", "add", "--database-url", database_url, "--repo", "acme/shop", "-e",
                                "Production", "--rule", "GNG-SEC-001", "--until", "2099-12-31", "--reason", "accepted"])  # fmt: skip
    assert added.exit_code == 0, added.output
    [found] = waivers.active_waivers(engine, "Acme/Shop", "production", SHA, NOW)
    assert found.rule_id == "GNG-SEC-001"
    assert waivers.active_waivers(engine, "Acme/Shop-Two", "production", SHA, NOW) == []


def test_a_repository_that_is_not_owner_slash_name_is_refused(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["waivers", "add", "--database-url", database_url, "--repo", "shop", "-e",
                                      "production", "--rule", "GNG-SEC-001", "--until", "2099-12-31", "--reason", "x"])  # fmt: skip
    assert result.exit_code == 2 and "owner/name" in result.output
