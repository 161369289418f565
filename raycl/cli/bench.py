"""Subcommands that measure: the benchmarks, and raycl doctor."""

from __future__ import annotations

import json
import os

from raycl.cli.common import _address, _overrides
from raycl.errors import ConfigError


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures")
    bsub = p.add_subparsers(dest="bench_cmd", required=True)
    for add in (
        _bench_overhead_parser,
        _bench_lars_parser,
        _bench_step_parser,
        _bench_bank_parser,
        _bench_quality_parser,
        _bench_data_parser,
        _bench_linear_parser,
    ):
        add(bsub)


def _steps_and_repeats(c) -> None:
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--repeats", type=int, default=3)


def _bench_overhead_parser(bsub) -> None:
    c = bsub.add_parser("overhead", help="raycl step (Ray worker + DeepSpeed) vs a bare PyTorch loop")
    c.add_argument("--config", default=None, help="default: the demo config")
    _steps_and_repeats(c)
    _overrides(c)
    _address(c)
    c.set_defaults(handler=bench_overhead)


def bench_overhead(args) -> None:
    from raycl import api
    from raycl.bench import step as bench

    cfg = api.load_config(args.config or api.demo_config_path(), args.overrides)
    print(json.dumps(bench.overhead(cfg, args.steps, args.repeats, args.address)))


def _bench_lars_parser(bsub) -> None:
    c = bsub.add_parser("lars", help="ZeRO-aware LARS vs SGD step time, and the bytes LARS adds per step")
    c.add_argument("--config", default=None, help="default: the demo config")
    _steps_and_repeats(c)
    c.add_argument("--workers", type=int, default=2)
    _overrides(c)
    _address(c)
    c.set_defaults(handler=bench_lars)


def bench_lars(args) -> None:
    from raycl import api
    from raycl.bench import step as bench

    cfg = api.load_config(args.config or api.demo_config_path(), args.overrides)
    print(json.dumps(bench.lars(cfg, args.steps, args.repeats, args.workers, args.address)))


def _bench_step_parser(bsub) -> None:
    c = bsub.add_parser("step", help="raycl's step (Ray worker, DeepSpeed ZeRO-1/2, LARS, bf16) vs a bare PyTorch loop")
    c.add_argument("--arch", default="resnet18_cifar", help="resnet18_cifar or resnet50")
    c.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    c.add_argument("--zero", default="1,2", help="ZeRO stages to measure, comma-separated")
    _steps_and_repeats(c)
    _overrides(c)
    _address(c)
    c.set_defaults(handler=bench_step)


def bench_step(args) -> None:
    from raycl import api
    from raycl.bench import step as bench

    gpu = args.device == "cuda"
    base = [
        "optim.name=lars",
        "method.name=simclr",
        f"distributed.use_gpu={str(gpu).lower()}",
        f"distributed.precision={'bf16' if gpu else 'fp32'}",
    ]
    cfg = api.load_config(api.demo_config_path(), base + list(args.overrides))
    zero = [int(z) for z in args.zero.split(",")]
    for row in bench.step(cfg, args.arch, zero, args.steps, args.repeats, args.address):
        print(json.dumps(row))


def _bench_bank_parser(bsub) -> None:
    c = bsub.add_parser("bank", help="bank update + k-means + semi-hard sampling per step vs a naive sampler")
    c.add_argument("--n", type=int, default=100_000, help="bank rows (ImageNet: 1281167)")
    c.add_argument("--clusters", type=int, default=10_000)
    c.add_argument("--negatives", type=int, default=16_384)
    c.add_argument("--batch", type=int, default=256, help="per worker")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--gpu", action="store_true", help="run the workers on GPUs")
    _address(c)
    c.set_defaults(handler=bench_bank)


def bench_bank(args) -> None:
    from raycl import api
    from raycl.bench import step as bench

    cfg = api.load_config(api.demo_config_path(), [f"distributed.use_gpu={str(args.gpu).lower()}"])
    out = bench.bank(
        cfg, args.n, args.clusters, args.negatives, args.batch, args.workers, args.steps, address=args.address
    )
    print(json.dumps(out))


def _bench_quality_parser(bsub) -> None:
    c = bsub.add_parser(
        "quality", help="every method, same budget, several seeds: kNN / linear top-1 against both floors"
    )
    c.add_argument("--config", default=None, help="default: the demo config")
    c.add_argument("--methods", default="all", help="comma-separated method names (default: all)")
    c.add_argument("--seeds", default="0", help="comma-separated run seeds (default: 0)")
    c.add_argument(
        "--tune", nargs="?", const="", default=None, metavar="SWEEP_FILE", help="first choose each method's values "
        "of a sweep: space (SWEEP_FILE's, else the config's) on a validation split of the training rows",
    )  # fmt: skip
    c.add_argument("--out", default=None, help="JSON file of results, saved after every run; a rerun continues it")
    c.add_argument(
        "--reuse", action="append", default=[], metavar="RESULTS_FILE", help="copy the runs and floors another "
        "results file measured from the same config and seed instead of training them again (repeatable)",
    )  # fmt: skip
    _overrides(c)
    _address(c)
    c.set_defaults(handler=bench_quality)


def bench_quality(args) -> None:
    import dataclasses

    from raycl import api
    from raycl.quality.harness import presets, quality
    from raycl.quality.summary import format_orderings, format_summary

    seeds = _int_list("--seeds", args.seeds)
    tune = None
    if args.tune is not None:
        from raycl.config import from_user
        from raycl.tune import load_sweep

        if not args.tune and args.config is None:
            raise ConfigError("--tune: needs a sweep file (--tune FILE) or --config with a 'sweep:' section")
        raw, spec = load_sweep(args.config or api.demo_config_path(), args.overrides, args.tune or None)
        base = from_user(raw).to_dict()  # every default written out, as without --tune: --reuse compares them
        tune = {k: v for k, v in dataclasses.asdict(spec).items() if k != "name"}
    else:
        base = api.load_config(args.config or api.demo_config_path(), args.overrides).to_dict()
    names = list(presets()) if args.methods == "all" else args.methods.split(",")
    out = quality(base, names, seeds, args.address, tune=tune, out=args.out, reuse=args.reuse)
    print(format_summary(out["summary"]))
    if out["orderings"]:
        print("The papers' orderings (means over the seeds):\n" + format_orderings(out["orderings"]))
    print(json.dumps(out["summary"]))


def _int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag}: {text!r} repeats a value")
    return values


def _bench_linear_parser(bsub) -> None:
    c = bsub.add_parser("linear", help="linear evaluation's images/s vs pre-training's, same workers and data")
    c.add_argument("--config", default=None, help="default: the demo config")
    c.add_argument("--epochs", type=int, default=1, help="epochs of each run (default 1)")
    _overrides(c)
    _address(c)
    c.set_defaults(handler=bench_linear)


def bench_linear(args) -> None:
    from raycl import api
    from raycl.bench.protocols import linear_vs_pretraining

    if args.epochs < 1:
        raise ConfigError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    cfg = api.load_config(args.config or api.demo_config_path(), args.overrides)
    out = linear_vs_pretraining(cfg, args.epochs, args.address)
    print(
        f"{out['workers']} workers, batch {out['batch']}: pre-training ({out['method']}) "
        f"{out['pretraining_images_per_s']:,.0f} images/s, linear evaluation {out['linear_images_per_s']:,.0f} "
        f"images/s ({out['linear_over_pretraining']:.2f}x)"
    )
    print(json.dumps(out))


def _bench_data_parser(bsub) -> None:
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
    c.set_defaults(handler=bench_data)


def bench_data(args) -> None:
    from raycl.bench import data as bench

    if args.workers < 1 or args.batch < 1 or args.threads < 1 or args.train_rounds < 1:
        raise ConfigError("--workers, --batch, --threads and --train-rounds: expected integers >= 1")
    out = bench.checked_run(
        args.url, args.workers, args.batch, args.size, args.channels, threads=args.threads,
        ray_data_anchor=not args.no_ray_data, train=not args.no_train, train_overrides=args.overrides,
        train_rounds=args.train_rounds, say=lambda line: print(line, flush=True),
    )  # fmt: skip
    print(json.dumps(out))


def _doctor_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check and measure this node (or every GPU node of --address): one table")
    p.add_argument("--quick", action="store_true", help="sizes that fit in about 8 minutes on one GPU")
    p.add_argument("--out", default=None, help="folder for doctor.json and doctor.md (default: print only)")
    _overrides(p)
    _address(p)
    p.set_defaults(handler=doctor)


def doctor(args) -> None:
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ConfigError(f"--out: {args.out!r} is an existing file; give a folder")
    from raycl.doctor import run as bench

    rows = bench.doctor(args.quick, args.address, args.overrides)
    print(bench.table(rows))
    if args.out:
        for path in bench.write(rows, os.path.abspath(args.out), args.quick):
            print(f"wrote {path}")
