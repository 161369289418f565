"""Subcommands about files: config show/schema, recipes, data convert."""

from __future__ import annotations

import json

from raycl.cli.common import _overrides


def _config_parser(sub) -> None:
    p = sub.add_parser("config", help="config tools")
    csub = p.add_subparsers(dest="config_cmd", required=True)
    c = csub.add_parser("show", help="print the resolved, validated config")
    c.add_argument("config", help="a YAML config file or recipe:NAME")
    _overrides(c)
    c.set_defaults(handler=config_show)
    c = csub.add_parser("schema", help="print the JSON Schema of a config file (for an editor's completion)")
    c.add_argument("--markdown", action="store_true", help="the README's table of every key instead")
    c.set_defaults(handler=config_schema)


def config_show(args) -> None:
    from raycl import api

    print(api.load_config(args.config, args.overrides).to_yaml(), end="")


def config_schema(args) -> None:
    from raycl.config import schema
    from raycl.config_doc import markdown

    print(markdown() if args.markdown else json.dumps(schema(), indent=2), end="\n" if not args.markdown else "")


def _recipes_parser(sub) -> None:
    p = sub.add_parser("recipes", help="list the recipes that ship with raycl (name them as recipe:NAME)")
    p.add_argument("name", nargs="?", default=None, help="print this recipe's YAML instead")
    p.set_defaults(handler=recipes)


def recipes(args) -> None:
    from raycl import recipes as shipped

    if args.name is not None:
        path = shipped.resolve(args.name if args.name.startswith(shipped.PREFIX) else shipped.PREFIX + args.name)
        print(open(path, encoding="utf-8").read(), end="")
        return
    width = max(len(n) for n in shipped.names()) + len(shipped.PREFIX)
    for name in shipped.names():
        print(f"{shipped.PREFIX + name:<{width}}  {shipped.summary(name)[:100]}")


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="data tools")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("convert", help="image folder or torchvision:NAME -> Parquet shards (index, image, label)")
    c.add_argument(
        "image_folder",
        metavar="SOURCE",
        help="an image folder (class/image.png) or torchvision:NAME (FashionMNIST, CIFAR10, ...)",
    )
    c.add_argument("dest_url")
    c.add_argument("--root", help="torchvision:NAME: the folder torchvision reads (and --download writes)")
    c.add_argument("--download", action="store_true", help="torchvision:NAME: download if absent (needs network)")
    c.add_argument("--split", default="train", help="torchvision:NAME: train or test (or the dataset's split name)")
    c.add_argument("--rows-per-shard", type=int, default=10_000)
    c.add_argument(
        "--on-corrupt",
        choices=["error", "skip"],
        default="error",
        help="a file that does not decode: stop (default) or leave it out and list it",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the row order written (rows are shuffled)")
    c.add_argument(
        "--keep-order",
        action="store_true",
        help="write rows in sorted path order (class by class) instead of a seeded random order",
    )
    c.set_defaults(handler=data_convert)


def data_convert(args) -> None:
    from raycl import api

    out = api.convert(
        args.image_folder, args.dest_url, root=args.root, split=args.split, download=args.download,
        rows_per_shard=args.rows_per_shard, on_corrupt=args.on_corrupt, shuffle=not args.keep_order,
        seed=args.seed,
    )  # fmt: skip
    print(json.dumps(out))
