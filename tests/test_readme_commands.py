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
