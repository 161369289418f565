"""Encoded image bytes -> uint8 [C, size, size] pixels.

``decode_image`` is the CPU path (Pillow, one row at a time, in the loader's threads).
``decode_batch`` is ``data.decode: gpu``: a batch of bytes decoded on the training device (nvJPEG
through ``torchvision.io.decode_jpeg(device="cuda")`` for JPEG; other formats are decoded on the
CPU by torchvision and moved), then resized there. On a CPU device the same function runs with
torchvision's CPU decoders, which is how it is tested against Pillow.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def decode_image(data: bytes, size: int, channels: int) -> np.ndarray:
    """Encoded bytes -> uint8 [channels, size, size]. Raises whatever PIL raises on bad bytes."""

    with Image.open(io.BytesIO(data)) as f:
        im = f.convert("L" if channels == 1 else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_batch(encoded: list[bytes], size: int, channels: int, device="cpu"):
    """A list of encoded images -> uint8 tensor [n, channels, size, size] on ``device``."""

    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of torchcodec; they are still
        # the ones with batched nvJPEG, and the pinned torchvision keeps them.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg  # under the filter: its import warns
        from torchvision.io import decode_image as tv_decode

    mode = ImageReadMode.RGB  # grey is made below with Pillow's weights, so both paths agree
    device = torch.device(device)
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in encoded]
    out: list = [None] * len(encoded)
    jpeg = [i for i, d in enumerate(encoded) if is_jpeg(d)] if device.type == "cuda" else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpeg:  # one batched nvJPEG call for the JPEG rows
            for i, im in zip(jpeg, decode_jpeg([tensors[i] for i in jpeg], mode=mode, device=device)):
                out[i] = im
        for i, t in enumerate(tensors):
            if out[i] is None:
                out[i] = tv_decode(t, mode=mode).to(device, non_blocking=True)
    images = []
    for im in out:
        if channels == 1:  # Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16
            w = torch.tensor([19595, 38470, 7471], device=im.device, dtype=torch.int32)
            im = (
                ((im.to(torch.int32) * w[:, None, None]).sum(0, keepdim=True) + 32768)
                .bitwise_right_shift(16)
                .to(torch.uint8)
            )
        if tuple(im.shape[-2:]) != (size, size):
            # Pillow's BILINEAR filter widens its support when it shrinks; antialias=True matches it.
            im = (
                F.interpolate(
                    im[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
                )[0]
                .round_()
                .clamp_(0, 255)
                .to(torch.uint8)
            )
        images.append(im)
    return torch.stack(images)
