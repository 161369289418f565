"""raycl's own lines go through the ``raycl`` logger (``logging.getLogger("raycl")``).

Records print as ``[raycl] message`` on stderr (stdout holds what a command returns: its tables
and JSON line), the ``sys.stderr`` of the moment a record is written (pytest's capture, a
notebook's, a Ray worker's forwarded stream). From a Ray worker the line reaches the driver through
Ray's log forwarding, where the console (``raycl.train.console``) shows it by its prefix. To silence raycl's notes:
``logging.getLogger("raycl").setLevel(logging.WARNING)``; to send them elsewhere, add a handler and
set ``propagate``/remove ours as with any library logger.
"""

from __future__ import annotations

import logging
import sys

PREFIX = "[raycl] "


class _CurrentStderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never break the run it reports on
            self.handleError(record)


def _root() -> logging.Logger:
    logger = logging.getLogger("raycl")
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter(PREFIX + "%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Ray and notebooks configure the root logger; raycl's lines print once
    return logger


def get(name: str) -> logging.Logger:
    """The logger of one raycl module (``get(__name__)``), under ``raycl``."""
    _root()
    return logging.getLogger(name)
