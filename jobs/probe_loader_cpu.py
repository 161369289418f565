"""Where training from Parquet loses time against memory, without Ray: a 1-thread training loop
(the demo model) fed by EpochLoader from the shards and from the same rows in memory, and the same
loop with / without a background thread decoding at the loader's pace. Pin it to one core:

    taskset -c 0 python jobs/probe_loader_cpu.py /tmp/fm_tv/train [--config recipe:demo]     (BENCHMARKS.md "Parquet ingest")
"""
import argparse
import threading
import time

import torch

from raycl.config import load_config
from raycl.data import EpochLoader
from raycl.data.decode import decode_image
from raycl.data.parquet import ParquetSource
from raycl.data.source import ArraySource
from raycl.data.views import views_for
from raycl.methods import MethodBatch, build_method

torch.set_num_threads(1)
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("shards", help="a folder of Parquet shards")
ap.add_argument("--config", default="recipe:demo", help="the model and views to train (batch 256 is set)")
args = ap.parse_args()
cfg = load_config(args.config, ["data.batch_size=256"])
model = build_method(cfg, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
views = views_for(cfg, model)
shards = ParquetSource(args.shards, 28, 1)
whole = shards.read_all()
memory = ArraySource(whole.images, whole.labels, whole.index)


def step(images, index, labels, k):
    loss, _ = model(MethodBatch(views(images, torch.Generator().manual_seed(k)), index, labels))
    opt.zero_grad()
    loss.backward()
    opt.step()


def from_loader(source, n=40):  # rank 0 of 2 workers: 128 rows a step
    t0 = time.perf_counter()
    for k, b in enumerate(EpochLoader(source, 256, 0, 2, 0, False, 65536, 16, 4, 1).batches(0)):
        step(torch.as_tensor(b.images), torch.from_numpy(b.index), torch.from_numpy(b.labels), k)
        if k + 1 == n:
            break
    return time.perf_counter() - t0


def with_decoder(background: bool, n=30):
    raw = shards.read_raw(0).payload
    x, idx, y = torch.from_numpy(whole.images[:128]), torch.arange(128), torch.zeros(128, dtype=torch.long)
    stop, done, steps, cpu = threading.Event(), [0], [0], [0.0]

    def decode():  # the loader's pace: at most 4 batches ahead of the step
        t = time.thread_time()
        while not stop.is_set():
            for data in raw[:128]:
                decode_image(data, 28, 1)
            done[0] += 1
            while done[0] > steps[0] + 4 and not stop.is_set():
                time.sleep(0.01)
        cpu[0] = time.thread_time() - t

    th = threading.Thread(target=decode) if background else None
    if th:
        th.start()
    t0 = time.perf_counter()
    for k in range(n):
        step(x, idx, y, k)
        steps[0] += 1
    dt = time.perf_counter() - t0
    stop.set()
    if th:
        th.join()
    return dt, cpu[0]


from_loader(memory, 3)
for bg in (False, True, False, True):
    dt, cpu = with_decoder(bg)
    print(f"30 steps, background decode thread {bg}: {dt:.2f} s (decode thread CPU {cpu:.2f} s)")
for src, name in ((shards, "shards"), (memory, "memory"), (memory, "memory"), (shards, "shards")):
    print(f"EpochLoader from {name}: {from_loader(src):.2f} s for 40 steps")
