"""Checkpoint layout and the checks that keep a resume honest.

A checkpoint directory holds:
    deepspeed/           engine.save_checkpoint output: module, optimizer partitions of every rank,
                         lr scheduler (written by all ranks into one directory)
    rng_rank{r}.pt       torch / numpy / python RNG state of rank r
    raycl_state.json     epoch, global_step, the resolved config and the model signature (rank 0)
    model.pt             plain state_dict + config, loadable without DeepSpeed or Ray (rank 0)
    method_state.pt      the memory bank and k-means state gathered from every worker (rank 0)
    zero_state.pt        ZeRO-1/2 fp32 master weights and optimizer state per parameter, so a run
                         resumes on another worker count (rank 0; raycl.train.zero_state)
Ray Train registers a checkpoint only after every rank's upload finished, so a run killed
mid-write resumes from the previous complete one.
"""

from __future__ import annotations

import json
import os
import random
import re

import numpy as np
import torch

from raycl.config import stored_config
from raycl.errors import CheckpointError, ConfigError
from raycl.files import safe_load
from raycl.methods import build_method

STATE_FILE = "raycl_state.json"
MODEL_FILE = "model.pt"
DS_DIR = "deepspeed"
DS_TAG = "raycl"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's registry of complete checkpoints
METHOD_STATE_FILE = "method_state.pt"  # state gathered from every worker (the whole memory bank)
ZERO_STATE_FILE = "zero_state.pt"  # ZeRO-1/2 optimizer state per parameter (any worker count)


def atomic_torch_save(obj, path: str) -> None:
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def rng_state() -> dict:
    """Every RNG as tensors and plain types, so it loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": list(random.getstate()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(directory: str, state: dict) -> None:
    path = os.path.join(directory, STATE_FILE)
    with open(path + ".tmp", "w") as fh:
        json.dump(state, fh, indent=1)
    os.replace(path + ".tmp", path)


def read_state(directory: str) -> dict:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{directory!r} is not a raycl checkpoint (no {STATE_FILE})")
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path!r} is truncated or not JSON ({e}); the checkpoint is incomplete") from None
    missing = [
        k for k in ("epoch", "global_step", "config", "signature") if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise CheckpointError(f"{path!r} lacks {', '.join(missing)}; not a raycl checkpoint state")
    return state


def registered_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint directories of a run that Ray Train registered as complete (named in its
    checkpoint manager snapshot, written after every worker's upload), oldest first. A directory
    Ray is still copying into is not among them."""
    snap = os.path.join(run_dir, RAY_SNAPSHOT)
    if not os.path.exists(snap):
        return []
    try:
        with open(snap, encoding="utf-8") as fh:
            text = fh.read()
        json.loads(text)
    except (OSError, ValueError):
        return []  # being rewritten: nothing registered can be read from it now
    names = sorted(set(re.findall(r"checkpoint_[0-9A-Za-z_.:-]+", text)))
    return [os.path.join(run_dir, n) for n in names if os.path.isdir(os.path.join(run_dir, n))]


def check_signature(saved: dict, current: dict, where: str) -> None:
    """Refuse a checkpoint of another method or model instead of loading part of it."""
    if saved["method"] != current["method"]:
        raise CheckpointError(
            f"checkpoint {where} was trained with method {saved['method']!r}, "
            f"this run uses {current['method']!r}; use another run.name to start afresh"
        )
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
        raise CheckpointError(
            f"checkpoint {where} does not match this model ({'; '.join(parts)}); use another run.name to start afresh"
        )


def latest_checkpoint(run_dir: str) -> str | None:
    """The registered checkpoint of a run directory with the most steps, None when it has none."""
    best, best_step = None, -1
    for c in registered_checkpoints(run_dir):
        step = read_state(c)["global_step"]
        if step > best_step:
            best, best_step = c, step
    return best


def model_file(path: str) -> str:
    """The ``model.pt`` of a checkpoint directory, of the newest checkpoint of a run directory, or
    the file itself, as an absolute path; one CheckpointError when there is none."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, MODEL_FILE)):
        path = latest_checkpoint(path) or path
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"no {MODEL_FILE} at {path!r}: pass a raycl checkpoint or run directory")
    return path


def load_model_file(path: str) -> dict:
    """Read ``model_file(path)``: {"config", "state_dict"}, loaded with weights_only=True."""
    path = model_file(path)
    payload = safe_load(path, "model file")
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("config"), dict)
        or not isinstance(payload.get("state_dict"), dict)
    ):
        raise CheckpointError(
            f"model file {path!r} is not a raycl model (expected a dict with 'config' and "
            "'state_dict'; a bare state_dict lacks the config that built it)"
        )
    return payload


def check_state_dict(state_dict: dict, model: torch.nn.Module, method: str, where: str) -> None:
    """``check_signature`` for a plain state_dict: refuse weights of another shape before loading."""
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{where}: entry {bad[0]!r} of the state_dict is not a tensor")
    check_signature(
        {"method": method, "shapes": {k: list(v.shape) for k, v in state_dict.items()}},
        {"method": method, "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}},
        where,
    )


def load_checkpoint_model(path: str):
    """(config, method) from a raycl checkpoint directory, on CPU, without Ray or DeepSpeed."""
    payload = load_model_file(os.path.expanduser(path))
    try:
        cfg = stored_config(payload["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: the config stored in model.pt is not valid: {e}") from None
    method = build_method(cfg, cfg.data.channels)
    check_state_dict(payload["state_dict"], method, cfg.method.name, path)
    method.load_state_dict(payload["state_dict"])
    return cfg, method
