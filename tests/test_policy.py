"""Policy file: schema, every error with its line and column, packs, merge order, "*" fallback."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest
import yaml

from rules.policy import (
    PACKS,
    PolicyError,
    default_policy,
    effective,
    json_schema,
    load_policy_text,
    pack_document,
    parse_duration,
)

ISSUE_EXAMPLE = """\
extends: default            # built-in pack: default | strict | relaxed
mode: enforce               # enforce | dry-run
environments:
  production:               # environment name as in GitHub; "*" is the fallback
    approve:
      max_risk: 0.15
      min_score: 80
      min_confidence: 0.8
    reject:
      max_risk: 0.6
    reviewers:
      users: [alice]
      teams: [sre]
      four_eyes: true
    rules:
      GNG-TEST-001: {severity: blocker}
      GNG-PERF-002: {threshold: 10}
      GNG-SEC-004: off
    freeze:
      - {start: "FRI 16:00", end: "MON 08:00", timezone: "Europe/Berlin"}
"""


def _errors(text: str) -> list[tuple[int | None, int | None, str]]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="gonogo.yml")
    return [(e.line, e.column, e.message) for e in info.value.errors]


def test_issue_example_is_valid_and_effective() -> None:
    policy = load_policy_text(ISSUE_EXAMPLE)
    prod = effective(policy, "production")
    assert prod.approve.max_risk == 0.15 and prod.reject.max_risk == 0.6
    assert prod.reviewers.users == ["alice"] and prod.reviewers.teams == ["sre"] and prod.reviewers.four_eyes
    assert prod.rules["GNG-SEC-004"].enabled is False
    assert prod.rules["GNG-PERF-002"].threshold == 10
    assert prod.rules["GNG-TEST-001"].severity == "blocker"
    assert prod.freeze[0].timezone == "Europe/Berlin"
    assert policy.sources == ["pack:default", ".github/gonogo.yml"]


def test_every_error_has_line_and_column() -> None:
    text = """\
mode: enforced
environments:
  production:
    approve: {max_risk: 1.5, min_scor: 3}
    rules:
      GNG-NOPE-001: off
      GNG-OPS-003: {threshold: 2}
    reviewers:
      remind_after: soon
    freeze:
      - {start: "FRI 16:00", end: "MON 08:00", timezone: "Mars/Olympus"}
"""
    errors = _errors(text)
    where = {(line, col) for line, col, _ in errors}
    assert (1, 7) in where  # mode value
    assert (4, 25) in where  # max_risk value
    assert (4, 30) in where  # the unknown key itself
    assert (6, 7) in where  # unknown rule id (the key)
    assert (7, 21) in where  # threshold on a rule without one
    assert (9, 21) in where  # bad duration
    assert (11, 58) in where  # bad time zone
    assert len(errors) == 7
    assert all(line is not None and col is not None for line, col, _ in errors)
    messages = " ".join(m for _, _, m in errors)
    assert "unknown key 'min_scor'" in messages and "IANA" in messages and "GNG-OPS-003 has no threshold" in messages


def test_error_string_has_file_line_column_and_path() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text("mode: nope\n", source=".github/gonogo.yml")
    assert str(info.value.errors[0]).startswith(".github/gonogo.yml:1:7: mode: ")


def test_yaml_syntax_error_has_position() -> None:
    errors = _errors("environments:\n  production: [unclosed\n")
    assert errors[0][0] is not None and "YAML syntax error" in errors[0][2]


def test_duplicate_keys_are_errors() -> None:
    errors = _errors("environments:\n  staging: {}\n  staging: {}\n")
    assert errors == [(3, 3, "duplicate key 'staging': YAML keeps only the last one; merge the two entries")]


def test_top_level_must_be_a_mapping() -> None:
    assert "must be a mapping" in _errors("- a\n- b\n")[0][2]


def test_crossed_risk_limits_are_rejected() -> None:
    errors = _errors("environments:\n  production:\n    approve: {max_risk: 0.7}\n    reject: {max_risk: 0.5}\n")
    assert errors[0][:2] == (3, 25) and "stricter" in errors[0][2]


def test_freeze_window_must_not_mix_kinds() -> None:
    text = 'environments:\n  "*":\n    freeze:\n      - {start: "FRI 16:00", end: "2025-01-01"}\n'
    assert "both be weekly" in _errors(text)[0][2]


def test_no_file_gives_the_default_pack_and_it_is_a_safe_gate() -> None:
    policy = default_policy()
    assert policy.extends == "default" and policy.mode == "enforce"
    prod, other = effective(policy, "production"), effective(policy, "staging")
    for env in (prod, other):
        assert env.approve.max_risk < env.reject.max_risk
        assert env.approve.min_confidence >= 0.5 and env.approve.min_score >= 70
        assert env.reviewers.four_eyes
    assert prod.approve.max_risk <= other.approve.max_risk
    assert prod.approve.min_confidence > other.approve.min_confidence


@pytest.mark.parametrize("name", PACKS)
def test_packs_are_valid_documents(name: str) -> None:
    doc = pack_document(name)
    assert doc["extends"] == name and "*" in doc["environments"]


def test_merge_order_pack_then_org_then_repo() -> None:
    org = "extends: strict\nenvironments:\n  production:\n    approve: {min_score: 90, max_risk: 0.05}\n"
    repo = "environments:\n  production:\n    approve: {max_risk: 0.08}\n    reviewers: {users: [bob]}\n"
    policy = load_policy_text(repo, org_text=org)
    prod = effective(policy, "production")
    assert policy.extends == "strict"  # from the org layer
    assert prod.approve.min_score == 90  # org over pack
    assert prod.approve.max_risk == 0.08  # repo over org
    assert prod.approve.min_confidence == 0.8  # strict pack's production value survives
    assert prod.reject.max_risk == 0.4
    assert prod.rules["GNG-SEC-002"].severity == "blocker"  # from the strict pack's "*"
    assert prod.reviewers.users == ["bob"]
    assert policy.sources == ["pack:strict", "org .github/gonogo.yml", ".github/gonogo.yml"]


def test_repo_can_choose_another_pack_than_the_org() -> None:
    policy = load_policy_text("extends: relaxed\n", org_text="extends: strict\n")
    assert policy.extends == "relaxed"
    assert effective(policy, "production").reject.max_risk == 0.7


def test_star_is_the_fallback_and_named_environments_merge_over_it() -> None:
    text = """\
environments:
  "*":
    approve: {min_score: 75}
    required_checks: [build]
  staging:
    approve: {max_risk: 0.3}
"""
    policy = load_policy_text(text)
    staging, preview = effective(policy, "Staging"), effective(policy, "preview-42")
    assert staging.approve.min_score == 75 and staging.approve.max_risk == 0.3
    assert staging.required_checks == ["build"]
    assert preview.approve.min_score == 75 and preview.approve.max_risk == 0.25


def test_off_rules_and_reenabling_in_a_later_layer() -> None:
    org = "environments:\n  '*':\n    rules: {GNG-CHG-005: off}\n"
    repo = "environments:\n  '*':\n    rules: {GNG-CHG-005: {severity: major}}\n"
    assert effective(load_policy_text(None, org_text=org), "x").rules["GNG-CHG-005"].enabled is False
    ov = effective(load_policy_text(repo, org_text=org), "x").rules["GNG-CHG-005"]
    assert ov.enabled and ov.severity == "major"


def test_extended_reviewer_keys_and_notifications() -> None:
    text = """\
environments:
  production:
    reviewers:
      teams: [sre]
      min_permission: maintain
      remind_after: 30m
      expire_after: 2d
      break_glass: [carol]
    notifications:
      - {type: slack, url: "https://hooks.slack.example/T1"}
      - {type: webhook, url: "https://example.org/hook", secret_env: GONOGO_NOTIFY_HOOK}
    strategy: canary
"""
    prod = effective(load_policy_text(text), "production")
    assert prod.reviewers.remind_after == timedelta(minutes=30) and prod.reviewers.expire_after == timedelta(days=2)
    assert prod.reviewers.break_glass == ["carol"] and prod.reviewers.min_permission == "maintain"
    assert [n.type for n in prod.notifications] == ["slack", "webhook"]
    assert prod.strategy == "canary"
    assert prod.model_dump(mode="json")["reviewers"]["remind_after"] == "30m"


def test_notification_url_must_be_http() -> None:
    text = "environments:\n  production:\n    notifications:\n      - {type: teams, url: ftp://x}\n"
    assert "http(s)" in _errors(text)[0][2]


@pytest.mark.parametrize("text,expected", [("4h", timedelta(hours=4)), ("3d", timedelta(days=3)), ("1w", timedelta(weeks=1))])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["0h", "4", "h4", "4 hours", 4])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_json_schema_is_valid_and_accepts_the_issue_example() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(yaml.safe_load(ISSUE_EXAMPLE)))
    bad = list(validator.iter_errors({"mode": "enforce", "colour": "red"}))
    assert bad and "colour" in bad[0].message


def test_artifact_and_migration_globs() -> None:
    policy = load_policy_text("artifacts: ['test-results-*', 'coverage']\nmigrations: ['db/**']\n")
    assert policy.artifacts == ["test-results-*", "coverage"] and policy.migrations == ["db/**"]
    assert "**/alembic/versions/**" in default_policy().migrations


def test_docs_example_is_valid_and_every_key_is_documented() -> None:
    import re
    from pathlib import Path

    from rules.policy import Policy

    doc = (Path(__file__).resolve().parents[1] / "docs" / "policy.md").read_text(encoding="utf-8")
    example = re.search(r"## A complete example\n\n```yaml\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    prod = effective(load_policy_text(example.group(1)), "production")
    assert prod.reviewers.break_glass == ["carol"] and len(prod.freeze) == 2
    schema = json_schema()
    keys = set(Policy.model_fields) | {k for d in schema["$defs"].values() for k in d.get("properties", {})}
    keys -= {"enabled"}  # internal form of `off`
    assert [k for k in sorted(keys) if f"`{k}`" not in doc] == []


def test_a_notification_secret_must_be_a_notification_variable() -> None:
    for name in ("GONOGO_WEBHOOK_SECRET", "GONOGO_PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY", "GONOGO_NOTIFY_", "gonogo_notify_x"):
        text = f"environments:\n  production:\n    notifications:\n      - {{type: webhook, url: https://x.example, secret_env: {name}}}\n"
        with pytest.raises(PolicyError) as err:
            load_policy_text(text)
        [issue] = err.value.errors
        assert issue.line == 4 and "GONOGO_NOTIFY_" in issue.message, str(issue)
    ok = load_policy_text("environments:\n  production:\n    notifications:\n"
                          "      - {type: webhook, url: https://x.example, secret_env: GONOGO_NOTIFY_DEPLOYS}\n")  # fmt: skip
    assert effective(ok, "production").notifications[0].secret_env == "GONOGO_NOTIFY_DEPLOYS"


def test_an_environment_named_in_another_case_merges_with_the_layers_below() -> None:
    """GitHub environment names ignore case; so do the layers. `Production:` in the repository file adds to
    the pack's and the organisation's `production`, it does not stand beside them: before, a deployment to
    `production` silently ignored the repository's blocker, and one to `Production` lost the pack's
    production limits (falling back to the looser "*") and the organisation's blocker."""
    org = "environments:\n  production:\n    rules:\n      GNG-SEC-003: {severity: blocker}\n"
    repo = "environments:\n  Production:\n    rules:\n      GNG-SEC-002: {severity: blocker}\n"
    policy = load_policy_text(repo, org_text=org)
    assert [name.lower() for name in policy.environments].count("production") == 1
    for name in ("production", "Production", "PRODUCTION"):
        env = effective(policy, name)
        assert env.rules["GNG-SEC-002"].severity == "blocker", name
        assert env.rules["GNG-SEC-003"].severity == "blocker", name
        assert (env.approve.max_risk, env.reject.max_risk) == (0.15, 0.6), name  # the pack's production


def test_one_file_naming_an_environment_twice_in_different_case_is_an_error() -> None:
    text = "environments:\n  production:\n    approve: {max_risk: 0.1}\n  PRODUCTION:\n    approve: {max_risk: 0.3}\n"
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text)
    [issue] = exc.value.errors
    assert (issue.line, issue.column, issue.path) == (4, 3, "environments.PRODUCTION")
    assert "same GitHub environment" in issue.message and "'production'" in issue.message


@pytest.mark.parametrize("name", ["prod-*", "prod?", "[Pp]roduction", "*production"])
def test_an_environment_name_written_as_a_pattern_is_an_error_not_a_silent_no_match(name: str) -> None:
    """Environment names are matched exactly (ignoring case); only "*" stands for every environment. A key
    like `prod-*` used to validate and then apply to no environment at all, so its blockers and freezes
    never held and `prod-eu` fell back to "*" without a word."""
    text = f"environments:\n  production:\n    approve: {{max_risk: 0.1}}\n  '{name}':\n    rules:\n      GNG-SEC-002: {{severity: blocker}}\n"
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text)
    [issue] = exc.value.errors
    assert (issue.line, issue.column, issue.path) == (4, 3, f"environments.{name}")
    assert "pattern" in issue.message and '"*"' in issue.message


def _alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML whose aliases reach 9**levels list items."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines.append(f"environments: {{production: {{required_checks: *l{levels - 1}}}}}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_not_expanded() -> None:
    """A policy file is read by every worker that gates the repository: 700 bytes of aliases (9**9 items)
    kept a worker busy for hours, walking the same nodes again through each alias."""
    import time

    started = time.monotonic()
    with pytest.raises(PolicyError) as exc:
        load_policy_text(_alias_bomb(9))
    assert time.monotonic() - started < 5
    assert any(i.path == "l0" and "unknown key" in i.message for i in exc.value.errors)


def test_a_deeply_nested_policy_is_a_policy_error_not_a_crash() -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text("environments: {production: {required_checks: " + "[" * 5000 + "]" * 5000 + "}}\n")
    assert "nested too deeply" in str(exc.value)
