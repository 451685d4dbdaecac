"""A bounded fuzz of malformed checkpoints through the loader (``engine.load_model``, as every command loads).

Seeded, ~50 cases: truncated, bit-flipped and zeroed copies of a real bike-tiny checkpoint (zip and legacy
formats, flips aimed at the pickle and the zip directory too), and crafted dicts that ``weights_only`` loading
accepts (wrong types, nested junk, cycles, huge declared shapes, bad heads). Every case must load or be refused
with one ``CheckpointError`` line naming the file — never another exception — within a time bound, and the
whole run stays under a memory bound (peak RSS of the child process that runs it, from ``wait4``).
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import traceback
import zipfile

import pytest
import torch

SEED = int(os.environ.get("BIKE_FUZZ_SEED", "1818"))
#: Per case (the machine may be loaded: generous), and for the child process that runs them all.
CASE_S = 20.0
PEAK_RSS = 2.5e9
TINY = "bike-tiny"


def _seed_state() -> dict:
    from engine.model.loading import load_weights
    return {k: v.half() for k, v in load_weights(TINY, random_init=True, seed=3, quick_gelu=True).clip
            .state_dict().items()}


def _flip(data: bytes, rng: random.Random, lo: int, hi: int, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        b[rng.randrange(lo, max(lo + 1, hi))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _mutants(path: str, rng: random.Random):
    """(name, bytes) damaged copies of the checkpoint at ``path``."""
    data = open(path, "rb").read()
    n = len(data)
    with zipfile.ZipFile(path) as z:
        pkl = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    pkl_lo = pkl.header_offset + 30 + len(pkl.filename)            # the pickle's bytes (stored uncompressed)
    pkl_hi = pkl_lo + pkl.file_size
    for i in range(4):
        yield f"truncate{i}", data[:rng.randrange(1, n)]
    for i in range(5):
        yield f"pickle-flip{i}", _flip(data, rng, pkl_lo, pkl_hi, rng.randrange(1, 6))
    for i in range(3):
        yield f"tail-flip{i}", _flip(data, rng, max(0, n - 4096), n, rng.randrange(1, 20))   # zip directory
    for i in range(3):
        yield f"head-flip{i}", _flip(data, rng, 0, 512, rng.randrange(1, 10))
    for i in range(3):
        yield f"body-flip{i}", _flip(data, rng, 0, n, 200)
    for i in range(2):
        b = bytearray(data)
        lo = rng.randrange(n)
        b[lo:lo + 4096] = bytes(len(b[lo:lo + 4096]))
        yield f"zeroed{i}", bytes(b)


def _crafted(state: dict):
    """(name, object) dicts that ``torch.save`` writes and ``weights_only`` loading reads back."""
    z = torch.zeros((), dtype=torch.float16)
    big = dict(state)
    big["token_embedding.weight"] = z.expand(1 << 30, 64)
    deep: list = [torch.zeros(1)]
    for _ in range(300):
        deep = [deep]
    dag: list = [torch.zeros(2)]
    for _ in range(60):
        dag = [dag, dag]                                        # 2^60 paths, 60 lists
    header_keys = {"frame_position_embeddings.weight": torch.zeros(8, 64)}
    yield from [
        ("list-state", {"model_state_dict": [1, 2, 3]}),
        ("str-state", {"model_state_dict": "visual.conv1.weight"}),
        ("tensor-state", {"model_state_dict": torch.zeros(3)}),
        ("none-state", {"model_state_dict": None}),
        ("int-keys", {"model_state_dict": {1: torch.zeros(1), 2: torch.zeros(2)}}),
        ("str-values", {"model_state_dict": {k: "x" for k in state}}),
        ("nested-values", {"model_state_dict": {k: {"a": [v]} for k, v in state.items()}}),
        ("newline-key", {"model_state_dict": {**state, "evil\nkey\rline": torch.zeros(1)}}),
        ("int-weights", {"model_state_dict": {k: v.to(torch.int32) for k, v in state.items()}}),
        ("bool-weights", {"model_state_dict": {k: v.bool() for k, v in state.items()}}),
        ("huge-declared", {"model_state_dict": big}),
        ("huge-1d", {"model_state_dict": {"visual.conv1.weight": z.expand(1 << 40)}}),
        ("wrong-ndim", {"model_state_dict": {**state, "visual.conv1.weight": torch.zeros(64)}}),
        ("no-grid", {"model_state_dict": {**state, "visual.positional_embedding": torch.zeros(0, 64)}}),
        ("odd-heads", {"model_state_dict": {**state, "positional_embedding": torch.zeros(77, 66)}}),
        ("sparse", {"model_state_dict": {**state, "visual.proj": state["visual.proj"].float().to_sparse()}}),
        ("deep-junk", {"model_state_dict": state, "optimizer": deep}),
        ("dag-junk", {"model_state_dict": state, "optimizer": dag}),
        ("flag-types", {"model_state_dict": state, "quick_gelu": torch.ones(3), "model_name": 5}),
        ("label-junk", {"model_state_dict": state, "labels": torch.zeros(4)}),
        ("header-junk", {"model_state_dict": state, "fusion_model_state_dict": [torch.zeros(1)]}),
        ("header-partial", {"model_state_dict": state, "fusion_model_state_dict": header_keys}),
        ("header-huge", {"model_state_dict": state, "fusion_model_state_dict": {
            "frame_position_embeddings.weight": z.expand(8, 1 << 16),
            **{f"transformer.resblocks.{i}.x": torch.zeros(1) for i in range(48)}}}),
        ("attrs-wrong", {"model_state_dict": state, "attributes_state_dict": {"query_fc.0.weight": torch.zeros(3)}}),
        ("classfeat-junk", {"model_state_dict": state, "class_features": {"names": 7, "cls": "x"}}),
        ("classfeat-shape", {"model_state_dict": state, "class_features": {
            "names": ["a"], "cls": torch.zeros(1, 5), "tokens": torch.zeros(1, 77, 5)}}),
        ("plain-list", [state]),
    ]


def run_cases(workdir: str, seed: int) -> list:
    """Write and load every case in this process; one result dict per case (the child side of the test)."""
    import engine
    from engine.model.loading import CheckpointError, WeightsUnavailable
    rng = random.Random(seed)
    state = _seed_state()
    good = os.path.join(workdir, "good.pt")
    torch.save({"model_state_dict": state, "epoch": 3}, good)
    legacy = os.path.join(workdir, "legacy.pt")
    torch.save({"model_state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    cases = [(name, blob, "checkpoint") for name, blob in _mutants(good, rng)]
    data = open(legacy, "rb").read()
    cases += [(f"legacy-truncate{i}", data[:rng.randrange(1, len(data))], "checkpoint") for i in range(2)]
    cases += [(f"legacy-flip{i}", _flip(data, rng, 0, min(len(data), 8192), 4), "checkpoint") for i in range(2)]
    for name, obj in _crafted(state):
        path = os.path.join(workdir, f"{name}.pt")
        torch.save(obj, path)
        cases.append((name, open(path, "rb").read(), "pretrained" if name == "plain-list" else "checkpoint"))
    cases += [("good", open(good, "rb").read(), "checkpoint")]
    results = []
    for i, (name, blob, how) in enumerate(cases):
        path = os.path.join(workdir, f"case{i}-{name}.pt")
        with open(path, "wb") as f:
            f.write(blob)
        t0 = time.monotonic()
        try:
            engine.load_model(None, **{how: path}, lexicon="a,b", precision="fp32")
            outcome, message = "loaded", ""
        except (CheckpointError, WeightsUnavailable) as e:
            outcome, message = "refused", str(e)
        except BaseException:  # noqa: BLE001 - what the test is looking for
            outcome, message = "crash", traceback.format_exc()
        results.append({"name": name, "path": path, "outcome": outcome, "message": message,
                        "seconds": time.monotonic() - t0})
        os.unlink(path)
    return results


def test_malformed_checkpoints_load_or_are_refused_in_one_line(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    code = ("import json, sys, torch, warnings; warnings.simplefilter('ignore'); torch.set_num_threads(2); "
            "from tests.test_checkpoint_fuzz import run_cases; "
            f"print(json.dumps(run_cases({str(tmp_path)!r}, {SEED})))")
    from bounded import run_bounded
    rc, stdout, stderr, peak, _ = run_bounded([sys.executable, "-c", code], PEAK_RSS, 400, env=env, cwd=root)
    assert rc == 0 and peak < PEAK_RSS, (rc, peak, stderr[-3000:])
    results = json.loads(stdout.strip().splitlines()[-1])
    assert len(results) >= 45
    crashes = [r for r in results if r["outcome"] == "crash"]
    assert not crashes, "\n\n".join(f"{r['name']}:\n{r['message']}" for r in crashes[:3])
    for r in results:
        assert r["seconds"] < CASE_S, r
        if r["outcome"] == "refused":
            assert "\n" not in r["message"] and r["message"].startswith(f"{r['path']}: "), r
    by_name = {r["name"]: r for r in results}
    assert by_name["good"]["outcome"] == by_name["dag-junk"]["outcome"] == "loaded"
    for name in ("huge-declared", "huge-1d", "header-huge", "newline-key", "sparse", "str-values"):
        assert by_name[name]["outcome"] == "refused", by_name[name]
    print(f"fuzz: {len(results)} cases, {sum(r['outcome'] == 'loaded' for r in results)} loaded, "
          f"peak RSS {peak / 1e9:.2f} GB, slowest {max(r['seconds'] for r in results):.1f} s")


if __name__ == "__main__":   # pragma: no cover - by hand: python tests/test_checkpoint_fuzz.py
    with tempfile.TemporaryDirectory() as d:
        for r in run_cases(d, SEED):
            print(f"{r['outcome']:8} {r['seconds']:5.1f}s {r['name']}: {r['message'].splitlines()[-1:]}")
