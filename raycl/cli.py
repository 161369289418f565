"""``raycl`` command line: one small function per subcommand (its arguments, then a thin call into
``raycl.api`` or a benchmark). Each imports what it needs inside itself, so ``raycl --help`` and a
mistyped flag answer without loading torch, Ray or DeepSpeed."""

from __future__ import annotations

import argparse
import json
import os
import sys

from raycl.errors import ConfigError, RayclError


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


def parser() -> argparse.ArgumentParser:
    from raycl import __version__

    ap = Parser(prog="raycl", description="Distributed self-supervised learning on Ray + DeepSpeed")
    ap.add_argument("--version", action="version", version=f"raycl {__version__}")
    ap.add_argument("--verbose", action="store_true", help="same as RAYCL_VERBOSE=1: show every line Ray prints")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (
        _train_parser,
        _demo_parser,
        _sweep_parser,
        _views_parser,
        _eval_parser,
        _export_parser,
        _knn_parser,
        _linear_parser,
        _finetune_parser,
        _config_parser,
        _recipes_parser,
        _data_parser,
        _bench_parser,
        _doctor_parser,
    ):
        add(sub)
    return ap


# -- one function per subcommand: its arguments, then what it does (a call into raycl.api) ---------


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


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="kNN and linear probe of a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument("--no-linear", action="store_true", help="kNN only")
    p.add_argument(
        "--protocol",
        default="linear",
        choices=["linear", "logreg"],
        help="linear: softmax by SGD (the kNN monitor's companion); logreg: L2-regularised logistic regression, "
        "its strength chosen on a held-out fifth of the training rows (Kornblith et al.)",
    )
    p.add_argument(
        "--no-floors", action="store_true", help="skip the random-init and raw-pixel floors (one extraction less)"
    )
    p.set_defaults(handler=evaluate)


def evaluate(args) -> None:
    from raycl import api
    from raycl.eval.report import floors_table

    out = api.evaluate(args.checkpoint, not args.no_linear, not args.no_floors, args.protocol)
    print(floors_table(out))
    print(json.dumps(out))


def _linear_parser(sub) -> None:
    p = sub.add_parser("linear", help="linear evaluation of a checkpoint's frozen backbone, as a Ray Train run")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument(
        "--config", default=None, help="a recipe of optim/run/data/distributed sections (recipe:linear/NAME)"
    )
    _overrides(p)
    _address(p)
    p.set_defaults(handler=linear)


def linear(args) -> None:
    from raycl import api
    from raycl.train.console import summary

    out = api.linear(args.checkpoint, args.config, args.overrides, args.address)
    epochs = api.history(out["checkpoint"])
    if out["diverged"]:  # the epochs' losses stay; a diverged head's top-1 is chance, never a figure
        epochs = [{k: v for k, v in m.items() if not k.startswith("linear_top")} for m in epochs]
    print(summary(epochs, {"run_dir": out["run_dir"], "checkpoint": out["checkpoint"]}))
    if out["best_linear_top1"] is not None:  # None: the held-out rows hold no label, or the head diverged
        print(f"linear top-1: last {out['linear_top1']:.4f}, best {out['best_linear_top1']:.4f} "
              f"(epoch {out['best_epoch']}); top-5: last {out['linear_top5']:.4f}")  # fmt: skip
    print(json.dumps(out))
    if out["diverged"]:
        sys.exit(1)


def _finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune the whole network on a class-balanced label subset (Ray Train)")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument("--label-fraction", type=float, required=True, help="share of each class's labeled rows, (0, 1]")
    p.add_argument("--from-scratch", action="store_true", help="the same architecture from random init: the baseline")
    p.add_argument("--config", default=None, help="a recipe: optim/run/data/distributed sections")
    _overrides(p)
    _address(p)
    p.set_defaults(handler=finetune)


def finetune(args) -> None:
    from raycl import api
    from raycl.train.console import summary

    out = api.finetune(args.checkpoint, args.label_fraction, args.from_scratch, args.config, args.overrides,
                       args.address)  # fmt: skip
    print(summary(api.history(out["checkpoint"]), {"run_dir": out["run_dir"], "checkpoint": out["checkpoint"]}))
    print(json.dumps(out))


def _knn_parser(sub) -> None:
    p = sub.add_parser("knn", help="weighted kNN over every training row, features split across Ray workers")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers, each holding its share (default 2)")
    p.add_argument("--k", type=int, default=None, help="neighbours (default: the run's eval.knn_k)")
    p.add_argument("--temperature", type=float, default=None, help="default: the run's eval.knn_temperature")
    _address(p)
    p.set_defaults(handler=knn)


def knn(args) -> None:
    from raycl import api

    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k: expected an integer >= 1, got {args.k}")
    if args.temperature is not None and not args.temperature > 0:
        raise ConfigError(f"--temperature: expected a number > 0, got {args.temperature}")
    out = api.knn(args.checkpoint, args.workers, args.k, args.temperature, args.address)
    print(
        f"kNN over {out['train_rows']:,} training rows ({out['workers']} workers, k {out['k']}): "
        f"top-1 {out['knn_top1']:.4f}, top-5 {out['knn_top5']:.4f} on {out['queries']:,} held-out rows"
    )
    print(json.dumps(out))


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="a checkpoint's backbone alone, as tensors (safetensors or torchvision .pth)")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument("out", help="file to write, e.g. backbone.safetensors or resnet50.pth")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "torchvision"],
                   help="safetensors (default, any backbone) or torchvision (a state_dict torchvision's "
                   "resnet18/resnet50 loads, for backbones of its shape)")  # fmt: skip
    p.set_defaults(handler=export)


def export(args) -> None:
    from raycl import api

    print(json.dumps(api.export(args.checkpoint, args.out, args.format)))


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
