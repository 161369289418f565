"""Parquet shards on any fsspec URL.

Schema (one row per sample): ``index`` int64 (the global sample id the memory bank keys on),
``image`` binary (encoded PNG/JPEG/... bytes), ``label`` int64 (-1 when unknown).  Each row group
is one block of the source, so a worker reads only the row groups its share of the epoch covers.
"""
from __future__ import annotations

import io
import os
from functools import lru_cache

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raycl.data.source import Block, Source
from raycl.errors import DataError

SCHEMA = pa.schema([("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())])
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [C, H, W] (C = 1 or 3) -> PNG bytes."""
    from PIL import Image

    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def decode_image(data: bytes, size: int, channels: int) -> np.ndarray:
    """Encoded bytes -> uint8 [channels, size, size]. Raises whatever PIL raises on bad bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def write_shards(url: str, index, images: list[bytes], labels, rows_per_shard: int = 10_000,
                 row_group_size: int = 1_000) -> list[str]:
    """Write rows as ``part-00000.parquet``... under ``url`` (created if needed). Returns shard URLs."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    index, labels = np.asarray(index, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if not (len(index) == len(images) == len(labels)):
        raise DataError(f"write_shards: index, images and labels differ in length "
                        f"({len(index)}, {len(images)}, {len(labels)})")
    paths = []
    for k, s in enumerate(range(0, len(index), rows_per_shard)):
        e = s + rows_per_shard
        table = pa.table({"index": index[s:e], "image": pa.array(images[s:e], pa.binary()),
                          "label": labels[s:e]}, schema=SCHEMA)
        path = f"{root.rstrip('/')}/part-{k:05d}.parquet"
        # Write to a temporary name then move, so a reader never sees half a shard.
        tmp = path + ".tmp"
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh, row_group_size=row_group_size)
        fs.mv(tmp, path)
        paths.append(path)
    return paths


def convert_image_folder(folder: str, dest_url: str, rows_per_shard: int = 10_000) -> dict:
    """An ImageFolder-style tree (``folder/<class>/<image>``) -> Parquet shards at ``dest_url``.

    Classes are numbered in sorted order; a folder with images directly under it gets label -1.
    Image bytes are stored as they are (no re-encoding). Returns a summary dict.
    """
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.isdir(root):
        raise DataError(f"image folder {folder!r} does not exist or is not a folder")
    files = sorted(p for p in fs.find(root) if os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rel = [os.path.relpath(p, root) for p in files]
    classes = sorted({r.split(os.sep)[0] for r in rel if os.sep in r})
    cid = {c: i for i, c in enumerate(classes)}
    labels = [cid[r.split(os.sep)[0]] if os.sep in r else -1 for r in rel]
    images = [fs.cat_file(p) for p in files]
    shards = write_shards(dest_url, np.arange(len(files)), images, labels, rows_per_shard)
    return {"images": len(files), "classes": classes, "shards": len(shards), "dest": dest_url}


def list_shards(url: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    fs, root = fsspec.core.url_to_fs(url)
    if fs.isfile(root):
        return fs, [root]
    paths = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    if not paths:
        raise DataError(f"no .parquet shards under {url!r}")
    return fs, paths


class ParquetSource(Source):
    """Row groups of Parquet shards as blocks, decoded to uint8 [C, size, size] on read."""

    def __init__(self, url: str, image_size: int, channels: int, on_corrupt: str = "error"):
        self.url, self.size, self.channels, self.on_corrupt = url, image_size, channels, on_corrupt
        self.fs, self.paths = list_shards(url)
        self.blocks: list[tuple[int, int]] = []
        self.block_sizes = []
        for k, p in enumerate(self.paths):
            try:
                with self.fs.open(p, "rb") as fh:
                    meta = pq.ParquetFile(fh).metadata
                    names = set(meta.schema.names)
            except Exception as e:
                raise DataError(f"shard {p!r} is not a readable Parquet file: {e}") from None
            missing = {"index", "image", "label"} - names
            if missing:
                raise DataError(f"shard {p!r} lacks column(s) {sorted(missing)}; "
                                "expected index (int64), image (binary), label (int64)")
            for g in range(meta.num_row_groups):
                self.blocks.append((k, g))
                self.block_sizes.append(meta.row_group(g).num_rows)
        self.read_block = lru_cache(maxsize=4)(self._read_block)

    def _read_block(self, i: int) -> Block:
        k, g = self.blocks[i]
        path = self.paths[k]
        with self.fs.open(path, "rb") as fh:
            t = pq.ParquetFile(fh).read_row_group(g, columns=["index", "image", "label"])
        index = t.column("index").to_numpy().astype(np.int64)
        labels = t.column("label").to_numpy().astype(np.int64)
        raw = t.column("image").to_pylist()
        images = np.zeros((len(raw), self.channels, self.size, self.size), dtype=np.uint8)
        valid = np.ones(len(raw), dtype=bool)
        for r, data in enumerate(raw):
            try:
                images[r] = decode_image(data, self.size, self.channels)
            except Exception as e:
                if self.on_corrupt == "error":
                    raise DataError(
                        f"corrupt image bytes at row index {index[r]} (row group {g}, row {r}) "
                        f"of shard {path!r}: {type(e).__name__}: {e}. "
                        "Set data.on_corrupt: skip to skip such rows") from None
                valid[r] = False
        return Block(index, images, labels, valid, path)
