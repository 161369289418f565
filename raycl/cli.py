"""``raycl`` command line. Every subcommand is a thin call into ``raycl.api``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from raycl.errors import ConfigError, DataError, RayclError


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


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="raycl", description="Distributed contrastive learning on Ray + DeepSpeed")
    ap.add_argument("--verbose", action="store_true", help="same as RAYCL_VERBOSE=1: show every line Ray prints")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="pre-train from a YAML config")
    p.add_argument("config")
    _overrides(p)
    _address(p)

    p = sub.add_parser("demo", help="SimCLR on the built-in digits with 2 CPU workers, then evaluation")
    _overrides(p)
    p.add_argument("--resume", action="store_true", help="continue the newest demo run instead of starting a new one")
    _address(p)

    p = sub.add_parser("sweep", help="Ray Tune sweep over the config's 'sweep:' space, ASHA early stopping")
    p.add_argument("config")
    _overrides(p)
    _address(p)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the sweep directory exists")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all cores)")

    p = sub.add_parser("views", help="a picture of a few training images and each view the method makes of them")
    p.add_argument("config")
    _overrides(p)
    p.add_argument("--out", default="views.png", help="PNG to write (default: views.png)")
    p.add_argument("--samples", type=int, default=6, help="rows of the grid (default: 6)")

    p = sub.add_parser("eval", help="kNN and linear probe of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--no-linear", action="store_true", help="kNN only")
    p.add_argument(
        "--no-floors", action="store_true", help="skip the random-init and raw-pixel floors (one extraction less)"
    )

    p = sub.add_parser("config", help="config tools")
    csub = p.add_subparsers(dest="config_cmd", required=True)
    c = csub.add_parser("show", help="print the resolved, validated config")
    c.add_argument("config")
    _overrides(c)

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

    p = sub.add_parser("bench", help="benchmarks that print figures")
    bsub = p.add_subparsers(dest="bench_cmd", required=True)
    c = bsub.add_parser("overhead", help="raycl step (Ray worker + DeepSpeed) vs a bare PyTorch loop")
    c.add_argument("--config", default=None, help="default: the demo config")
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--repeats", type=int, default=3)
    _overrides(c)
    _address(c)
    c = bsub.add_parser("lars", help="ZeRO-aware LARS vs SGD step time, and the bytes LARS adds per step")
    c.add_argument("--config", default=None, help="default: the demo config")
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--workers", type=int, default=2)
    _overrides(c)
    _address(c)
    c = bsub.add_parser("step", help="raycl's step (Ray worker, DeepSpeed ZeRO-1/2, LARS, bf16) vs a bare PyTorch loop")
    c.add_argument("--arch", default="resnet18_cifar", help="resnet18_cifar or resnet50")
    c.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    c.add_argument("--zero", default="1,2", help="ZeRO stages to measure, comma-separated")
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--repeats", type=int, default=3)
    _overrides(c)
    _address(c)
    c = bsub.add_parser("bank", help="bank update + k-means + semi-hard sampling per step vs a naive sampler")
    c.add_argument("--n", type=int, default=100_000, help="bank rows (ImageNet: 1281167)")
    c.add_argument("--clusters", type=int, default=10_000)
    c.add_argument("--negatives", type=int, default=16_384)
    c.add_argument("--batch", type=int, default=256, help="per worker")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--gpu", action="store_true", help="run the workers on GPUs")
    _address(c)
    c = bsub.add_parser("quality", help="every method, same budget, built-in digits: kNN / linear top-1, images/s")
    c.add_argument("--config", default=None, help="default: the demo config")
    c.add_argument("--methods", default="all", help="comma-separated method names (default: all)")
    _overrides(c)
    _address(c)
    c = bsub.add_parser(
        "data",
        help="Parquet ingest: decode-once, raycl's loader, Ray Data, and raycl train from "
        "the shards vs from memory, on the same shards and CPUs",
    )
    c.add_argument("url", help="Parquet shards (raycl data convert)")
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--batch", type=int, default=256)
    c.add_argument("--size", type=int, default=28, help="image size the rows decode to")
    c.add_argument("--channels", type=int, default=1, choices=[1, 3])
    c.add_argument("--threads", type=int, default=1, help="decode threads per worker")
    c.add_argument("--no-ray-data", action="store_true", help="skip the Ray Data anchor")
    c.add_argument("--no-train", action="store_true", help="skip the training epochs")
    c.add_argument(
        "--train-rounds",
        type=int,
        default=2,
        help="one-epoch runs from the shards and from memory, each, in ABBA order (default 2)",
    )
    _overrides(c)
    return ap


def run(args) -> int:
    from raycl import api
    from raycl.config import load_config, local_path
    from raycl.eval.report import floors_table
    from raycl.train.console import summary

    if args.cmd == "config":
        print(load_config(args.config, args.overrides).to_yaml(), end="")
    elif args.cmd == "train":
        out = api.train(load_config(args.config, args.overrides), args.address)
        ends = {"run_dir": out["run_dir"], "checkpoint": out["checkpoint"]}
        print(summary(api.history(out["checkpoint"]) if out.get("checkpoint") else [], ends))
        print(json.dumps(out))
    elif args.cmd == "sweep":
        from raycl.tune import format_table

        if args.num_cpus is not None and args.num_cpus < 1:
            raise ConfigError(f"--num-cpus: expected an integer >= 1, got {args.num_cpus}")
        out = api.sweep(args.config, args.overrides, args.address, resume=not args.no_resume, num_cpus=args.num_cpus)
        print(format_table(out))
        print(json.dumps(out))
    elif args.cmd == "demo":
        out = api.demo(args.overrides, args.address, resume=args.resume)
        print(summary(api.history(out["checkpoint"]), {"checkpoint": out["checkpoint"]}))
        print(floors_table(out))
        print(json.dumps(out))
    elif args.cmd == "views":
        print(json.dumps(api.views(load_config(args.config, args.overrides), args.out, args.samples)))
    elif args.cmd == "eval":
        out = api.evaluate(args.checkpoint, linear=not args.no_linear, with_floors=not args.no_floors)
        print(floors_table(out))
        print(json.dumps(out))
    elif args.cmd == "data":
        from raycl.data.parquet import convert_image_folder
        from raycl.data.torchvision_source import convert_torchvision, is_torchvision

        def log(m):
            print(m, file=sys.stderr, flush=True)

        if is_torchvision(args.image_folder):
            if not args.root:
                raise DataError(f"--root: {args.image_folder} needs the folder torchvision reads it from")
            out = convert_torchvision(
                args.image_folder,
                args.dest_url,
                args.root,
                args.split,
                args.download,
                args.rows_per_shard,
                shuffle=not args.keep_order,
                seed=args.seed,
                log=log,
            )
        else:
            out = convert_image_folder(
                args.image_folder,
                args.dest_url,
                args.rows_per_shard,
                args.on_corrupt,
                log=log,
                shuffle=not args.keep_order,
                seed=args.seed,
            )
        print(json.dumps(out))
    elif args.cmd == "bench":
        from raycl.bench import step as bench

        if args.bench_cmd == "step":
            gpu = args.device == "cuda"
            base = [
                "optim.name=lars",
                "method.name=simclr",
                f"distributed.use_gpu={str(gpu).lower()}",
                f"distributed.precision={'bf16' if gpu else 'fp32'}",
            ]
            cfg = load_config(api.demo_config_path(), base + list(args.overrides))
            for row in bench.step(
                cfg, args.arch, [int(z) for z in args.zero.split(",")], args.steps, args.repeats, args.address
            ):
                print(json.dumps(row))
            return 0
        if args.bench_cmd == "data":
            from raycl.bench import data as bench_data

            if args.workers < 1 or args.batch < 1 or args.threads < 1 or args.train_rounds < 1:
                raise ConfigError("--workers, --batch, --threads and --train-rounds: expected integers >= 1")
            from raycl.data.parquet import ParquetSource

            url = local_path(args.url)  # Ray Data's readers run in other working directories
            # one clear line when there are no shards, or when labels or indices are bad (as train checks)
            ParquetSource(url, args.size, args.channels).scan()
            out = bench_data.run(
                url,
                args.workers,
                args.batch,
                args.size,
                args.channels,
                threads=args.threads,
                ray_data_anchor=not args.no_ray_data,
                train=not args.no_train,
                train_overrides=args.overrides,
                train_rounds=args.train_rounds,
                say=lambda m: print(m, flush=True),
            )
            print(json.dumps(out))
            return 0
        if args.bench_cmd == "bank":
            cfg = load_config(api.demo_config_path(), [f"distributed.use_gpu={str(args.gpu).lower()}"])
            print(
                json.dumps(
                    bench.bank(
                        cfg,
                        args.n,
                        args.clusters,
                        args.negatives,
                        args.batch,
                        args.workers,
                        args.steps,
                        address=args.address,
                    )
                )
            )
            return 0
        cfg = load_config(args.config or api.demo_config_path(), args.overrides)
        if args.bench_cmd == "quality":
            from raycl.bench.quality import PRESETS, quality
            from raycl.bench.quality import format_table as quality_table

            names = list(PRESETS) if args.methods == "all" else args.methods.split(",")
            rows = quality(cfg.to_dict(), names, args.address)
            print(quality_table(rows))
            print(json.dumps(rows))
            return 0
        if args.bench_cmd == "lars":
            out = bench.lars(cfg, args.steps, args.repeats, args.workers, args.address)
        else:
            out = bench.overhead(cfg, args.steps, args.repeats, args.address)
        print(json.dumps(out))
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.verbose:
        os.environ["RAYCL_VERBOSE"] = "1"  # read by the console wherever a run starts
    try:
        return run(args)
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
