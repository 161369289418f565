"""InterCLR held back on 2 workers, for tests/helpers/elastic_cluster_run.py.

A returned node reaches Ray Train's elastic policy through Ray's autoscaling coordinator, which
refreshes what the cluster holds every 20 s (``TICK_INTERVAL_S``, Ray 2.60): a fast machine can
finish all the steps left on 2 workers before the grow is seen. Each step
taken on 2 workers waits here, so the 2-worker phase outlasts that refresh on any machine; on 3 workers
(and on 1) it is InterCLR unchanged. Found by the ``raycl.methods`` entry point in the dist-info folder
beside this file (no install: the folder is on PYTHONPATH)."""
import time

from raycl import collectives as dist
from raycl.methods import InterCLR

PAUSE_ON_TWO_WORKERS_S = 0.5


class PacedInterCLR(InterCLR):
    name = "interclr_paced"

    def forward(self, batch):
        if dist.world_size() == 2:
            time.sleep(PAUSE_ON_TWO_WORKERS_S)
        return super().forward(batch)
