"""Concurrent text queries share model calls (index/search/textbatch.py) and give the features of a lone encode."""
from __future__ import annotations

import threading

import pytest
import torch

from index.search.textbatch import TextEncoder


def test_waiting_texts_are_encoded_in_one_call_with_the_same_features(tiny_model):
    gate, entered = threading.Event(), threading.Event()
    sizes = []

    def encode(texts):                  # the real model; the first call waits until the others are queued
        sizes.append(len(texts))
        entered.set()
        gate.wait(10)
        return tiny_model._run_text(texts)

    enc = TextEncoder(encode)
    texts = [f"a dog number {i} runs" for i in range(9)]
    out = {}
    threads = [threading.Thread(target=lambda t=t: out.__setitem__(t, enc(t))) for t in texts]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    while len(enc._queue) < 8:          # the other eight wait in line behind the busy model
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    assert sizes == [1, 8] and enc.calls == 2 and enc.encoded == 9
    for t in texts:
        cls, tok = tiny_model._run_text([t])
        assert torch.allclose(out[t][0], cls[0], atol=1e-5) and torch.allclose(out[t][1], tok[0], atol=1e-5)
    enc(texts[3])                       # remembered: no model call
    assert enc.calls == 2


def test_an_encode_error_reaches_every_waiting_thread(tiny_model):
    def encode(texts):
        raise RuntimeError("model gone")
    enc = TextEncoder(encode)
    with pytest.raises(RuntimeError, match="model gone"):
        enc("x")
    assert not enc._busy and not enc._queue
