"""Entry point for ``ray job submit``: pre-train from a recipe on the cluster the job runs in.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/pretrain.py --config jobs/configs/simclr_mnist_demo.yaml run.epochs=20
"""
import argparse
import json
import sys

from raycl.api import train
from raycl.config import load_config
from raycl.errors import RayclError

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("overrides", nargs="*")
args = ap.parse_args()
try:
    # Inside a Ray job RAY_ADDRESS is set, so train() joins the job's cluster.
    print(json.dumps(train(load_config(args.config, args.overrides))))
except RayclError as e:
    print(f"raycl: error: {e}", file=sys.stderr)
    sys.exit(2)
