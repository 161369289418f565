"""Ray Tune sweep over a recipe's ``sweep:`` section (ASHA on kNN top-1); resumes if interrupted.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8270 --working-dir . -- \
        python jobs/sweep.py --config recipe:sweeps/simclr_mnist_lr
"""
from _entry import main

from raycl.api import sweep

main(__doc__, lambda a: sweep(a.config, a.overrides))
