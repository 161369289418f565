"""What every subcommand shares: the parser class that turns a bad flag into one error line, and
the overrides and cluster arguments."""

from __future__ import annotations

import argparse

from raycl.errors import ConfigError


def _overrides(p):
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. optim.base_lr=0.1 distributed.workers=4",
    )


def _address(p):
    p.add_argument("--address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local instance)")
    p.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="show every line Ray and DeepSpeed print (default: raycl's own, real warnings and errors)",
    )  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad flag is a ConfigError: main prints it as the one ``raycl: error:``
    line every other bad input gets (argparse's own is a usage block, then the error)."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")
