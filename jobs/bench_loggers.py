"""Cost of each logger, one process: open, one log call of 3 scalars (mean of 200), close.

    python jobs/bench_loggers.py            (BENCHMARKS.md "Watchable runs")
"""
import tempfile
import time

from raycl.train.loggers import Loggers

for name in ("tensorboard", "mlflow", "wandb"):
    d = tempfile.mkdtemp(prefix="raycl-loggers-")
    t = time.perf_counter()
    lg = Loggers([name], d, "bench", {"run": {"name": "bench"}}, None)
    opened = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(200):
        lg.log({"step/loss": 1.0, "step/lr": 0.1, "step/images_per_s": 400.0}, s)
    per = (time.perf_counter() - t) / 200
    t = time.perf_counter()
    lg.close()
    print(f"{name}: open {opened:.2f} s, log (3 scalars) {per * 1e3:.2f} ms, close {time.perf_counter() - t:.2f} s")
