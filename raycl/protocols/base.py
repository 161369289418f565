"""What an evaluation protocol is, and what it evaluates.

A protocol is one class in one file with a name, the metrics it reports (named for it: no two
protocols report the same key) and ``evaluate(subject) -> dict``. A *frozen* protocol scores the
features a frozen encoder gives the run's rows; it is also run on the floors a trained encoder must
beat (the same encoder at random init, the raw pixels). The others train (a Ray Train run from the
checkpoint) and read what they need from the subject's checkpoint and options."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch

from raycl.data import eval_ready, eval_sources
from raycl.errors import ConfigError
from raycl.eval import extract
from raycl.eval.features import rows_per_forward
from raycl.eval.report import Ticker


@dataclass
class Subject:
    """An encoder (or the pixels, ``raycl.eval.pixels.StoredPixels``) of a run, what progress lines
    call it, the checkpoint it came from (None for a floor) and the caller's options (``recipe``,
    ``overrides``, ``address``, ``label_fraction``, ...). Its features are extracted once, for every
    frozen protocol."""

    cfg: Any
    encoder: torch.nn.Module | None
    what: str = "encoder"
    checkpoint: str | None = None
    options: dict = field(default_factory=dict)
    quiet: bool = False
    extracted: tuple | None = None  # (train features, train labels, held-out features, held-out labels)

    @cached_property
    def sources(self) -> tuple:
        return eval_sources(self.cfg)  # once: opening Parquet shards reads every footer

    @cached_property
    def unready(self) -> str | None:
        """Why the rows cannot be scored (no labeled rows on a side), or None; asked once per subject."""
        return None if self.extracted is not None else eval_ready(*self.sources)

    def features(self) -> tuple:
        """(train features, labels, held-out features, labels) of a seeded sample of at most
        ``eval.max_train_samples`` / ``eval.max_eval_samples`` rows, un-augmented."""
        if self.extracted is None:
            assert self.encoder is not None, "a subject is given an encoder or its features"
            e, seed, bs = self.cfg.eval, self.cfg.run.seed, rows_per_forward(self.cfg.data.channels,
                                                                             self.cfg.data.image_size)  # fmt: skip
            out = []
            for split, src, most in (("training", self.sources[0], e.max_train_samples),
                                     ("held-out", self.sources[1], e.max_eval_samples)):  # fmt: skip
                ticker = None if self.quiet else Ticker(f"{self.what} features of {split} rows", "rows")
                out += list(extract(self.encoder, src, batch_size=bs, max_rows=most, seed=seed, progress=ticker))
            self.extracted = tuple(out)
        return self.extracted

    def trained_from(self, protocol: str) -> str:
        """The checkpoint a trained protocol starts from (a floor has none)."""
        if self.checkpoint is None:
            raise ConfigError(f"--protocol: {protocol!r} trains from a checkpoint; this subject has none")
        return self.checkpoint

    def ticker(self, task: str, unit: str):
        return None if self.quiet else Ticker(f"{self.what} {task}", unit, every_s=10.0)


class Protocol:
    """One evaluation protocol: see the module's docstring. Subclasses set the class attributes and
    ``evaluate``; they are registered by name in the ``raycl.protocols`` entry-point group."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, for `raycl protocols`
    metrics: ClassVar[tuple[str, ...]] = ()  # the keys it reports; the first is its headline figure
    frozen: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ()  # the subject options it reads (trained protocols)

    def evaluate(self, subject: Subject) -> dict:
        raise NotImplementedError
