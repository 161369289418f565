"""The command-line reference as Markdown, written from the parser itself (the docs site's
"Command line" page), so it lists exactly the commands and flags ``raycl`` accepts."""

from __future__ import annotations

import argparse


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(p: argparse.ArgumentParser) -> dict[str, str]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _arguments(p: argparse.ArgumentParser) -> list[str]:
    rows = []
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.help == argparse.SUPPRESS:
            continue
        metavar = a.metavar if isinstance(a.metavar, str) else None
        name = ", ".join(a.option_strings) if a.option_strings else metavar or a.dest
        if a.option_strings and a.nargs != 0:
            name += f" {metavar or a.dest.upper()}"
        quiet = a.default in (None, argparse.SUPPRESS, False) or a.nargs == "*" or "default" in (a.help or "")
        default = "" if quiet else f" (default: {a.default})"
        help_text = (a.help or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {help_text}{default} |")
    return rows


def _command(path: str, p: argparse.ArgumentParser, summary: str, out: list[str]) -> None:
    subs = _subcommands(p)
    if not subs or path == "raycl":
        out += [f"### `{path}`", "", summary, "", "```text", p.format_usage().strip(), "```", ""]
        rows = _arguments(p)
        if rows:
            out += ["| argument | what |", "| --- | --- |", *rows, ""]
    helps = _helps(p)
    for name, child in subs.items():
        _command(f"{path} {name}", child, helps.get(name, ""), out)


def markdown() -> str:
    """Every command and subcommand: its one-line summary, usage and arguments."""
    from raycl.cli import parser

    out: list[str] = []
    _command("raycl", parser(), "Options every command takes.", out)
    return "\n".join(out) + "\n"
