"""Subcommands that evaluate or export a checkpoint: eval, protocols, linear, finetune, knn, export."""

from __future__ import annotations

import json
import sys

from raycl.cli.common import _address, _overrides
from raycl.errors import ConfigError


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint by any registered protocol (raycl protocols)")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest)")
    p.add_argument(
        "--protocol",
        default=None,
        help="protocols to run, comma-separated (default knn,rank,linear_probe; `raycl protocols` lists them), "
        "e.g. knn,logreg for Kornblith et al.'s regularised logistic regression",
    )
    p.add_argument("--no-linear", action="store_true", help="kNN and effective rank only (--protocol knn,rank)")
    p.add_argument(
        "--no-floors", action="store_true", help="skip the random-init and raw-pixel floors (one extraction less)"
    )
    p.add_argument("--config", default=None, help="linear_eval, finetune: a recipe (recipe:linear/NAME)")
    p.add_argument("--label-fraction", type=float, default=None, help="finetune: share of each class's labeled rows")
    p.add_argument("--from-scratch", action="store_true", help="finetune: the same network from random init")
    p.add_argument("--workers", type=int, default=None, help="knn_all: Ray Train workers (default 2)")
    _address(p)
    p.set_defaults(handler=evaluate)


def evaluate(args) -> None:
    from raycl import api
    from raycl.eval.report import floors_table

    if args.no_linear and args.protocol:
        raise ConfigError("--no-linear: give either it or --protocol")
    names = "knn,rank" if args.no_linear else (args.protocol or ",".join(api.DEFAULT))
    options = {"recipe": args.config, "label_fraction": args.label_fraction, "from_scratch": args.from_scratch,
               "workers": args.workers, "address": args.address}  # fmt: skip
    out = api.evaluate(args.checkpoint, names, not args.no_floors, **options)
    print(floors_table(out))
    print(json.dumps(out))


def _protocols_parser(sub) -> None:
    p = sub.add_parser("protocols", help="the evaluation protocols raycl eval --protocol takes")
    p.set_defaults(handler=list_protocols)


def list_protocols(args) -> None:
    from raycl import api

    for name, cls in sorted(api.protocols().items()):
        kind = "frozen features" if cls.frozen else "a Ray Train run"
        print(f"{name:<14} {kind:<16} {cls.metrics[0]:<18} {cls.summary}")


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

    out = api.linear(args.checkpoint, args.config, args.overrides, args.address)
    trained_summary(out, "linear_eval")
    if out["linear_eval_diverged"]:
        sys.exit(1)


def trained_summary(out: dict, metric: str) -> None:
    """The epochs of a trained protocol's run, its last and best top-1, and the result as JSON."""
    from raycl import api
    from raycl.train.console import summary

    epochs = api.history(out[f"{metric}_checkpoint"])
    if out[f"{metric}_diverged"]:  # the epochs' losses stay; a diverged head's top-1 is chance, never a figure
        epochs = [{k: v for k, v in m.items() if not k.startswith(f"{metric}_top")} for m in epochs]
    where = {"run_dir": out[f"{metric}_run_dir"], "checkpoint": out[f"{metric}_checkpoint"]}
    print(summary(epochs, where))
    if out[f"best_{metric}_top1"] is not None:  # None: the held-out rows hold no label, or the head diverged
        print(f"{metric} top-1: last {out[f'{metric}_top1']:.4f}, best {out[f'best_{metric}_top1']:.4f} "
              f"(epoch {out[f'{metric}_best_epoch']}); top-5: last {out[f'{metric}_top5']:.4f}")  # fmt: skip
    print(json.dumps(out))


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

    out = api.finetune(args.checkpoint, args.label_fraction, args.from_scratch, args.config, args.overrides,
                       args.address)  # fmt: skip
    trained_summary(out, "finetune")


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
        f"kNN over {out['knn_all_train_rows']:,} training rows ({out['knn_all_workers']} workers, "
        f"k {out['knn_all_k']}): top-1 {out['knn_all_top1']:.4f}, top-5 {out['knn_all_top5']:.4f} on "
        f"{out['knn_all_queries']:,} held-out rows"
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
