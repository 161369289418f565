"""Subcommands that train or show what training sees: train, demo, sweep, views."""

from __future__ import annotations

import json

from raycl.cli.common import _address, _overrides
from raycl.errors import ConfigError


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="pre-train from a YAML config")
    p.add_argument("config", help="a YAML config file (any fsspec URL) or recipe:NAME (see raycl recipes)")
    _overrides(p)
    _address(p)
    p.set_defaults(handler=train)


def train(args) -> None:
    from raycl import api
    from raycl.train.console import summary

    out = api.train(api.load_config(args.config, args.overrides), args.address)
    ends = {"run_dir": out["run_dir"], "checkpoint": out["checkpoint"]}
    print(summary(api.history(out["checkpoint"]) if out.get("checkpoint") else [], ends))
    print(json.dumps(out))


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="SimCLR on the built-in digits with 2 CPU workers, then evaluation")
    _overrides(p)
    p.add_argument("--resume", action="store_true", help="continue the newest demo run instead of starting a new one")
    _address(p)
    p.set_defaults(handler=demo)


def demo(args) -> None:
    from raycl import api
    from raycl.eval.report import floors_table
    from raycl.train.console import summary

    out = api.demo(args.overrides, args.address, resume=args.resume)
    print(summary(api.history(out["checkpoint"]), {"checkpoint": out["checkpoint"]}))
    print(floors_table(out))
    print(json.dumps(out))


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="Ray Tune sweep over the config's 'sweep:' space, ASHA early stopping")
    p.add_argument("config", help="a YAML config file (any fsspec URL) or recipe:NAME (see raycl recipes)")
    _overrides(p)
    _address(p)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the sweep directory exists")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all cores)")
    p.set_defaults(handler=sweep)


def sweep(args) -> None:
    from raycl import api
    from raycl.tune import format_table

    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError(f"--num-cpus: expected an integer >= 1, got {args.num_cpus}")
    out = api.sweep(args.config, args.overrides, args.address, resume=not args.no_resume, num_cpus=args.num_cpus)
    print(format_table(out))
    print(json.dumps(out))


def _views_parser(sub) -> None:
    p = sub.add_parser("views", help="a picture of a few training images and each view the method makes of them")
    p.add_argument("config", help="a YAML config file (any fsspec URL) or recipe:NAME (see raycl recipes)")
    _overrides(p)
    p.add_argument("--out", default="views.png", help="PNG to write (default: views.png)")
    p.add_argument("--samples", type=int, default=6, help="rows of the grid (default: 6)")
    p.set_defaults(handler=views)


def views(args) -> None:
    from raycl import api

    print(json.dumps(api.views(api.load_config(args.config, args.overrides), args.out, args.samples)))
