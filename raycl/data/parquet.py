"""Parquet shards on any fsspec URL.

Schema (one row per sample): ``index`` int64 (the global sample id the memory bank keys on),
``image`` binary (encoded PNG/JPEG/... bytes), ``label`` int64 (-1 when unknown).  Each row group
is one block of the source, so a worker reads only the row groups its share of the epoch covers.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raycl.data.decode import decode_image
from raycl.data.source import Raw, Source
from raycl.errors import DataError
from raycl.fields import MAX_CLASSES


def check_column_types(path: str, schema: pa.Schema) -> None:
    """index and label must be integers, image binary: anything else is refused by name."""
    want = {
        "index": pa.types.is_integer,
        "label": pa.types.is_integer,
        "image": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    }
    for col, ok in want.items():
        t = schema.field(col).type
        if not ok(t):
            kind = "binary (encoded image bytes)" if col == "image" else "an integer type (int64)"
            raise DataError(f"shard {path!r}: column {col!r} has type {t}, expected {kind}")


SCHEMA = pa.schema([("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())])
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [C, H, W] (C = 1 or 3) -> PNG bytes."""

    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(fs, root: str, k: int, index, images: list[bytes], labels, row_group_size: int = 1_000) -> str:
    """``root/part-{k:05d}.parquet``, written under a temporary name then moved, so a reader never
    sees half a shard."""
    table = pa.table(
        {
            "index": np.asarray(index, dtype=np.int64),
            "image": pa.array(images, pa.binary()),
            "label": np.asarray(labels, dtype=np.int64),
        },
        schema=SCHEMA,
    )
    path = f"{root.rstrip('/')}/part-{k:05d}.parquet"
    tmp = path + ".tmp"
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh, row_group_size=row_group_size)
    fs.mv(tmp, path)
    return path


def write_shards(
    url: str, index, images: list[bytes], labels, rows_per_shard: int = 10_000, row_group_size: int = 1_000
) -> list[str]:
    """Write rows as ``part-00000.parquet``... under ``url`` (created if needed). Returns shard URLs."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    index, labels = np.asarray(index, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if not (len(index) == len(images) == len(labels)):
        raise DataError(
            f"write_shards: index, images and labels differ in length ({len(index)}, {len(images)}, {len(labels)})"
        )
    return [
        write_shard(
            fs,
            root,
            k,
            index[s : s + rows_per_shard],
            images[s : s + rows_per_shard],
            labels[s : s + rows_per_shard],
            row_group_size,
        )
        for k, s in enumerate(range(0, len(index), rows_per_shard))
    ]


def check_decodes(data: bytes) -> None:
    """Raise if ``data`` is not an image PIL can decode (header and pixels)."""

    with Image.open(io.BytesIO(data)) as im:
        im.load()


def convert_threads() -> int:
    """Reader/encoder threads for ``raycl data convert``: I/O-bound reads and PIL (which releases
    the GIL) keep a few more threads than cores busy."""
    return min(8, (os.cpu_count() or 1) + 2)


def check_destination(dest_url: str, rows_per_shard) -> tuple:
    """The filesystem and path of an empty (or new) folder for shards, or one DataError."""
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise DataError(f"--rows-per-shard: expected an integer >= 1, got {rows_per_shard!r}")
    dfs, droot = fsspec.core.url_to_fs(dest_url)
    if dfs.exists(droot) and not dfs.isdir(droot):
        raise DataError(f"destination {dest_url!r} is an existing file; name a folder for the shards")
    if dfs.isdir(droot) and any(p.endswith(".parquet") for p in dfs.find(droot)):
        raise DataError(f"destination {dest_url!r} already holds .parquet shards; pick an empty folder")
    return dfs, droot


def list_images(folder: str) -> tuple[fsspec.AbstractFileSystem, list[str], list[str], np.ndarray]:
    """(filesystem, image files sorted, class names, label per file): a file in a subfolder takes
    the subfolder's class id (classes in sorted order); a file directly in ``folder`` -1."""
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.isdir(root):
        raise DataError(f"image folder {folder!r} does not exist or is not a folder")
    files = sorted(p for p in fs.find(root) if os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rel = [os.path.relpath(p, root) for p in files]
    classes = sorted({r.split(os.sep)[0] for r in rel if os.sep in r})
    cid = {c: i for i, c in enumerate(classes)}
    labels = np.array([cid[r.split(os.sep)[0]] if os.sep in r else -1 for r in rel], dtype=np.int64)
    return fs, files, classes, labels


class ShardWriter:
    """Rows (encoded image, label) buffered into shards of ``rows_per_shard``, indices 0, 1, ... in
    the order added."""

    def __init__(self, fs, root: str, rows_per_shard: int, row_group_size: int):
        self.fs, self.root, self.per, self.group = fs, root, rows_per_shard, row_group_size
        self.images: list = []
        self.labels: list = []
        self.shards: list[str] = []
        self.rows = 0

    def add(self, image: bytes, label: int) -> None:
        self.images.append(image)
        self.labels.append(label)

    def flush(self, last: bool = False) -> None:
        """Write every full shard held, and with ``last`` the rest."""
        while len(self.images) >= self.per or (self.images and last):
            images, labels = self.images[: self.per], self.labels[: self.per]
            index = np.arange(self.rows, self.rows + len(images))
            self.shards.append(write_shard(self.fs, self.root, len(self.shards), index, images, labels, self.group))
            self.rows += len(images)
            self.images, self.labels = self.images[self.per :], self.labels[self.per :]

    def remove_written(self) -> None:
        for path in self.shards:
            self.fs.rm(path)


def convert_image_folder(
    folder: str,
    dest_url: str,
    rows_per_shard: int = 10_000,
    on_corrupt: str = "error",
    log=None,
    shuffle: bool = True,
    seed: int = 0,
    row_group_size: int = 1_000,
    threads: int | None = None,
) -> dict:
    """An ImageFolder-style tree (``folder/<class>/<image>``) -> Parquet shards at ``dest_url``.

    Classes are numbered in sorted order; a folder with images directly under it gets label -1.
    Rows are written in a seeded random order (``shuffle``): a folder tree is sorted by class, and
    shards in that order make every row group one class. Image bytes are stored as they are (no
    re-encoding), after a decode check: a file that does not decode stops the conversion naming it
    (``on_corrupt="error"``) or is left out and listed (``"skip"``). Files are read a shard at a
    time, by a pool of threads, so memory holds one shard's bytes. Returns a summary dict.
    """
    if on_corrupt not in ("error", "skip"):
        raise DataError(f"--on-corrupt: expected 'error' or 'skip', got {on_corrupt!r}")
    fs, files, classes, labels = list_images(folder)
    dfs, droot = check_destination(dest_url, rows_per_shard)
    order = np.random.default_rng(seed).permutation(len(files)) if shuffle else np.arange(len(files))

    def load(i):  # (i, the file's bytes or None, why it does not decode or None)
        data = fs.cat_file(files[i])
        try:
            check_decodes(data)
        except Exception as e:
            return i, None, f"{type(e).__name__}: {e}"
        return i, data, None

    dfs.makedirs(droot, exist_ok=True)
    skipped: list[str] = []
    writer = ShardWriter(dfs, droot, rows_per_shard, row_group_size)
    with ThreadPoolExecutor(threads or convert_threads()) as pool:
        for s in range(0, len(order), rows_per_shard):
            for i, data, err in pool.map(load, order[s : s + rows_per_shard].tolist()):
                if err is None:
                    writer.add(data, labels[i])
                elif on_corrupt == "skip":
                    skipped.append(files[i])
                else:
                    writer.remove_written()  # no half-converted folder left to trip the next attempt
                    raise DataError(
                        f"{files[i]!r} does not decode as an image ({err}); fix or remove it, or pass --on-corrupt skip"
                    )
            writer.flush(last=s + rows_per_shard >= len(order))
    if not writer.rows:
        raise DataError(f"image folder {folder!r}: none of its {len(files)} image files decodes")
    if skipped and log is not None:
        log(f"skipped {len(skipped)} file(s) that do not decode, e.g. {skipped[0]}")
    return {"images": writer.rows, "classes": classes, "shards": len(writer.shards), "dest": dest_url,
            "skipped": skipped, "shuffled": shuffle}  # fmt: skip


def list_shards(url: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    fs, root = fsspec.core.url_to_fs(url)
    if fs.isfile(root):
        return fs, [root]
    paths = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    if not paths:
        raise DataError(f"no .parquet shards under {url!r}")
    return fs, paths


class ParquetSource(Source):
    """Row groups of Parquet shards as blocks; rows are decoded to uint8 [C, size, size] one by one,
    only those asked for."""

    def __init__(self, url: str, image_size: int, channels: int, on_corrupt: str = "error"):
        self.url, self.size, self.channels, self.on_corrupt = url, image_size, channels, on_corrupt
        self.fs, self.paths = list_shards(url)
        self.blocks: list[tuple[int, int]] = []
        self.label_max: list[int | None] = []  # from the footer's statistics, when the writer kept them
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
                raise DataError(
                    f"shard {p!r} lacks column(s) {sorted(missing)}; "
                    "expected index (int64), image (binary), label (int64)"
                )
            check_column_types(p, meta.schema.to_arrow_schema())
            col = meta.schema.names.index("label")
            for g in range(meta.num_row_groups):
                self.blocks.append((k, g))
                self.block_sizes.append(meta.row_group(g).num_rows)
                st = meta.row_group(g).column(col).statistics
                self.label_max.append(st.max if st is not None and st.has_min_max else None)
        # A few row groups' bytes (not pixels): rounds() and the kNN monitor read one in chunks.
        self.read_raw = lru_cache(maxsize=4)(self._read_raw)  # type: ignore[method-assign]  # per instance
        self._scan: dict | None = None

    def scan(self, max_label: int = MAX_CLASSES - 1) -> dict:
        """Read the ``index`` and ``label`` columns of every row group (no image bytes) and refuse
        what would break training later: null or out-of-range labels, negative or repeated indices.
        Returns {"rows", "labeled", "classes", "max_index"}; cached."""
        if self._scan is not None and self._scan["max_label_checked"] <= max_label:
            return self._scan
        seen_index, labeled, classes = [], 0, set()
        for k, g in self.blocks:
            path = self.paths[k]
            with self.fs.open(path, "rb") as fh:
                t = pq.ParquetFile(fh).read_row_group(g, columns=["index", "label"])
            where = f"shard {path!r} row group {g}"
            for col in ("index", "label"):
                if t.column(col).null_count:
                    row = int(np.flatnonzero(t.column(col).is_null().to_numpy(zero_copy_only=False))[0])
                    raise DataError(
                        f"{where}: column {col!r} is null at row {row}; every row needs an {col} "
                        + ("(-1 for an unlabeled image)" if col == "label" else "(the global sample id)")
                    )
            index, labels = t.column("index").to_numpy(), t.column("label").to_numpy()
            bad = np.flatnonzero((labels < -1) | (labels > max_label))
            if len(bad):
                r = int(bad[0])
                raise DataError(
                    f"{where}: label {int(labels[r])} at row {r} (index {int(index[r])}) is outside "
                    f"0..{max_label} and not -1 (unknown)"
                )
            if len(index) and index.min() < 0:
                r = int(np.argmin(index))
                raise DataError(
                    f"{where}: negative index {int(index[r])} at row {r}; index is the global sample "
                    "id (0..N-1) the memory bank keys on"
                )
            seen_index.append(index.astype(np.int64))
            labeled += int((labels >= 0).sum())
            classes.update(np.unique(labels[labels >= 0]).tolist())
        allidx = np.concatenate(seen_index) if seen_index else np.zeros(0, np.int64)
        uniq, counts = np.unique(allidx, return_counts=True)
        if len(uniq) < len(allidx):
            dup = int(uniq[np.argmax(counts > 1)])
            raise DataError(
                f"shards under {self.url!r}: index {dup} appears {int(counts.max())} times; "
                "every row needs its own global sample id"
            )
        self._scan = {
            "rows": len(allidx),
            "labeled": labeled,
            "classes": len(classes),
            "max_index": int(allidx.max()) if len(allidx) else -1,
            "max_label_checked": max_label,
        }
        return self._scan

    def has_labels(self) -> bool:
        """From the row groups' label statistics (already read with the footers) when every row
        group has them: each worker asks, and scanning the column again on every worker of an
        ImageNet run is 1,282 reads each. The driver's check_data has scanned the values."""
        if self.label_max and all(m is not None for m in self.label_max):
            return max(m for m in self.label_max if m is not None) >= 0
        return self.scan()["labeled"] > 0

    def peek(self) -> tuple[int, int, int] | None:
        """(width, height, bands) of the first row's image, read from its header; None if it does not
        open (the loader then reports the row)."""

        k, g = self.blocks[0]
        with self.fs.open(self.paths[k], "rb") as fh:
            column = pq.ParquetFile(fh).read_row_group(g, columns=["image"]).column("image")
        try:
            with Image.open(io.BytesIO(column[0].as_py())) as im:
                return im.size[0], im.size[1], len(im.getbands())
        except Exception:
            return None

    def labels_of(self, i: int) -> np.ndarray:
        k, g = self.blocks[i]
        with self.fs.open(self.paths[k], "rb") as fh:
            return pq.ParquetFile(fh).read_row_group(g, columns=["label"]).column("label").to_numpy().astype(np.int64)

    def _read_raw(self, i: int) -> Raw:
        k, g = self.blocks[i]
        path = self.paths[k]
        try:
            with self.fs.open(path, "rb") as fh:
                # use_threads=False: pyarrow's pool is sized for the machine, a worker has its own CPUs
                t = pq.ParquetFile(fh).read_row_group(g, columns=["index", "image", "label"], use_threads=False)
        except Exception as e:  # deleted, truncated or overwritten since the run started
            if self.on_corrupt == "error":
                raise DataError(
                    f"shard {path!r} row group {g} cannot be read ({type(e).__name__}: "
                    f"{str(e).strip()[:200]}); set data.on_corrupt: skip to skip it"
                ) from None
            n = self.block_sizes[i]  # every row fails to decode: replaced in its batch and counted
            return Raw(np.full(n, -1, np.int64), np.full(n, -1, np.int64), [b""] * n, np.arange(n), path, g)
        index = t.column("index").to_numpy().astype(np.int64)
        return Raw(
            index,
            t.column("label").to_numpy().astype(np.int64),
            t.column("image").to_pylist(),
            np.arange(len(index)),
            path,
            g,
        )

    def decode(self, raw: Raw, offs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if offs is not None:
            raw = raw.take(offs)
        n = len(raw.index)
        images = np.zeros((n, self.channels, self.size, self.size), dtype=np.uint8)
        valid = np.ones(n, dtype=bool)
        for r, data in enumerate(raw.payload):
            try:
                images[r] = decode_image(data, self.size, self.channels)
            except Exception as e:
                if self.on_corrupt == "error":
                    raise DataError(
                        f"corrupt image bytes at row index {raw.index[r]} (row group {raw.group}, row "
                        f"{raw.rows[r]}) of shard {raw.where!r}: {type(e).__name__}: {e}. "
                        "Set data.on_corrupt: skip to skip such rows"
                    ) from None
                valid[r] = False
        self.decoded.add(n)
        return images, valid
