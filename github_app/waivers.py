"""Waivers: store, look up and revoke them, and parse the `/gonogo ...` PR comment commands.

A waiver lets one failed rule pass (as passed-with-waiver) for one repository and environment,
optionally one commit, until it expires. Expired and revoked waivers are simply not returned by
``active_waivers``, so they stop counting by themselves. The policy's waivers.max_lifetime in force
when a deployment is decided bounds each waiver further, from the time it was given (``granted_at``);
the rules engine applies that cap, since only it knows the policy. Who may waive is checked by the
caller (the reviewers policy); this module records who did.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from github_app import audit
from github_app.db.models import Waiver as WaiverRow
from rules.catalog import RULES_BY_ID
from rules.types import Waiver

log = logging.getLogger(__name__)

CommandAction = Literal["approve", "reject", "override", "waive"]
ACTIONS: tuple[CommandAction, ...] = ("approve", "reject", "override", "waive")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_COMMAND_LINE = re.compile(r"^/gonogo(?=\s|$)(?P<rest>.*)$", re.IGNORECASE)
_FENCE = re.compile(r"^(`{3,}(?!.*`)|~{3,})")  # a backtick fence's info string holds no backtick
ENV_WIDE = "--env-wide"
USAGE = (
    "Commands: `/gonogo approve [environment] <reason>`, `/gonogo reject [environment] <reason>`, "
    "`/gonogo override [environment] <reason>`, "
    "`/gonogo waive [environment] GNG-SEC-001 [--env-wide | for <full commit sha>] until 2026-12-31 <reason>`."
)


class WaiverError(Exception):
    """A waiver cannot be stored or changed; the message says why and what to do."""


class CommandError(ValueError):
    """A `/gonogo` command is malformed; the message is meant as the reply to its author."""


@dataclass(frozen=True)
class Command:
    """A parsed `/gonogo` command from a PR comment."""

    action: CommandAction
    reason: str
    rule_id: str | None = None  # waive only
    until: datetime | None = None  # waive only: the waiver expires at this moment (UTC)
    sha: str | None = None  # waive only, optional: the one commit it covers
    line: str = ""  # the command line as written
    environment: str | None = None  # the deployment it answers, as named: "production" or "production@1a2b3c4"
    env_wide: bool = False  # waive only: cover every commit of the environment, not just the waiting one


# --- commands -------------------------------------------------------------------------------


def _command_line(body: str) -> str | None:
    """The first line that is a `/gonogo` command as GitHub shows it: a paragraph line of its own.

    Not a command: quotes (quoting someone's command is not issuing it), and text GitHub renders as code or
    does not render at all: fenced blocks (closed only by a fence of the same character at least as long, or
    never), indented code (four spaces or a tab), ``<pre>`` blocks and HTML comments, where a command would act
    without anyone reading it on the page.
    """
    fence: tuple[str, int] | None = None  # the open fence's character and length
    hidden: str | None = None  # the HTML block the line is inside: "-->" or "</pre>"
    for raw in body.splitlines():
        indent = len(raw.expandtabs(4)) - len(raw.expandtabs(4).lstrip())
        line = raw.strip()
        if fence is not None:
            char, length = fence
            if indent < 4 and len(line) >= length and line == char * len(line):
                fence = None
            continue
        if hidden is not None:
            if hidden in line.lower():
                hidden = None
            continue
        if indent >= 4:
            continue
        opening = _FENCE.match(line)
        if opening:
            char = opening.group(1)[0]
            fence = (char, len(line) - len(line.lstrip(char)))
            continue
        if _COMMAND_LINE.match(line):
            return line
        lower = line.lower()
        if "<!--" in lower and "-->" not in lower[lower.rindex("<!--"):]:
            hidden = "-->"
        elif lower.startswith("<pre") and "</pre>" not in lower:
            hidden = "</pre>"
    return None


def parse_until(text: str, now: datetime | None = None) -> datetime:
    """Read a waiver end: a date means through the end of that day (UTC); a date-time is taken as written."""
    value = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise CommandError(f"`{value}` is not a valid date: write YYYY-MM-DD, e.g. 2026-12-31") from None
        try:
            until = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        except OverflowError:
            raise CommandError(f"`{value}` is too far away: a waiver must end within the policy's "
                               "waivers.max_lifetime (30 days unless the policy says otherwise)") from None
    else:
        try:
            until = datetime.fromisoformat(value)
        except ValueError:
            raise CommandError(f"`{value}` is not a date: write YYYY-MM-DD, e.g. 2026-12-31") from None
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
    try:
        until = until.astimezone(UTC)
    except OverflowError:
        raise CommandError(f"`{value}` is too far away: a waiver must end within the policy's "
                           "waivers.max_lifetime (30 days unless the policy says otherwise)") from None
    if now is not None and until <= now:
        raise CommandError(f"`{value}` is already past: a waiver must end in the future")
    return until


def _rule_id(token: str) -> str:
    rule_id = token.upper()
    if rule_id in RULES_BY_ID:
        return rule_id
    close = difflib.get_close_matches(rule_id, list(RULES_BY_ID), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else " See docs/rules.md for the rule ids."
    raise CommandError(f"`{token}` is not a gonogo rule id.{hint}")


def _parse_waive(rest: str, now: datetime | None) -> Command:
    tokens = rest.split(None, 1)
    if not tokens:
        raise CommandError("`/gonogo waive` needs a rule id, an end date and a reason, e.g. "
                           "`/gonogo waive GNG-SEC-001 until 2026-12-31 fix scheduled in JIRA-12`")  # fmt: skip
    env_wide = False
    if tokens[0].lower() == ENV_WIDE:  # the scope word may come before the rule id as well as after it
        env_wide = True
        tokens = tokens[1].split(None, 1) if len(tokens) > 1 else []
        if not tokens:
            raise CommandError(f"`{ENV_WIDE}` must be followed by the rule id to waive")
    rule_id = _rule_id(tokens[0])
    rest = tokens[1] if len(tokens) > 1 else ""
    sha = None
    words = rest.split(None, 2)
    if words and words[0].lower() == ENV_WIDE:
        env_wide = True
        rest = rest.split(None, 1)[1] if len(words) > 1 else ""
        words = rest.split(None, 2)
    if words and words[0].lower() == "for":
        if env_wide:
            raise CommandError(f"write either `{ENV_WIDE}` (every commit) or `for <sha>` (one commit), not both")
        if len(words) < 2:
            raise CommandError("`for` must be followed by the full commit sha the waiver covers")
        sha = words[1].lower()
        if not _SHA.match(sha):
            raise CommandError(f"`{words[1]}` is not a full commit sha: give all 40 hex characters")
        rest = words[2] if len(words) > 2 else ""
        words = rest.split(None, 2)
    if not words or words[0].lower() != "until":
        raise CommandError(f"write `until YYYY-MM-DD` after {rule_id}: every waiver must expire, "
                           f"e.g. `/gonogo waive {rule_id} until 2026-12-31 <reason>`")  # fmt: skip
    if len(words) < 2:
        raise CommandError("`until` must be followed by a date, e.g. 2026-12-31")
    until = parse_until(words[1], now)
    reason = words[2].strip() if len(words) > 2 else ""
    if not reason:
        raise CommandError(f"say why {rule_id} may be waived: put the reason after the date")
    return Command("waive", reason, rule_id=rule_id, until=until, sha=sha, env_wide=env_wide)


def _environment_word(tail: str, environments: Collection[str]) -> tuple[str | None, str]:
    """Split a leading environment name (optionally ``@<sha prefix>``) off the command's arguments."""
    words = tail.split(None, 1)
    if not words:
        return None, tail
    name = words[0].split("@", 1)[0].lower()
    if name and name in {e.lower() for e in environments}:
        return words[0], words[1] if len(words) > 1 else ""
    return None, tail


def parse_command(body: str, *, now: datetime | None = None, environments: Collection[str] = ()) -> Command | None:
    """Find and parse the `/gonogo` command in a comment; None if there is none, CommandError if malformed.

    ``environments`` are the names a command may start with to say which deployment it answers.
    """
    line = _command_line(body)
    if line is None:
        return None
    match = _COMMAND_LINE.match(line)
    assert match is not None  # _command_line only returns matching lines
    rest = match.group("rest").strip()
    if not rest:
        raise CommandError(f"`/gonogo` needs an action. {USAGE}")
    verb, *more = rest.split(None, 1)
    tail = more[0] if more else ""
    action = next((a for a in ACTIONS if a == verb.lower()), None)
    if action is None:
        raise CommandError(f"`{verb}` is not a gonogo command. {USAGE}")
    environment, tail = _environment_word(tail.strip(), environments)
    if action == "waive":
        cmd = _parse_waive(tail.strip(), now)
    else:
        reason = tail.strip()
        if not reason:
            raise CommandError(f"`/gonogo {action}` needs a reason after it, e.g. `/gonogo {action} checked the "
                               "failing test with the owning team`; it is recorded in the audit log")  # fmt: skip
        cmd = Command(action, reason)
    return Command(cmd.action, cmd.reason, cmd.rule_id, cmd.until, cmd.sha, line, environment, cmd.env_wide)


# --- storage --------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_model(row: WaiverRow) -> Waiver:
    """Turn a stored waiver into the value the rules engine applies."""
    return Waiver(rule_id=row.rule_id, environment=row.environment, sha=row.sha, expires_at=_utc(row.expires_at),
                  reason=row.reason, author=row.author, author_id=row.author_id,
                  granted_at=_utc(row.created_at))  # fmt: skip


def add_waiver(
    session: Session | Connection,
    repository: str,
    environment: str,
    rule_id: str,
    sha: str | None,
    expires_at: datetime,
    reason: str,
    author: str,
    *,
    now: datetime | None = None,
    deployment_key: str | None = None,
    author_id: int | None = None,
) -> WaiverRow:
    """Store a waiver and its audit entry in the caller's transaction; raise WaiverError if it is invalid."""
    moment = _utc(now or datetime.now(UTC))
    expires = _utc(expires_at)
    if rule_id not in RULES_BY_ID:
        raise WaiverError(f"unknown rule id {rule_id!r}; see docs/rules.md for the catalog")
    if not reason.strip():
        raise WaiverError("a waiver needs a reason; it is shown in every report while the waiver is active")
    if not environment.strip() or not repository.strip() or not author.strip():
        raise WaiverError("a waiver needs a repository, an environment and an author")
    if expires <= moment:
        raise WaiverError(f"the waiver would already be expired ({expires.isoformat()}); choose a future date")
    if sha is not None and not _SHA.match(sha.lower()):
        raise WaiverError(f"{sha!r} is not a full commit sha (40 hex characters)")
    values = {
        "repository": repository, "environment": environment, "rule_id": rule_id,
        "sha": sha.lower() if sha else None, "expires_at": expires, "reason": reason.strip(), "author": author,
        "author_id": author_id, "created_at": moment, "revoked_at": None, "revoked_by": None,
    }  # fmt: skip
    if isinstance(session, Session):
        row = WaiverRow(**values)
        session.add(row)
        session.flush()
    else:
        new_id = session.execute(insert(WaiverRow).values(**values).returning(WaiverRow.id)).scalar_one()
        row = WaiverRow(id=new_id, **values)
    audit.append(session, "waiver", repository=repository, deployment_key=deployment_key, actor=author, data={
        "action": "add", "waiver_id": row.id, "rule_id": rule_id, "environment": environment, "sha": values["sha"],
        "expires_at": expires, "reason": values["reason"], "author_id": author_id,
    }, now=moment)  # fmt: skip
    log.info("waiver.added", extra={"waiver_id": row.id, "repository": repository, "environment": environment,
                                    "rule_id": rule_id})  # fmt: skip
    return row


def _active_filter(now: datetime) -> ColumnElement[bool]:
    return and_(WaiverRow.revoked_at.is_(None), WaiverRow.expires_at > now)


def active_waivers(
    engine_or_session: Engine | Session | Connection, repository: str, environment: str, sha: str, now: datetime
) -> list[Waiver]:
    """The waivers that apply now to this repository, environment and commit (expired and revoked ones excluded)."""
    moment = _utc(now)
    stmt = (
        select(WaiverRow)
        .where(
            # GitHub's names ignore case: a waiver typed as acme/shop for Production applies to Acme/Shop's production
            func.lower(WaiverRow.repository) == repository.lower(),
            func.lower(WaiverRow.environment).in_([environment.lower(), "*"]),
            or_(WaiverRow.sha.is_(None), WaiverRow.sha == sha.lower()),
            _active_filter(moment),
        )
        .order_by(WaiverRow.id)
    )
    if isinstance(engine_or_session, Session):
        rows = list(engine_or_session.scalars(stmt))
    else:
        with Session(bind=engine_or_session) as session:
            rows = list(session.scalars(stmt))
    return [to_model(r) for r in rows]


def list_waivers(
    engine: Engine, *, repository: str | None = None, environment: str | None = None, include_inactive: bool = False,
    now: datetime | None = None,
) -> list[WaiverRow]:  # fmt: skip
    """Waivers for the CLI, newest first; only active ones unless ``include_inactive``."""
    stmt = select(WaiverRow).order_by(WaiverRow.id.desc())
    if repository:
        stmt = stmt.where(func.lower(WaiverRow.repository) == repository.lower())
    if environment:
        stmt = stmt.where(func.lower(WaiverRow.environment) == environment.lower())
    if not include_inactive:
        stmt = stmt.where(_active_filter(_utc(now or datetime.now(UTC))))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(stmt))


def _revoke_in(conn: Connection | Session, waiver_id: int, by: str, moment: datetime) -> WaiverRow:
    c = conn.connection() if isinstance(conn, Session) else conn
    result = c.execute(
        update(WaiverRow).where(WaiverRow.id == waiver_id, WaiverRow.revoked_at.is_(None))
        .values(revoked_at=moment, revoked_by=by)
    )  # fmt: skip
    row = c.execute(select(WaiverRow.__table__).where(WaiverRow.id == waiver_id)).first()
    if row is None:
        raise WaiverError(f"no waiver with id {waiver_id}; see `gonogo waivers list --all`")
    if result.rowcount != 1:
        raise WaiverError(f"waiver {waiver_id} was already revoked by {row.revoked_by} at {_utc(row.revoked_at):%Y-%m-%d %H:%M} UTC")
    audit.append(c, "waiver", repository=row.repository, actor=by, data={
        "action": "revoke", "waiver_id": waiver_id, "rule_id": row.rule_id, "environment": row.environment,
        "sha": row.sha, "expires_at": _utc(row.expires_at),
    }, now=moment)  # fmt: skip
    log.info("waiver.revoked", extra={"waiver_id": waiver_id, "repository": row.repository})
    return WaiverRow(**dict(row._mapping))


def revoke(
    engine_or_session: Engine | Session | Connection, waiver_id: int, *, by: str, now: datetime | None = None
) -> WaiverRow:
    """Revoke a waiver (it stops applying at once) and record who did it; raise WaiverError if impossible."""
    moment = _utc(now or datetime.now(UTC))
    if isinstance(engine_or_session, Engine):
        with engine_or_session.begin() as conn:
            return _revoke_in(conn, waiver_id, by, moment)
    return _revoke_in(engine_or_session, waiver_id, by, moment)
