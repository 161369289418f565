"""Linear evaluation of a pre-trained checkpoint's frozen backbone, as a Ray Train run (the same
protocol as ``raycl linear``): ``--config`` is the linear recipe (default: SGD lr 0.1, cosine,
10 epochs), the overrides change any key of the evaluation run.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8270 --working-dir . -- \
        python jobs/linear_eval.py --checkpoint ~/raycl_runs/simclr-mnist --config recipe:linear/moco_imagenet
"""
from _entry import main

from raycl.api import linear

main(__doc__, lambda a: linear(a.checkpoint, a.config, a.overrides), config_required=False, checkpoint_required=True)
