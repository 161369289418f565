"""``raycl`` command line: one small function per subcommand (its arguments, then a thin call into
``raycl.api`` or a benchmark). Each imports what it needs inside itself, so ``raycl --help`` and a
mistyped flag answer without loading torch, Ray or DeepSpeed."""

from __future__ import annotations

import argparse
import os
import sys

from raycl.cli import bench, evaluate, files, run
from raycl.cli.common import Parser
from raycl.errors import RayclError


def parser() -> argparse.ArgumentParser:
    from raycl import __version__

    ap = Parser(prog="raycl", description="Distributed self-supervised learning on Ray + DeepSpeed")
    ap.add_argument("--version", action="version", version=f"raycl {__version__}")
    ap.add_argument("--verbose", action="store_true", help="same as RAYCL_VERBOSE=1: show every line Ray prints")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (
        run._train_parser,
        run._demo_parser,
        run._sweep_parser,
        run._views_parser,
        evaluate._eval_parser,
        evaluate._protocols_parser,
        evaluate._export_parser,
        evaluate._knn_parser,
        evaluate._linear_parser,
        evaluate._finetune_parser,
        files._config_parser,
        files._recipes_parser,
        files._data_parser,
        bench._bench_parser,
        bench._doctor_parser,
    ):
        add(sub)
    return ap


def parse(argv=None) -> argparse.Namespace:
    """argparse stops taking positionals once an option follows them (``raycl finetune CK
    --label-fraction 0.1 run.epochs=5``): overrides given after options join the others."""
    ap = parser()
    args, extra = ap.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv=None) -> int:
    try:
        args = parse(argv)
        if args.verbose:
            os.environ["RAYCL_VERBOSE"] = "1"  # read by the console wherever a run starts
        args.handler(args)
        return 0
    except BrokenPipeError:  # `raycl recipes | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RayclError as e:
        # One line whatever the message holds (a YAML error, a path with a newline).
        more = f" (the workers' full output: {e.details})" if e.details else ""
        print("raycl: error: " + " ".join(str(e).split()) + more, file=sys.stderr)
        from raycl.train.console import verbose

        if verbose() and e.__traceback__ is not None:
            import traceback

            traceback.print_exception(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
