"""Run a sequence of jobs ahead of their consumer: a producer thread walks the steps in order,
calls ``prepare(step)`` (cheap, ordered work such as reading row groups' bytes) and hands
``work(prepared)`` (decoding) to a thread pool; results come back in step order through a queue of
``depth`` entries, which bounds how far ahead (and how much memory) the pipeline runs.
Pillow and NumPy release the GIL while they decode and copy, so threads overlap with the step."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor


class Prefetcher:
    def __init__(self, steps, prepare, work, depth: int = 4, threads: int = 2):
        self.waited_s = 0.0
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="raycl-decode")
        self._thread = threading.Thread(
            target=self._produce, args=(list(steps), prepare, work), daemon=True, name="raycl-prefetch"
        )
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, steps, prepare, work) -> None:
        try:
            for step in steps:
                if not self._put(self._pool.submit(work, prepare(step))):
                    return
        except BaseException as e:  # surfaces in the consumer, at the step it belongs to
            failed: Future = Future()
            failed.set_exception(e)
            self._put(failed)
            return
        self._put(None)

    def __iter__(self):
        try:
            while True:
                t0 = time.perf_counter()
                fut = self._q.get()
                if fut is None:
                    return
                out = fut.result()
                self.waited_s += time.perf_counter() - t0
                yield out
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock the producer and drop what it made
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
