"""ZeRO-1/2 optimizer state written by 3 workers loads on 2 (raycl.train.zero_state): real DeepSpeed
engines in 3 and then 2 gloo processes, checked against DeepSpeed's own per-rank partition files."""
import glob
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

BASE = ["data.num_samples=256", "data.batch_size=48", "model.width=8", "model.proj_hidden_dim=32",
        "model.proj_out_dim=16", "distributed.torch_threads=1", "optim.name=lars", "optim.warmup_epochs=0"]


def _rank(rank, world, port, stage, phase, root):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as tdist

    from raycl.config import load_config
    from raycl.data import EpochLoader
    from raycl.data.demo import demo_sources
    from raycl.train import zero_state
    from raycl.train.engine import build_engine, make_views, train_step
    from raycl.train.worker import aug_generator

    tdist.init_process_group("gloo")
    cfg = load_config(None, BASE + ["distributed.workers=[2, 3]", f"distributed.zero_stage={stage}"])
    engine = build_engine(cfg, 1, 4, cfg.plan(world))
    views = make_views(cfg, engine.module)
    z = engine.optimizer
    if phase == "save":
        src = demo_sources(0.2, num_samples=256)[0]
        for step, bt in zip(range(3), EpochLoader(src, 48, rank, world, seed=0).batches(0)):
            train_step(engine, views, bt.images, bt.index, bt.labels, cfg.distributed.grad_accum,
                       aug_generator(0, 0, step, "cpu"), "cpu")
        engine.save_checkpoint(os.path.join(root, "ds"), tag="t")
        saved = zero_state.gather(engine)
        if rank == 0:
            torch.save(saved, os.path.join(root, "zero_state.pt"))
    else:
        engine.load_checkpoint(os.path.join(root, "ds"), tag="t", load_optimizer_states=False)
        zero_state.load(engine, torch.load(os.path.join(root, "zero_state.pt"), weights_only=True), "zero_state.pt")
        torch.save({"fp32": [p.detach().clone() for p in z.single_partition_of_fp32_groups],
                    "state": [{k: v.clone() for k, v in z.optimizer.state[p].items() if torch.is_tensor(v)}
                              for p in z.single_partition_of_fp32_groups],
                    "params": {n: p.detach().clone() for n, p in engine.module.named_parameters()}},
                   os.path.join(root, f"loaded{rank}.pt"))
    tdist.destroy_process_group()


def _spawn(world, *args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(world, port, *args), nprocs=world)


def _flat_from_deepspeed_files(root):
    """Each group's fp32 master weights and momentum as DeepSpeed itself saved them, rank slices
    concatenated (read with weights_only=False: DeepSpeed's own files, written by this test)."""
    files = sorted(glob.glob(os.path.join(root, "ds", "t", "*optim_states.pt")))
    parts = [torch.load(f, weights_only=False)["optimizer_state_dict"] for f in files]
    fp32 = [torch.cat([p["single_partition_of_fp32_groups"][g] for p in parts])
            for g in range(len(parts[0]["single_partition_of_fp32_groups"]))]
    mom = []
    for g, w in enumerate(fp32):
        slices = []
        for p in parts:
            st = p["base_optimizer_state"]
            st = st["state"][g] if isinstance(st, dict) else st[g]
            slices.append(st["momentum_buffer"][:len(p["single_partition_of_fp32_groups"][g])])
        mom.append(torch.cat(slices))
    return len(files), fp32, mom


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_state_of_three_workers_loads_exactly_on_two(tmp_path, stage):
    root = str(tmp_path)
    _spawn(3, stage, "save", root)
    _spawn(2, stage, "load", root)
    n_files, fp32, mom = _flat_from_deepspeed_files(root)
    assert n_files == 3
    loaded = [torch.load(os.path.join(root, f"loaded{r}.pt"), weights_only=True) for r in range(2)]
    for g in range(len(fp32)):
        n = len(fp32[g])
        got_w = torch.cat([ld["fp32"][g] for ld in loaded])[:n]
        got_m = torch.cat([ld["state"][g]["momentum_buffer"] for ld in loaded])[:n]
        assert torch.equal(got_w, fp32[g]), g
        assert torch.equal(got_m, mom[g]), g
        assert mom[g].abs().sum() > 0      # three steps ran: the momentum is not the zeros a fresh start has
    # the model the two workers run is the three workers' fp32 master copy, on both ranks
    saved = torch.load(os.path.join(root, "zero_state.pt"), weights_only=True)
    assert saved["world_size"] == 3
    for name, p in loaded[0]["params"].items():
        assert torch.equal(p, loaded[1]["params"][name]), name
    flat_params = torch.cat([t.reshape(-1) for g in saved["groups"] for t in g["fp32"]])
    assert torch.equal(torch.cat([p.reshape(-1) for p in loaded[0]["params"].values()]).sort().values,
                       flat_params.sort().values)
