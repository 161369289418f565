"""Progress of a run (epoch, step, loss, lr, images/s, ETA), as the event rank 0 sends the driver."""

from __future__ import annotations

import time


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Tracks throughput of this invocation (a resumed run counts from where it resumed)."""

    def __init__(self, total_steps: int, steps_per_epoch: int, epochs: int, global_batch: int, done_steps: int = 0):
        self.total, self.spe, self.epochs, self.G = total_steps, steps_per_epoch, epochs, global_batch
        self.start_step = done_steps
        self.t0 = time.perf_counter()

    def images_per_s(self, global_step: int) -> float:
        dt = time.perf_counter() - self.t0
        return (global_step - self.start_step) * self.G / dt if dt > 0 else 0.0

    def event(self, epoch: int, step: int, global_step: int, loss: float, lr: float) -> dict:
        """``epoch`` and ``step`` counted from 0; the event counts them from 1."""
        done = global_step - self.start_step
        dt = time.perf_counter() - self.t0
        return {
            "epoch": epoch + 1, "epochs": self.epochs, "step": step + 1, "steps_per_epoch": self.spe,
            "global_step": global_step, "total_steps": self.total, "loss": loss, "lr": lr,
            "images_per_s": self.images_per_s(global_step),
            "eta_s": dt / done * (self.total - global_step) if done else 0.0,
        }  # fmt: skip
