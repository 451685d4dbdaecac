"""Text queries of concurrent searches encoded together, and remembered.

``bike serve`` answers searches on many threads, but the model is called by one thread at a time (its caches
are plain dicts; on a GPU one call at a time is also what keeps memory bounded). With one encode per query
that lock is where concurrent queries wait in line. :class:`TextEncoder` turns the line into a batch: a
thread that finds the model busy leaves its text in the queue; when the model is free, the next thread takes
every waiting text (up to ``max_batch``) and encodes them in ONE model call, and each waiting thread picks up
its own row. A lone query is encoded alone, at once (no waiting for company). CLIP pads every text to 77
tokens, so a text's features do not depend on the others in its batch.

Each text's features are also kept in a small LRU cache (``cache`` entries): a repeated query (the same
sentence again, or a relevance-feedback re-rank of it: index/search/feedback.py) costs no model call.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

#: Most texts encoded in one model call.
MAX_BATCH = 32
#: Texts whose features are remembered (each (77, D) float32: 77 kB at D = 256).
CACHE = 256


class TextEncoder:
    """``encode(texts) -> (cls (B, D), tokens (B, 77, D))`` for a list of texts, called by one thread at a
    time; ``TextEncoder(encode)(text) -> (cls (D,), tokens (77, D))`` from any thread."""

    def __init__(self, encode, max_batch: int = MAX_BATCH, cache: int = CACHE):
        self._encode, self.max_batch, self.cache_size = encode, max_batch, cache
        self._cond = threading.Condition()
        self._queue: list = []              # slots waiting: {"text", "done", "value", "error"}
        self._busy = False
        self._cache: OrderedDict = OrderedDict()
        self.calls = 0                      # model calls made (tests and benchmarks read it)
        self.encoded = 0                    # texts encoded by them

    def __call__(self, text: str):
        with self._cond:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
            slot = {"text": text, "done": False, "value": None, "error": None}
            self._queue.append(slot)
            while not slot["done"]:
                if self._busy:
                    self._cond.wait()
                    continue
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._busy = True
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
            if slot["error"] is not None:
                raise slot["error"]
            return slot["value"]

    def _run(self, batch: list) -> None:
        """Encode ``batch`` (outside the condition's lock) and hand every slot its row (or the error)."""
        texts = list(dict.fromkeys(s["text"] for s in batch))
        try:
            cls, tokens = self._encode(texts)
            self.calls += 1
            self.encoded += len(texts)
            rows = {t: (cls[i], tokens[i]) for i, t in enumerate(texts)}
            error = None
        except BaseException as e:  # noqa: BLE001 - handed to every waiting thread, raised there
            rows, error = {}, e
        with self._cond:
            for s in batch:
                s["value"], s["error"], s["done"] = rows.get(s["text"]), error, True
            for t, v in rows.items():
                self._cache[t] = v
                self._cache.move_to_end(t)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
