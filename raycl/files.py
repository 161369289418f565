"""Files: reading tensor files raycl did not just write (tensors and plain containers only, never a
pickle that could run code: every ``torch.load`` in raycl is this one), and writing files whole."""

from __future__ import annotations

import os
import pickle

import torch

from raycl.errors import CheckpointError


def safe_load(path: str, what: str = "file"):
    """``torch.load`` with ``weights_only=True``: tensors and plain Python containers only, so a file
    from elsewhere cannot run code. Anything else is one CheckpointError naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message names the global the pickle asked for (e.g. posix.system): keep that part
        asked = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        if not asked:
            raise CheckpointError(
                f"{what} {path!r} is truncated or not a torch file ({str(e).splitlines()[0]})"
            ) from None
        raise CheckpointError(
            f"{what} {path!r} is not a plain tensor file and was not loaded (raycl reads "
            f"only tensors and plain types, weights_only=True){': ' + asked if asked else ''}"
        ) from None
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path!r} does not exist") from None
    except Exception as e:  # truncated zip, garbage bytes, another format
        raise CheckpointError(
            f"{what} {path!r} is truncated or not a torch file ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def write_atomic(path: str, text: str) -> None:
    """``text`` written whole to ``path`` (its folder made if missing): a reader (or a run interrupted
    here) never sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)
