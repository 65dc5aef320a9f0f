"""The `.github/gonogo.yml` policy: schema, loader with line/column errors, packs and merging.

Merge order (later wins): built-in pack <- organisation defaults <- repository file. Within a
policy, an environment's settings are merged over the ``"*"`` environment.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from rules.freeze import check_window, parse_moment, zone
from rules.severity import RuleSeverity

log = logging.getLogger(__name__)

# Every rule id of the catalog and whether the rule takes a threshold: all that validating a policy
# needs to know of the rules. Kept here rather than read from rules.catalog, so that `gonogo policy
# validate` does not import the rules and the evidence models they are written against;
# tests/test_rules_catalog.py keeps this table in step with the catalog.
RULE_TAKES_THRESHOLD: dict[str, bool] = {
    "GNG-TEST-001": True, "GNG-TEST-002": True, "GNG-TEST-003": True, "GNG-TEST-004": True,
    "GNG-TEST-005": True, "GNG-TEST-006": True, "GNG-TEST-007": True, "GNG-QUAL-001": True,
    "GNG-QUAL-002": True, "GNG-QUAL-003": True, "GNG-QUAL-004": True, "GNG-SEC-001": True,
    "GNG-SEC-002": True, "GNG-SEC-003": True, "GNG-SEC-004": True, "GNG-SEC-005": True,
    "GNG-SEC-006": True, "GNG-SEC-007": True, "GNG-SEC-008": False, "GNG-PERF-001": True,
    "GNG-PERF-002": True, "GNG-PERF-003": True, "GNG-PERF-004": True, "GNG-PERF-005": True,
    "GNG-PERF-006": True, "GNG-OPS-001": True, "GNG-OPS-002": True, "GNG-OPS-003": False,
    "GNG-OPS-004": True, "GNG-OPS-005": True, "GNG-CHG-001": True, "GNG-CHG-002": True,
    "GNG-CHG-003": True, "GNG-CHG-004": True, "GNG-CHG-005": False, "GNG-CHG-006": True,
    "GNG-CHG-007": True, "GNG-CHG-008": True, "GNG-CHG-009": False,
}  # fmt: skip

PACKS = ("default", "strict", "relaxed")
_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: object) -> timedelta:
    """Parse "30m", "4h", "3d" or "1w" into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and int(m.group(1)) > 0:
            try:
                return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
            except OverflowError:  # past the calendar: an error in the file, not a crash of the gate's job
                raise ValueError(f"{value!r} is not a duration: {m.group(1)}{m.group(2)} is too long to count") from None
    raise ValueError(f"{value!r} is not a duration: write a positive number and a unit m, h, d or w, like \"4h\" or \"3d\"")


def format_duration(value: timedelta) -> str:
    """Format a timedelta back into the policy's short form ("4h")."""
    minutes = int(value.total_seconds() // 60)
    for size, unit in ((10080, "w"), (1440, "d"), (60, "h")):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+\s*[mhdw]\s*$", "examples": ["30m", "4h", "3d"]}),
]


def _no_yes_no(value: Any) -> Any:
    # YAML 1.1 reads a bare yes, on or true as True, which pydantic would take as 1: `max_risk: yes` would approve
    # any risk
    if isinstance(value, bool):
        raise ValueError("a number is needed, not a yes/no value")  # noqa: TRY004 - pydantic reports only ValueError
    return value


Number = Annotated[float, BeforeValidator(_no_yes_no)]
Count = Annotated[int, BeforeValidator(_no_yes_no)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Approve(_Strict):
    """All must hold to approve without a human."""

    max_risk: Number = Field(default=0.15, ge=0, le=1, description="Highest predicted probability of failure to approve.")
    min_score: Number = Field(default=80, ge=0, le=100, description="Lowest readiness score (0-100) to approve.")
    min_confidence: Number = Field(
        default=0.7, ge=0, le=1, description="Lowest importance-weighted share of the evidence sources read (0..1)."
    )


class Reject(_Strict):
    """Above these, reject outright."""

    max_risk: Number = Field(default=0.6, ge=0, le=1, description="Predicted probability of failure above which to reject.")


class Reviewers(_Strict):
    """Who decides escalations, and how."""

    users: list[str] = Field(default_factory=list, description="GitHub logins allowed to decide.")
    teams: list[str] = Field(default_factory=list, description="Team slugs (org/team or team) allowed to decide.")
    four_eyes: bool = Field(default=True, description="The person who triggered the deployment cannot approve it.")
    min_permission: Literal["read", "triage", "write", "maintain", "admin"] | None = Field(
        default=None, description="Minimum repository permission a reviewer must also hold (write when unset)."
    )
    remind_after: Duration | None = Field(default=None, description="Remind reviewers after this long (\"4h\").")
    expire_after: Duration | None = Field(default=None, description="Reject the deployment after this long (\"3d\").")
    break_glass: list[str] = Field(
        default_factory=list, description="GitHub logins allowed to override a no-go with /gonogo override."
    )
    break_glass_self: bool = Field(
        default=False, description="Whether a break-glass login may override a deployment it triggered itself."
    )


class RuleOverride(_Strict):
    """Per-rule override: a severity, a threshold, or ``off``."""

    severity: RuleSeverity | None = None
    threshold: Number | None = None
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _off_and_on(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False and `on` as True.
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return {"enabled": False}
        if value is True or (isinstance(value, str) and value.strip().lower() == "on"):
            return {"enabled": True}
        return value


def _known_rule(rule_id: str) -> str:
    if rule_id not in RULE_TAKES_THRESHOLD:
        raise ValueError(f"unknown rule id {rule_id!r}: see docs/rules.md or `gonogo policy schema` for valid ids")
    return rule_id


RuleId = Annotated[str, BeforeValidator(_known_rule), WithJsonSchema({"type": "string", "enum": sorted(RULE_TAKES_THRESHOLD)})]


class FreezeWindow(_Strict):
    """A window during which deployments escalate instead of being approved."""

    start: str = Field(description="\"FRI 16:00\" (weekly) or \"2025-12-24 18:00\" (one-off), local to timezone.")
    end: str = Field(description="Same form as start; a weekly window may wrap over the weekend.")
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")
    reason: str = Field(default="", description="Shown in the report.")

    @field_validator("start", "end")
    @classmethod
    def _moment(cls, value: str) -> str:
        parse_moment(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _valid(self) -> FreezeWindow:
        check_window(self.start, self.end, self.timezone)
        return self


NOTIFY_SECRET_PREFIX = "GONOGO_NOTIFY_"
# GitHub's contents API sends a file inline only up to 1 MB (read strictly): a larger policy never reaches gonogo
MAX_POLICY_BYTES = 1_000_000
_NOTIFY_SECRET_NAME = re.compile(rf"^{NOTIFY_SECRET_PREFIX}[A-Z0-9_]+$")


class Notification(_Strict):
    """A channel notified of escalations and their outcome."""

    type: Literal["slack", "teams", "webhook"]
    url: str = Field(description="Incoming-webhook URL.")
    secret_env: str | None = Field(
        default=None, pattern=_NOTIFY_SECRET_NAME.pattern,
        description=f"Environment variable holding the HMAC secret (webhook); its name starts with {NOTIFY_SECRET_PREFIX}.",
    )  # fmt: skip

    @field_validator("secret_env", mode="before")
    @classmethod
    def _notify_secret_only(cls, name: object) -> object:
        # A policy file is written by repository members; it must not make gonogo sign with its own credentials.
        if isinstance(name, str) and not _NOTIFY_SECRET_NAME.match(name):
            raise ValueError(f"{name!r} cannot hold a notification secret: name a server variable that starts with "
                             f"{NOTIFY_SECRET_PREFIX} (e.g. {NOTIFY_SECRET_PREFIX}DEPLOYS) and set the secret there")  # fmt: skip
        return name

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            # the URL itself is not repeated: errors reach check runs and the audit log, and its path may be a secret
            scheme = url.split(":", 1)[0][:10] if ":" in url else ""
            raise ValueError(f"the url must be http(s): start it with https:// or http://{f' (it starts with {scheme}:)' if scheme else ''}")
        return url


class Waivers(_Strict):
    """Limits on the waivers reviewers grant with `/gonogo waive`."""

    max_lifetime: Duration = Field(
        default=timedelta(days=30),
        description="Longest a waiver may last from the moment it is granted (\"30d\"); the value in force when a "
        "deployment is decided bounds waivers given earlier too.",
    )


StrategyChoice = Literal["auto", "direct", "canary", "blue-green", "feature-flag"]


class TestsSettings(_Strict):
    """What counts as test evidence."""

    __test__ = False  # not a pytest class

    require_reports: bool = Field(
        default=False,
        description="Keep GNG-TEST-002 at its severity when only test checks (no uploaded test reports) show the "
        "tests passed; by default it then becomes a minor recommendation.",
    )


# Major rules whose cost is a failed deployment, so that deployment outcomes can vouch for them: a large
# change, a repository without test reports, coverage under the minimum. Security, performance and
# running-check rules are never learned away: an outcome says nothing of a breach or of slower pages.
LEARNABLE_RULES = ("GNG-CHG-001", "GNG-TEST-002", "GNG-TEST-005")


def _learnable(rule_id: str) -> str:
    rule_id = _known_rule(rule_id)
    if rule_id not in LEARNABLE_RULES:
        raise ValueError(f"{rule_id} cannot be learned from outcomes; only {', '.join(LEARNABLE_RULES)} can")
    return rule_id


LearnableRuleId = Annotated[str, BeforeValidator(_learnable), WithJsonSchema({"type": "string", "enum": list(LEARNABLE_RULES)})]


class Learning(_Strict):
    """Relax a major rule for one repository and environment once its own outcomes vouch for it."""

    enabled: bool = Field(default=True, description="Learn from this environment's recorded outcomes.")
    rules: list[LearnableRuleId] = Field(
        default_factory=lambda: ["GNG-CHG-001", "GNG-TEST-002"],
        description=f"Major rules that may become recommendations (one of {', '.join(LEARNABLE_RULES)}).",
    )
    min_deployments: Count = Field(
        default=20, ge=5, le=1000,
        description="Earlier deployments with the finding whose outcome is known, before it may be relaxed.",
    )  # fmt: skip
    min_approval: Number = Field(
        default=0.8, ge=0.5, le=1, description="Lowest share of its escalations that reviewers approved."
    )
    window: Duration = Field(
        default=timedelta(days=180), description="How far back outcomes count (\"180d\", at most 365d)."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=365):
            raise ValueError("learning.window is at most 365d: older outcomes say little of today's code")
        return value


class EnvironmentPolicy(_Strict):
    """Settings for one environment (or ``"*"``, the fallback)."""

    approve: Approve = Field(default_factory=lambda: Approve())
    reject: Reject = Field(default_factory=lambda: Reject())
    reviewers: Reviewers = Field(default_factory=lambda: Reviewers())
    rules: dict[RuleId, RuleOverride] = Field(default_factory=dict)
    freeze: list[FreezeWindow] = Field(default_factory=list)
    strategy: StrategyChoice = Field(default="auto", description="Force a rollout strategy, or auto to choose from risk.")
    required_checks: list[str] = Field(default_factory=list, description="Check names that must pass.")
    tests: TestsSettings = Field(default_factory=lambda: TestsSettings())
    notifications: list[Notification] = Field(default_factory=list)
    waivers: Waivers = Field(default_factory=lambda: Waivers())
    learning: Learning = Field(default_factory=lambda: Learning())

    def override(self, rule_id: str) -> RuleOverride | None:
        """Return this environment's override of a rule, if any."""
        return self.rules.get(rule_id)


DEFAULT_MIGRATIONS = [
    "**/migrations/**", "**/migrate/**", "**/alembic/versions/**", "**/db/changelog/**", "**/flyway/**", "**/*.sql",
]  # fmt: skip


class Policy(_Strict):
    """The whole policy file (and, after merging, the effective policy of a repository)."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, json_schema_extra={"title": "gonogo policy (.github/gonogo.yml)"}
    )

    extends: Literal["default", "strict", "relaxed"] = Field(default="default", description="Built-in rule pack to start from.")
    mode: Literal["enforce", "dry-run"] = Field(default="enforce", description="dry-run decides and reports but never blocks.")
    artifacts: list[str] = Field(default_factory=lambda: ["*"], description="Globs of workflow artifact names to read.")
    migrations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MIGRATIONS), description="Path globs that mark a database migration."
    )
    environments: dict[str, EnvironmentPolicy] = Field(default_factory=dict)
    _sources: list[str] = PrivateAttr(default_factory=list)

    @property
    def sources(self) -> list[str]:
        """Where this policy came from, lowest layer first."""
        return list(self._sources)


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file, with its position (1-based) when known."""

    source: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}" if self.line is not None else self.source
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class PolicyError(Exception):
    """A policy that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[PolicyIssue]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors) or "invalid policy")


# --- YAML with positions --------------------------------------------------------------------


def _compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML keeping the node tree, so errors can point at lines and columns."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise PolicyError([PolicyIssue(source, line, col, "", f"YAML syntax error: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyIssue(source, None, None, "", f"YAML error: {exc}")]) from None
    except RecursionError:  # PyYAML composes recursively: a file of thousands of "[" must not crash the reader
        raise PolicyError([PolicyIssue(source, None, None, "", "the YAML is nested too deeply to be a policy; "
                                                               "a policy is a few levels of mappings and lists")]) from None
    finally:
        loader.dispose()
    return data, node


def _duplicate_keys(
    node: yaml.Node | None, source: str, path: str = "", seen_nodes: set[int] | None = None
) -> list[PolicyIssue]:
    out: list[PolicyIssue] = []
    # An alias is the very node its anchor names: walk each node once, or a few hundred bytes of aliases
    # nested nine deep (a "billion laughs") make hundreds of millions of visits.
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return out
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                out.append(
                    PolicyIssue(source, key.start_mark.line + 1, key.start_mark.column + 1, f"{path}{name}",
                                f"duplicate key {name!r}: YAML keeps only the last one; merge the two entries")
                )  # fmt: skip
            seen.add(name)
            out.extend(_duplicate_keys(value, source, f"{path}{name}.", seen_nodes))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicate_keys(item, source, f"{path}{i}.", seen_nodes))
    return out


def _environment_case_clashes(node: yaml.Node | None, source: str) -> list[PolicyIssue]:
    """Environments named twice in one file, in different case (GitHub takes them for one environment), or
    written as a pattern (only ``"*"`` is one)."""
    envs = next((v for k, v in node.value if str(k.value) == "environments"), None) if isinstance(node, yaml.MappingNode) else None
    out: list[PolicyIssue] = []
    if not isinstance(envs, yaml.MappingNode):
        return out
    first: dict[str, str] = {}
    for key, _ in envs.value:
        name = str(key.value)
        if name != "*" and any(c in name for c in "*?["):
            out.append(PolicyIssue(source, key.start_mark.line + 1, key.start_mark.column + 1, f"environments.{name}",
                                   f"{name!r} looks like a pattern, but environment names are matched exactly "
                                   '(ignoring case) and only "*" stands for every environment; name each '
                                   'environment, or put shared settings under "*"'))  # fmt: skip
            continue
        earlier = first.setdefault(name.lower(), name)
        if earlier != name:
            out.append(PolicyIssue(source, key.start_mark.line + 1, key.start_mark.column + 1, f"environments.{name}",
                                   f"{name!r} and {earlier!r} are the same GitHub environment (names ignore case); "
                                   "merge the two entries"))  # fmt: skip
    return out


def _locate(
    node: yaml.Node | None, loc: tuple[int | str, ...], at_key: bool = False
) -> tuple[int | None, int | None]:
    """Follow a pydantic error location through the YAML node tree to a line and column."""
    if node is None:
        return None, None
    current = node
    items = list(loc)
    i = 0
    while i < len(items):
        part = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else None
        if isinstance(current, yaml.MappingNode):
            match = next(((k, v) for k, v in reversed(current.value) if str(k.value) == str(part)), None)
            if match is not None:
                key, value = match
                # A bad key (or an unknown one) is reported on the key itself.
                current = key if nxt == "[key]" or (nxt is None and at_key) else value
                i += 2 if nxt == "[key]" else 1
                continue
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(current.value):
            current = current.value[part]
            i += 1
            continue
        i += 1  # pydantic adds tags (union members, validator names) that are not in the document
    return current.start_mark.line + 1, current.start_mark.column + 1


def _issues_from_validation(exc: ValidationError, node: yaml.Node | None, source: str) -> list[PolicyIssue]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line, col = _locate(node, loc, at_key=err["type"] == "extra_forbidden")
        path = ".".join(str(p) for p in loc if p != "[key]" and not str(p).startswith(("function-", "tagged-union")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {str(loc[-1])!r}: check its spelling against `gonogo policy schema`"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(PolicyIssue(source, line, col, path, msg))
    return out


def _semantic_issues(data: dict[str, Any], node: yaml.Node | None, source: str) -> list[PolicyIssue]:
    """Checks pydantic cannot express per field: thresholds on rules without one, crossed risk limits."""
    out = []
    envs = data.get("environments")
    for env_name, env in (envs or {}).items() if isinstance(envs, dict) else ():
        if not isinstance(env, dict):
            continue
        rules = env.get("rules")
        for rule_id, ov in (rules or {}).items() if isinstance(rules, dict) else ():
            if RULE_TAKES_THRESHOLD.get(str(rule_id)) is False and isinstance(ov, dict) and "threshold" in ov:
                rloc: tuple[str, ...] = ("environments", str(env_name), "rules", str(rule_id), "threshold")
                line, col = _locate(node, rloc, at_key=True)
                out.append(PolicyIssue(source, line, col, ".".join(rloc),
                                       f"{rule_id} has no threshold; set only its severity or turn it off"))  # fmt: skip
        approve, reject = env.get("approve"), env.get("reject")
        if isinstance(approve, dict) and isinstance(reject, dict):
            low, high = approve.get("max_risk"), reject.get("max_risk")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                aloc: tuple[str, ...] = ("environments", str(env_name), "approve", "max_risk")
                line, col = _locate(node, aloc)
                out.append(PolicyIssue(source, line, col, ".".join(aloc),
                                       f"approve.max_risk {low} is above reject.max_risk {high}; "
                                       "approve must be the stricter limit"))  # fmt: skip
    return out


def parse_policy_document(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse and validate one policy document on its own; return its raw mapping or raise PolicyError."""
    data, node = _compose(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        line, col = _locate(node, ())
        raise PolicyError([PolicyIssue(source, line, col, "", "the policy must be a mapping of keys (extends, mode, environments, ...)")])
    issues = _duplicate_keys(node, source) + _environment_case_clashes(node, source)
    try:
        Policy.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issues_from_validation(exc, node, source))
    issues.extend(_semantic_issues(data, node, source))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    if issues:
        raise PolicyError(issues)
    return data


# --- packs and merging ----------------------------------------------------------------------


def pack_text(name: str) -> str:
    """Return the YAML text of a built-in pack."""
    if name not in PACKS:
        raise ValueError(f"unknown pack {name!r}; choose one of {', '.join(PACKS)}")
    return resources.files("rules.packs").joinpath(f"{name}.yml").read_text(encoding="utf-8")


def pack_document(name: str) -> dict[str, Any]:
    """Return a built-in pack as a validated raw mapping."""
    return parse_policy_document(pack_text(name), source=f"pack:{name}")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _aligned_environment_names(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` with each environment spelled as ``base`` spells it, so that layers merge whatever the case.

    GitHub environment names ignore case: `Production:` in a repository file adds to the pack's and the
    organisation's `production`, rather than standing beside it and hiding one or the other.
    """
    envs = over.get("environments")
    if not isinstance(envs, dict):
        return over
    known = {str(name).lower(): name for name in base.get("environments") or {}}
    return {**over, "environments": {known.get(str(name).lower(), name): value for name, value in envs.items()}}


def resolve_policy(
    repo: dict[str, Any] | None = None,
    org: dict[str, Any] | None = None,
    sources: tuple[str, str] = ("org defaults", ".github/gonogo.yml"),
) -> Policy:
    """Merge pack <- organisation defaults <- repository document into one validated Policy."""
    layers = [d for d in (org, repo) if d]
    pack = "default"
    for layer in layers:
        pack = layer.get("extends", pack)
    merged = pack_document(pack)
    used = [f"pack:{pack}"]
    for maybe, name in ((org, sources[0]), (repo, sources[1])):
        if maybe:
            merged = deep_merge(merged, _aligned_environment_names(merged, maybe))
            used.append(name)
    merged["extends"] = pack
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as exc:  # each layer was valid alone; only a cross-layer clash lands here
        raise PolicyError(_issues_from_validation(exc, None, "merged policy")) from None
    issues = []
    for env_name in policy.environments:
        env = effective(policy, env_name)
        if env.approve.max_risk > env.reject.max_risk:
            issues.append(PolicyIssue("merged policy", None, None, f"environments.{env_name}",
                                      f"approve.max_risk {env.approve.max_risk} is above reject.max_risk "
                                      f"{env.reject.max_risk} after merging"))  # fmt: skip
    if issues:
        raise PolicyError(issues)
    policy._sources = used
    return policy


def load_policy_text(text: str | None, source: str = ".github/gonogo.yml", org_text: str | None = None,
                     org_source: str = "org .github/gonogo.yml") -> Policy:  # fmt: skip
    """Load a repository policy (and optional organisation defaults) over its pack; raise PolicyError."""
    org = parse_policy_document(org_text, org_source) if org_text else None
    repo = parse_policy_document(text, source) if text else None
    return resolve_policy(repo, org, (org_source, source))


def default_policy() -> Policy:
    """Return the policy used when a repository has no policy file: the default pack."""
    return resolve_policy(None, None)


def effective(policy: Policy, environment: str) -> EnvironmentPolicy:
    """Return the environment's settings merged over the ``"*"`` fallback.

    Two exceptions to "the environment wins key by key": freeze windows under ``"*"`` hold in every
    environment, beside the environment's own; and a rule ``off`` under ``"*"`` is switched back on by an
    environment entry that gives it a severity or a threshold, as a later layer's entry does.
    """
    envs = policy.environments
    star = envs["*"].model_dump(exclude_unset=True) if "*" in envs else {}
    named = envs.get(environment)
    if named is None:  # GitHub environment names are case-insensitive
        named = next((v for k, v in envs.items() if k.lower() == environment.lower() and k != "*"), None)
    if named is None:
        return EnvironmentPolicy.model_validate(star)
    own = named.model_dump(exclude_unset=True)
    for ov in (own.get("rules") or {}).values():
        if "enabled" not in ov and ("severity" in ov or "threshold" in ov):
            ov["enabled"] = True
    data = deep_merge(star, own)
    # A freeze for every environment is not a default that naming an environment's own windows replaces.
    windows = [*own.get("freeze", []), *star.get("freeze", [])]
    data["freeze"] = [w for i, w in enumerate(windows) if w not in windows[:i]]
    return EnvironmentPolicy.model_validate(data)


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the policy file, for editors and CI."""
    schema = Policy.model_json_schema()
    # A rule may also be switched with a bare `off` (YAML reads it as false) or `on`.
    rules = schema["$defs"]["EnvironmentPolicy"]["properties"]["rules"]
    rules["additionalProperties"] = {
        "anyOf": [rules["additionalProperties"], {"type": "boolean"}, {"enum": ["off", "on"]}]
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/gonogo/gonogo/schema/gonogo.yml.json"
    return schema
