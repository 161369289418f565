"""The docs site's generated pages are the code's own: every command and flag of the parser, every
config key of every section, every method's own keys, every recipe. The build itself
(`mkdocs build --strict`) runs in .ci/run; these tests check what the hook writes into the pages."""

import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def hook():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(rel: str) -> str:
    return hook().on_page_markdown((ROOT / "docs" / rel).read_text(), None, None, None)


def test_every_page_in_the_nav_exists_and_every_marker_is_expanded():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 20 and [p for p in nav if not (ROOT / "docs" / p).exists()] == []
    assert [p for p in nav if "<!-- raycl:" in page(p)] == []


def test_the_config_reference_lists_every_key_of_every_section():
    from raycl.config import SECTIONS

    text = page("reference/config.md")
    keys = [f"`{s}.{k}`" for s, model in SECTIONS.items() for k in model.model_fields]
    assert len(keys) > 60 and [k for k in keys if k not in text] == []


def test_the_cli_reference_lists_every_command_and_flag():
    import argparse

    from raycl.cli import parser

    text = page("reference/cli.md")

    def leaves(p, path):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, [a.option_strings[-1] for a in p._actions
                         if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
        for action in subs:
            for name, child in action.choices.items():
                yield from leaves(child, f"{path} {name}")

    commands = dict(leaves(parser(), "raycl"))
    assert len(commands) > 20
    assert [c for c in commands if f"### `{c}`" not in text] == []
    for cmd, flags in commands.items():
        section = text.split(f"### `{cmd}`", 1)[1].split("### ", 1)[0]
        assert [f for f in flags if f"`{f}" not in section] == [], cmd
    for cmd in ("raycl bench step", "raycl recipes", "raycl config show", "raycl data convert"):
        assert f"### `{cmd}`" in text


def test_every_method_has_a_page_with_its_own_config_table():
    from raycl.methods import REGISTRY

    evaluation = {"linear_eval", "finetune"}  # evaluation protocols: the evaluation guide documents them
    for name, cls in REGISTRY.items():
        if name in evaluation or not cls.__module__.startswith("raycl."):
            continue
        text = page(f"methods/{name}.md")
        own = [k for k in cls.Config.model_fields]
        assert [k for k in own if f"`method.{k}`" not in text] == [], name


def test_the_home_page_lists_every_recipe_that_ships():
    from raycl.recipes import names

    text = page("index.md")
    assert [n for n in names() if f"`recipe:{n}`" not in text] == []
