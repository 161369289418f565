"""Evaluation protocols, one file each, registered by name (``raycl.protocols`` entry points), and
the one door through which a checkpoint is evaluated (``raycl.protocols.door``)."""

from raycl.protocols.base import Protocol, Subject
from raycl.protocols.registry import chosen, protocols

__all__ = ["Protocol", "Subject", "chosen", "protocols"]
