"""mkdocs hook: pages hold markers that are replaced by text generated from raycl itself, so the
reference cannot fall behind the code.

    <!-- raycl:cli -->                   every command and flag, from the argument parser
    <!-- raycl:config -->                every config key, from the pydantic models
    <!-- raycl:method-config NAME -->    the keys of one method
    <!-- raycl:recipes -->               the recipes that ship with raycl
"""

import re


def _expand(match: re.Match) -> str:
    what, arg = match.group(1), (match.group(2) or "").strip()
    if what == "cli":
        from raycl.cli_doc import markdown

        return markdown()
    if what == "config":
        from raycl.config_doc import markdown

        return markdown()
    if what == "method-config":
        from raycl.config_doc import method_markdown

        return method_markdown(arg)
    if what == "recipes":
        from raycl.recipes import markdown

        return markdown()
    raise ValueError(f"docs: unknown marker raycl:{what}")


def on_page_markdown(markdown, page, config, files):
    return re.sub(r"<!-- raycl:([a-z-]+)( [^>]*)? -->", _expand, markdown)
