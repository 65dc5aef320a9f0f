"""The README's command table names every command the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

import click

from github_app.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(group: click.Group, prefix: str = "gonogo") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix} {name}")
        else:
            names.append(f"{prefix} {name}")
    return names


def test_readme_command_table_lists_every_command() -> None:
    text = README.read_text()
    table = text[text.index("## Commands"):text.index("\n## ", text.index("## Commands") + 1)]
    rows = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `gonogo")]
    listed = set()
    for cell in rows:
        for snippet in re.findall(r"`gonogo ([^`]*)`", cell):
            names: list[str] = []
            for token in snippet.split():
                if token.startswith(("-", "[")):
                    break
                if token == "/" or token.isupper():  # a separator or an argument such as FILE
                    continue
                names.append(token)
            group, subcommands = names[0], names[1:]
            listed |= {f"gonogo {group} {sub}" for sub in subcommands} or {f"gonogo {group}"}
    missing = [name for name in _commands(cli) if name not in listed]
    assert not missing, f"README's command table lacks {missing}"


def _help_texts(group: click.Group) -> list[str]:
    texts = [group.help or ""]
    for command in group.commands.values():
        if isinstance(command, click.Group):
            texts += _help_texts(command)
        else:
            texts.append(command.help or "")
        texts += [getattr(p, "help", None) or "" for p in command.params]
    return texts


def test_help_names_only_files_in_the_repository() -> None:
    root = README.parent
    named = {m for text in _help_texts(cli) for m in re.findall(r"[\w./-]+\.md\b", text)}
    assert all((root / name).is_file() for name in named), f"help refers to files not in the repository: {named}"
    assert "TEAM.md" not in " ".join(_help_texts(cli))


def test_code_and_docs_name_no_file_outside_the_repository() -> None:
    """Docstrings, messages and docs refer to the repository's own files (docs/history.md), never to notes
    kept beside it (DESIGN.md, TEAM.md, STYLE.md)."""
    root = README.parent
    sources = [p for folder in ("github_app", "rules", "scorer", "tests", "benchmarks", "docs")
               for p in (root / folder).rglob("*")
               if p.suffix in (".py", ".md") and p != Path(__file__)] + [README]  # this test names them  # fmt: skip
    missing = {}
    for path in sources:
        for name in set(re.findall(r"\b[A-Z][A-Z_]+\.md\b", path.read_text(encoding="utf-8"))):
            if not ((root / name).is_file() or (path.parent / name).is_file()):
                missing.setdefault(name, []).append(str(path.relative_to(root)))
    assert not missing, f"files named that the repository does not hold: {missing}"
