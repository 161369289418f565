"""Subcommands that evaluate or export a checkpoint: eval, linear, finetune, knn, export."""

from __future__ import annotations

import json
import sys

from raycl.cli.common import _address, _overrides
from raycl.errors import ConfigError


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
