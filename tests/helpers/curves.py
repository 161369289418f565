"""Read back what the loggers wrote, with readers independent of raycl's writers."""
import glob
import json
import os
import struct


def tensorboard_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file under ``log_dir`` (TensorBoard's own reader,
    which applies a resumed writer's purge)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def wandb_records(run_file: str) -> list:
    """The protobuf records of a wandb .wandb file (a LevelDB-style log: 7-byte file header, 32 KiB
    blocks, records of crc32 / length / type FULL=1, FIRST=2, MIDDLE=3, LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, part = open(run_file, "rb").read(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
    return out


def wandb_history(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """{key: [(step, value), ...]} over every offline run file under ``log_dir``/wandb, and the run ids."""
    hist: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(glob.glob(os.path.join(log_dir, "wandb", "offline-run-*", "run-*.wandb"))):
        for rec in wandb_records(f):
            if rec.WhichOneof("record_type") != "history":
                continue
            row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            for k, v in row.items():
                if not k.startswith("_"):
                    hist.setdefault(k, []).append((row["_step"], v))
    return hist


def wandb_run_ids(log_dir: str) -> set[str]:
    return {os.path.basename(f)[4:-6] for f in glob.glob(os.path.join(log_dir, "wandb", "offline-run-*", "run-*.wandb"))}
