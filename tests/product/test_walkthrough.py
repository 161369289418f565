"""The docs' Fashion-MNIST walk-through (docs/guides/own-data.md), as a new user runs it: the commands
copied from the page, run by bash in a fresh working directory with relative paths, through the real CLI and real
Ray workers, on a slice of Debian's Fashion-MNIST (1,024 training and 256 test images)."""
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEB = "/usr/share/datasets/fashion-mnist"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not os.path.exists(f"{DEB}/t10k-images-idx3-ubyte.gz"),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install -y dataset-fashion-mnist)")]
SLICE = {"train": 1024, "t10k": 256}


def walkthrough() -> list[str]:
    """The section's bash block as commands (continuation lines joined, comments dropped)."""
    page = (ROOT / "docs" / "guides" / "own-data.md").read_text()
    section = page.split("## Fashion-MNIST end to end", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    joined = re.sub(r";\s*do\n\s*", "; do ", joined)  # the for loop written over two lines
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def sliced_idx(dest: pathlib.Path) -> None:
    """What the page's gunzip loop writes, cut to SLICE images (idx headers rewritten)."""
    for name in os.listdir(DEB):
        raw = gzip.open(f"{DEB}/{name}").read()
        images = "images" in name
        n = SLICE[name.split("-")[0]]
        header = bytearray(raw[: 16 if images else 8])
        header[4:8] = n.to_bytes(4, "big")
        body = raw[len(header):][: n * (784 if images else 1)]
        (dest / name.removesuffix(".gz")).write_bytes(bytes(header) + body)


def test_the_docs_walkthrough_runs_as_written_with_relative_paths(tmp_path):
    cmds = walkthrough()
    assert cmds[0].startswith("mkdir -p fm/FashionMNIST/raw && for f")
    cmds = ["", *cmds]  # the indices below count the page's first line as 1
    assert [c.split()[:3] for c in cmds[2:]] == [["raycl", "data", "convert"], ["raycl", "data", "convert"],
                                                 ["raycl", "train", "recipe:demo"],
                                                 ["raycl", "eval", "~/raycl_runs/fmnist"],
                                                 ["raycl", "eval", "~/raycl_runs/fmnist"],
                                                 ["raycl", "bench", "data"],
                                                 ["raycl", "linear", "~/raycl_runs/fmnist"],
                                                 ["raycl", "finetune", "~/raycl_runs/fmnist"],
                                                 ["raycl", "finetune", "~/raycl_runs/fmnist"],
                                                 ["raycl", "knn", "~/raycl_runs/fmnist"],
                                                 ["raycl", "export", "~/raycl_runs/fmnist"]]
    work = tmp_path / "work"
    (work / "fm" / "FashionMNIST" / "raw").mkdir(parents=True)
    sliced_idx(work / "fm" / "FashionMNIST" / "raw")   # in place of the gunzip loop: a slice
    # the recipes (recipe:demo, recipe:linear/fmnist) come with the package: the folder holds no file of raycl's
    runs = tmp_path / "runs"
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}

    def run(cmd):
        cmd = cmd.replace("~/raycl_runs", str(runs))
        if cmd.startswith("raycl train"):
            cmd += f" run.storage_path={runs}"
        p = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        return p

    for cmd in cmds[2:4]:
        run(cmd)
    train = run(cmds[4])
    assert "Traceback" not in train.stderr
    ckpt = [ln.split(": ", 1)[1] for ln in train.stdout.splitlines() if ln.startswith("checkpoint: ")]
    assert len(ckpt) == 1 and ckpt[0].startswith(str(runs / "fmnist" / "checkpoint_")), train.stdout[-2000:]
    model = json.loads(train.stdout.strip().splitlines()[-1])
    assert model["epoch"] == 2 and model["knn_top1"] > 0.3
    ev = run(cmds[5])
    out = json.loads(ev.stdout.strip().splitlines()[-1])
    for key in ("knn_top1", "linear_probe_top1", "random_init_knn_top1", "pixels_knn_top1", "pixels_linear_probe_top1"):
        assert 0.1 < out[key] <= 1.0, out
    assert "Traceback" not in ev.stderr   # (work this small prints no progress lines: tests/eval/test_eval_report.py)
    assert re.search(r"^raw pixels\s+0\.\d{4}\s+0\.\d{4}\s+\d+\.\d$", ev.stdout, re.M), ev.stdout
    # the shards hold paths relative to nothing: what was trained on is the slice, in this folder
    from raycl.api import load_checkpoint_model

    cfg, _ = load_checkpoint_model(ckpt[0])
    assert cfg.data.path == str(work / "shards" / "train") and cfg.data.eval_path == str(work / "shards" / "test")
    logreg = json.loads(run(cmds[6] + " --no-floors").stdout.strip().splitlines()[-1])
    assert cmds[6].endswith("--protocol knn,logreg") and 0.1 < logreg["logreg_top1"] <= 1.0 and logreg["logreg_c"] > 0
    assert logreg["knn_top1"] == out["knn_top1"]
    bench = run(cmds[7] + " --no-ray-data --no-train")
    assert json.loads(bench.stdout.strip().splitlines()[-1])["raycl"]["images_per_s"] > 0
    assert np.isfinite(out["knn_top1"])
    # the evaluation protocols on the same checkpoint (1 epoch each here; finetune is run by
    # tests/protocols/test_linear.py, here its two command lines are checked to parse as the page writes them)
    linear = json.loads(run(cmds[8] + " run.epochs=1").stdout.strip().splitlines()[-1])
    # one epoch is 4 steps here: the command's output is checked, not the head's accuracy (tests/protocols/test_linear.py)
    assert linear["linear_eval_best_epoch"] == 1 and linear["linear_eval_diverged"] is None, linear
    assert 0.0 <= linear["linear_eval_top1"] <= linear["linear_eval_top5"] <= 1.0, linear
    from raycl.cli import parse

    tuned, scratch = (parse(c.replace("~/raycl_runs", str(runs)).split()[1:]) for c in cmds[9:11])
    assert (tuned.label_fraction, tuned.from_scratch, scratch.from_scratch) == (0.1, False, True)
    knn = json.loads(run(cmds[11]).stdout.strip().splitlines()[-1])
    assert knn["knn_all_train_rows"] == 1024 and knn["knn_all_queries"] == 256, knn
    assert knn["knn_all_top1"] == out["knn_top1"], (knn, out)
    run(cmds[12])
    assert (work / "backbone.safetensors").stat().st_size > 100_000
