"""Pre-train from a recipe on the cluster the job runs in.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8270 --working-dir . -- \
        python jobs/pretrain.py --config recipe:simclr_mnist_demo run.epochs=20
"""
from _entry import main

from raycl.api import train
from raycl.config import load_config

main(__doc__, lambda a: train(load_config(a.config, a.overrides)))
