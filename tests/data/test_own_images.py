"""The README's "Your own images" lines, as a new user runs them: copied from the README, run by bash
in a fresh folder with relative paths, through the real CLI and real Ray workers, on a folder of
real colour photographs (crops of scikit-learn's two sample photos, one class each) of different
sizes, among them a PNG with alpha, a CMYK JPEG and a greyscale JPEG, and on an unlabeled folder."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def readme_lines() -> list[str]:
    """The section's bash block as commands (continuation lines joined, comments dropped)."""
    section = (ROOT / "README.md").read_text().split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def photo_folders(work: pathlib.Path, per_class: int = 80, unlabeled: int = 24) -> dict[str, int]:
    """photos/<class>/*: crops of 40-160 px of each sample photo, most JPEG, some PNG; the first three
    of each class an RGBA PNG, a CMYK JPEG and a greyscale JPEG. unlabeled/*: crops of both, flat."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # china.jpg, flower.jpg: 427 x 640 RGB
    rng = np.random.default_rng(0)

    def crop(photo: np.ndarray) -> Image.Image:
        side = int(rng.integers(40, 161))
        y, x = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        return Image.fromarray(photo[y : y + side, x : x + side])

    modes = {0: ("RGBA", "png"), 1: ("CMYK", "jpg"), 2: ("L", "jpg")}
    for name, photo in zip(("china", "flower"), photos):
        (work / "photos" / name).mkdir(parents=True)
        for i in range(per_class):
            mode, ext = modes.get(i, ("RGB", "png" if i % 4 == 3 else "jpg"))
            crop(photo).convert(mode).save(work / "photos" / name / f"{i:03d}.{ext}")
    (work / "unlabeled").mkdir()
    for i in range(unlabeled):
        crop(photos[i % 2]).save(work / "unlabeled" / f"{i:03d}.jpg")
    return {"photos": 2 * per_class, "unlabeled": unlabeled}


def test_the_readme_own_images_lines_run_as_written_on_colour_photos(tmp_path):
    cmds = readme_lines()
    assert [c.split()[:3] for c in cmds] == [["raycl", "data", "convert"], ["raycl", "data", "convert"],
                                             ["raycl", "train", "recipe:demo"], ["raycl", "eval", "~/raycl_runs/photos"]]
    assert "data.channels=3" in cmds[2] and "model.stem=imagenet" in cmds[2]
    work, runs = tmp_path / "work", tmp_path / "runs"
    work.mkdir()
    counts = photo_folders(work)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}

    def run(cmd: str) -> subprocess.CompletedProcess:
        cmd = cmd.replace("~/raycl_runs", str(runs))
        if cmd.startswith("raycl train"):
            cmd += f" run.storage_path={runs}"
        p = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        return p

    run(cmds[0])
    run(cmds[1])
    from raycl.data.parquet import ParquetSource

    labelled, flat = ParquetSource(str(work / "shards" / "photos"), 64, 3), ParquetSource(str(work / "shards" / "unlabeled"), 64, 3)
    assert len(labelled) == counts["photos"] and len(flat) == counts["unlabeled"]
    assert flat.scan()["labeled"] == 0 and labelled.scan()["labeled"] == counts["photos"]
    train = run(cmds[2])
    out = json.loads(train.stdout.strip().splitlines()[-1])
    assert out["epoch"] == 6 and np.isfinite(out["loss"]), out
    ev = json.loads(run(cmds[3]).stdout.strip().splitlines()[-1])
    for key in ("knn_top1", "linear_probe_top1", "random_init_knn_top1", "pixels_knn_top1"):
        assert 0.0 <= ev[key] <= 1.0, ev
    from raycl.api import load_checkpoint_model

    cfg, model = load_checkpoint_model(out["checkpoint"])
    assert cfg.data.channels == 3 and cfg.data.image_size == 64 and cfg.model.stem == "imagenet"
    assert cfg.data.path == str(work / "shards" / "photos")  # the relative path, made absolute on the driver
