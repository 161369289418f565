"""InterCLR's initialisation, measured: kNN top-1 and k-means churn per epoch for bank_init
features vs random, lambda 0.75 vs 1.0, against SimCLR and the random-init floor, at the quickstart
notebook's budget (built-in digits, 6 epochs, 2 workers). Prints one JSON line per run, then a table.

    python jobs/bench_interclr_init.py [--config recipe:demo] [--epochs 6] [--variants features,random,...] [overrides]
"""
import argparse
import json
import time

from raycl import api
from raycl.config import load_config

INTERCLR = ["method.name=interclr", "method.temperature=0.1", "method.bank_size=4000", "method.num_clusters=100",
            "method.num_negatives=1024"]
VARIANTS = {
    "interclr features l0.75": INTERCLR + ["method.bank_init=features"],
    "interclr random l0.75": INTERCLR + ["method.bank_init=random"],
    "interclr features l1.0": INTERCLR + ["method.bank_init=features", "method.lam=1.0"],
    "interclr random l1.0": INTERCLR + ["method.bank_init=random", "method.lam=1.0"],
    "simclr": [],
}


def run(config: str, name: str, overrides: list[str], epochs: int) -> dict:
    cfg = load_config(config, [f"run.epochs={epochs}", "run.checkpoint_every=1",
                                               f"run.name=bench-init-{int(time.time())}", *overrides])
    t0 = time.perf_counter()
    out = api.train(cfg)
    hist = api.history(out["checkpoint"])
    return {"run": name, "knn": [round(h["knn_top1"], 4) for h in hist],
            "churn": [round(h["method/churn"], 3) for h in hist if "method/churn" in h],
            "loss": [round(h["loss"], 3) for h in hist], "wall_s": round(time.perf_counter() - t0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="recipe:demo", help="the base config every variant overrides")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    api.connect()
    rows = []
    for name in a.variants.split(","):
        rows.append(run(a.config, name, VARIANTS[name] + a.overrides, a.epochs))
        print(json.dumps(rows[-1]), flush=True)
    floor = api.random_init_knn(load_config(a.config, a.overrides))
    print(f"\n{'run':<26} kNN top-1 per epoch (floor {floor:.4f}){'':<20} churn per epoch")
    for r in rows:
        print(f"{r['run']:<26} {' '.join(f'{k:.3f}' for k in r['knn']):<52} {' '.join(f'{c:.2f}' for c in r['churn'])}")


if __name__ == "__main__":
    main()
