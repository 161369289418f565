"""Checkpoint layout and the checks that keep a resume honest.

A checkpoint directory holds:
    deepspeed/           engine.save_checkpoint output: module, optimizer partitions of every rank,
                         lr scheduler (written by all ranks into one directory)
    rng_rank{r}.pt       torch / numpy / python RNG state of rank r
    raycl_state.json     epoch, global_step, the resolved config and the model signature (rank 0)
    model.pt             plain state_dict + config, loadable without DeepSpeed or Ray (rank 0)
Ray Train registers a checkpoint only after every rank's upload finished, so a run killed
mid-write resumes from the previous complete one.
"""
from __future__ import annotations

import json
import os
import random

import numpy as np
import torch

from raycl.errors import CheckpointError

STATE_FILE = "raycl_state.json"
MODEL_FILE = "model.pt"
DS_DIR = "deepspeed"
DS_TAG = "raycl"
METHOD_STATE_FILE = "method_state.pt"   # state gathered from every worker (the whole memory bank)


def atomic_torch_save(obj, path: str) -> None:
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(directory: str, state: dict) -> None:
    with open(os.path.join(directory, STATE_FILE), "w") as fh:
        json.dump(state, fh, indent=1)


def read_state(directory: str) -> dict:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{directory!r} is not a raycl checkpoint (no {STATE_FILE})")
    with open(path) as fh:
        return json.load(fh)


def check_signature(saved: dict, current: dict, where: str) -> None:
    """Refuse a checkpoint of another method or model instead of loading part of it."""
    if saved["method"] != current["method"]:
        raise CheckpointError(f"checkpoint {where} was trained with method {saved['method']!r}, "
                              f"this run uses {current['method']!r}; use another run.name to start afresh")
    a, b = saved["shapes"], current["shapes"]
    missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    wrong = sorted(k for k in set(a) & set(b) if list(a[k]) != list(b[k]))
    if missing or extra or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensor(s) differ in shape, e.g. {k}: checkpoint {a[k]} vs model {b[k]}")
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing from the checkpoint, e.g. {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]}")
        raise CheckpointError(f"checkpoint {where} does not match this model ({'; '.join(parts)}); "
                              "use another run.name to start afresh")


def load_model_file(path: str) -> dict:
    """Read ``model.pt`` of a checkpoint directory (or the file itself)."""
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"no {MODEL_FILE} at {path!r}: pass a raycl checkpoint directory")
    return torch.load(path, map_location="cpu", weights_only=False)
