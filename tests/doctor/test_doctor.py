"""`raycl doctor`: on this CPU machine the --quick run goes end to end through a Ray task, every row
of the table is there (GPU-only rows skipped, saying why), the files it writes hold the same rows;
the GPU plan covers both precisions, channels_last, both model sizes, every ZeRO stage and both optimizers."""
import json

import pytest

from raycl.doctor.run import plan, table

CPU_ROWS = [
    ("versions", "info"), ("GPUs seen by torch", "info"), ("GPUs seen by Ray", "info"),
    ("all-reduce bus bandwidth", "ok"), ("all-gather bus bandwidth", "ok"),
    ("step vs bare PyTorch", "ok"), ("step vs bare PyTorch", "ok"), ("step vs bare PyTorch", "ok"),
    ("step vs bare PyTorch", "skipped"), ("step vs bare PyTorch", "skipped"),
    ("bank step (update + k-means + semi-hard)", "ok"),
    ("decode, CPU (Pillow, 1 thread)", "ok"), ("decode, GPU (nvJPEG)", "skipped"),
    ("step fed by the loader vs from memory", "ok"),
]


@pytest.mark.slow
def test_doctor_quick_on_a_cpu_node_reports_every_row_and_writes_them(ray_cluster, tmp_path, capsys):
    from raycl.cli import main

    assert main(["doctor", "--quick", "--out", str(tmp_path / "doc")]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = json.loads((tmp_path / "doc" / "doctor.json").read_text())["rows"]
    assert [(r["check"], r["status"]) for r in rows] == CPU_ROWS, [(r["check"], r["status"], r["note"]) for r in rows]
    assert out[-2:] == [f"wrote {tmp_path / 'doc' / 'doctor.json'}", f"wrote {tmp_path / 'doc' / 'doctor.md'}"]
    assert out[:-2] == table(rows).splitlines()
    assert (tmp_path / "doc" / "doctor.md").read_text().count("\n| ") == len(rows) + 2   # header, rule, a line a row
    for r in rows:
        if r["status"] == "skipped":
            assert r["note"] and r["value"] is None
        if r["check"] == "step vs bare PyTorch" and r["status"] == "ok":   # images/s both ways, ratio = speed
            assert r["unit"] == "images/s" and r["value"] > 0 and r["reference"] > 0
            assert r["ratio"] == pytest.approx(r["value"] / r["reference"], rel=0.01)
        if r["check"].endswith("bus bandwidth"):
            assert r["value"] > 0 and r["setting"].startswith("gloo, 2 CPU processes")
    bank = next(r for r in rows if r["check"].startswith("bank step"))
    assert bank["unit"] == "ms" and bank["value"] > 0 and bank["ratio"] > 0
    assert len({r["node"] for r in rows}) == 1


def test_the_gpu_plan_covers_precisions_models_zero_stages_and_optimizers():
    gpu = plan(quick=True, gpus=1)
    labels = " / ".join(label for label, _ in gpu["variants"])
    for needed in ("fp32", "bf16", "channels_last", "ResNet-18 32 px", "ResNet-50 224 px", "ZeRO-0", "ZeRO-1",
                   "ZeRO-2", "LARS", "SGD"):
        assert needed in labels, needed
    assert gpu["bank"]["n"] == 1_281_167 and gpu["collectives"] is None          # one GPU: no bus to measure
    assert plan(quick=True, gpus=8)["collectives"][:2] == ("nccl", 8)
    for label, overrides in gpu["variants"]:          # every variant is a valid config on a GPU node
        assert "distributed.use_gpu=true" in overrides
        assert ("ZeRO-" + overrides[[o.split("=")[0] for o in overrides].index("distributed.zero_stage")][-1]) in label
    full = plan(quick=False, gpus=1)
    assert len(full["variants"]) > len(gpu["variants"]) and full["steps"] > gpu["steps"]


def test_the_markdown_table_escapes_pipes_and_has_a_line_per_row():
    rows = [{"node": "n1", "check": "c", "setting": "a|b", "value": 1.5, "unit": "ms", "reference": None,
             "ratio": None, "status": "ok", "note": ""}]
    md = table(rows, markdown=True).splitlines()
    assert md[0].startswith("| node | check") and md[2] == "| n1 | c | a\\|b | 1.50 ms |  |  | ok |  |"
