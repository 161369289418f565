"""Prints how far apart runs at different worker counts end (BENCHMARKS.md, "Elastic runs"):
relative L2 distance over the parameters after 12 steps of ZeRO-2 + LARS with sync BN, for
uninterrupted runs on 1, 2 and 3 workers, a run moved from 3 to 2 workers at step 4, and same-count
stop-and-resume runs. Usage: PYTHONPATH=tests/helpers:tests/train python tests/helpers/exactness_across_counts.py [overrides...],
e.g. optim.base_lr=0.02."""
import sys
import tempfile

import ray
from test_train_ray import final_state, relative_distance

from raycl.config import load_config
from raycl.train.trainer import fit, local_ray_options


def main(extra):
    ray.init(**local_ray_options(4, {}))
    tmp = tempfile.mkdtemp()
    base = ["data.num_samples=256", "model.width=8", "model.proj_hidden_dim=32", "model.proj_out_dim=16",
            f"run.storage_path={tmp}", "run.log_every=100", "distributed.torch_threads=1", "optim.warmup_epochs=0",
            "run.epochs=2", "data.batch_size=48", "distributed.grad_accum=2", "distributed.zero_stage=2",
            "optim.name=lars", "model.sync_bn=true", "eval.every_epochs=100", *extra]

    def run(name, *segments):
        for workers, steps in segments:
            res = fit(load_config(None, base + [f"distributed.workers={workers}", f"run.name={name}"]
                                  + ([f"run.stop_after_steps={steps}"] if steps else [])))
        return final_state(res)

    one, two, three = run("one", (1, None)), run("two", (2, None)), run("three", (3, None))
    moved = run("moved", (3, 4), (2, None))
    rows = {"2 vs 1": (two, one), "3 vs 1": (three, one), "2 vs 3": (two, three),
            "3 -> 2 at step 4 vs 2": (moved, two), "3 -> 2 at step 4 vs 3": (moved, three),
            "2 -> 2 at step 4 vs 2": (run("r22", (2, 4), (2, None)), two)}
    for name, (a, b) in rows.items():
        print(f"{name:28s} {relative_distance(a, b):.2e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
