"""kNN and linear-probe evaluation of a pre-trained checkpoint (frozen encoder, held-out split).

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8270 --working-dir . -- \
        python jobs/linear_eval.py --checkpoint ~/raycl_runs/simclr-mnist/checkpoint_...
"""
from _entry import main

from raycl.api import evaluate

main(__doc__, lambda a: evaluate(a.checkpoint), config_required=False)
