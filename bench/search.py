"""Search benchmark: FAISS at 1M clips, and FAISS + concept-spotting re-rank on a tagged store.

    .venv/bin/python bench/search.py                 # full run (~6 min on 2 cores), writes bench/results/search.json
    .venv/bin/python bench/search.py --n 200000      # smaller

Part 1 — vector index. N clustered 512-d vectors, L2-normalised: a two-level Gaussian mixture (1000 topics ×
20 sub-clusters × N/20000 points; cosine ≈ 0.5 inside a sub-cluster, ≈ 0.25 inside a topic, ≈ 0 across) —
not uniform random vectors, on which recall means nothing. Queries are fresh draws near random sub-clusters.
Each kind is built with the same functions ``bike index`` uses (index/search/vectors.py: ``default_params``,
``new_index``, ``train_index``, add), and measured: build time, index size, single-query latency p50/p99
(one query per call, 2 threads), batch latency (100 queries per call), recall@10 against exact search.

Part 2 — re-rank. A store of tagged clips (T = 8 frames × 512-d, written with ``Store.write_batch``):
200 concepts; in each clip the concept shows in a random run of frames and a background scene in the
others; labels and the clip embedding come from concept spotting against 200 label texts (each with 77
token features), as ``bike tag`` computes them. Text queries are new descriptions near a concept (not the
label texts). For each query: the top 10 of the real search path (``Searcher``: FAISS candidates → VCS
re-rank of every candidate with the stored frames) against the top 10 of an exhaustive VCS scan over every
clip. Reported: the share of queries whose top-10 lists are identical, mean overlap, and latency of both.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from engine.model.spotting import concept_spotting  # noqa: E402
from index.search import vectors as V  # noqa: E402
from index.search.rerank import rerank_text  # noqa: E402
from index.store.schema import TABLES  # noqa: E402
from index.search.search import Query, Searcher  # noqa: E402
from index.store import Store  # noqa: E402
from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs


def machine() -> dict:
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return bench_machine(faiss_gpus=gpus, faiss=faiss.__version__, torch=torch.__version__,
                         note="a shared 2-core machine: other jobs may run beside the benchmark (see loadavg)")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------ part 1: FAISS
def mixture(n: int, d: int, queries: int, spread: float = 1.0, seed: int = 0):
    """``spread``: norm of the noise around a sub-cluster centre (1.0: cosine ≈ 0.5 between two members and
    ≈ 0.7 to the centre; 1.5: ≈ 0.3 / 0.55, neighbours cross sub-clusters and recall gets hard)."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.standard_normal((1000, d), dtype=np.float32))
    subs = unit(np.repeat(topics, 20, axis=0) + rng.standard_normal((20000, d), dtype=np.float32) / np.sqrt(d))
    x = np.empty((n, d), np.float32)
    which = rng.integers(0, len(subs), n)
    for i in range(0, n, 100_000):
        w = which[i:i + 100_000]
        x[i:i + len(w)] = unit(subs[w] + spread * rng.standard_normal((len(w), d), dtype=np.float32) / np.sqrt(d))
    q = unit(subs[rng.integers(0, len(subs), queries)]
             + spread * rng.standard_normal((queries, d), dtype=np.float32) / np.sqrt(d))
    return x, q


def latency(index, q: np.ndarray, k: int, singles: int, batch: int):
    lat = []
    for i in range(singles):
        t = time.perf_counter()
        index.search(q[i:i + 1], k)
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    index.search(q[:batch], k)
    tb = time.perf_counter() - t
    return {"p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)),
            "batch_ms": 1e3 * tb, "batch_per_query_ms": 1e3 * tb / batch}


def recall(index, q: np.ndarray, truth: np.ndarray, k: int = 10, depth: int = 10) -> float:
    _, got = index.search(q, depth)
    return float(np.mean([len(set(g[:depth]) & set(t[:k])) / k for g, t in zip(got, truth)]))


def part1(n: int, d: int, nq: int, log, spread: float = 1.0, with_flat_latency: bool = True) -> list:
    t = time.perf_counter()
    x, q = mixture(n, d, nq, spread)
    log(f"generated {n}×{d} mixture (spread {spread}) in {time.perf_counter() - t:.0f}s")
    V._faiss()                                                   # the search-time BLAS threshold
    flat = faiss.IndexFlatIP(d)
    t = time.perf_counter()
    flat.add(x)
    flat_build = time.perf_counter() - t
    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 20              # BLAS for the big ground-truth batch
    _, truth = flat.search(q, 10)
    faiss.cvar.distance_compute_blas_threshold = saved
    rows = []
    if with_flat_latency:
        rows.append({"kind": "flat (exact)", "spread": spread, "params": {}, "build_s": flat_build,
                     "size_mb": x.nbytes / 2**20, "recall@10": 1.0, **latency(flat, q, 10, 50, 100)})
        log(f"flat: p50 {rows[-1]['p50_ms']:.1f} ms")
    del flat
    for kind in ("ivf", "ivfpq"):
        params = V.default_params(kind, n, d)
        index = V.new_index(kind, d, params)
        t = time.perf_counter()
        V.train_index(index, kind, x, params)
        train_s = time.perf_counter() - t
        for i in range(0, n, V.ADD_CHUNK):
            index.add(x[i:i + V.ADD_CHUNK])
        build_s = time.perf_counter() - t
        size = faiss.serialize_index(index).nbytes / 2**20
        ivf = faiss.extract_index_ivf(index)
        for nprobe in sorted({2, 4, 8, 16, 32, 64, params["nprobe"]}):
            ivf.nprobe = nprobe
            row = {"kind": kind, "spread": spread, "params": {**params, "nprobe": nprobe}, "build_s": build_s,
                   "train_s": train_s,
                   "size_mb": size, "recall@10": recall(index, q, truth), **latency(index, q, 10, 300, 100)}
            if kind == "ivfpq":       # PQ only proposes candidates; the re-rank sees the top N (e.g. 200)
                row["recall@10_in_top200"] = recall(index, q, truth, depth=200)
            rows.append(row)
            log(f"{kind} spread {spread} nprobe {nprobe}: recall@10 {row['recall@10']:.3f} p50 {row['p50_ms']:.2f} ms")
        del index
    return rows


# --------------------------------------------------------------------------------------- part 2: re-rank
def noise(rng, shape, size: float) -> np.ndarray:
    """Gaussian noise whose vectors have norm ≈ ``size`` (last axis = the 512 dims)."""
    shape = (shape,) if isinstance(shape, int) else shape
    return (rng.standard_normal(shape) * size / np.sqrt(shape[-1])).astype(np.float32)


def text_features(rng, concept: np.ndarray, spread: float):
    """(cls (D,), tokens (77, D)) of a text about ``concept``: start token, 4 words near the concept, the
    end-of-text token, padding close to the end-of-text feature (as in CLIP's text tower)."""
    d = concept.shape[0]
    cls = unit(concept + noise(rng, d, spread))
    tokens = np.empty((77, d), np.float32)
    tokens[0] = unit(np.ones(d) / np.sqrt(d) + noise(rng, d, 1.0))
    tokens[1:5] = unit(concept + noise(rng, (4, d), 0.8))
    tokens[5] = cls
    tokens[6:] = unit(cls + noise(rng, (71, d), 0.3))
    return cls, tokens


def tagged_store(root: Path, clips: int, concepts: int, d: int, t: int, rng, log):
    """Write a store of ``clips`` tagged clips; return (store, model_id, frames (N, T, D), concept dirs)."""
    topics = unit(rng.standard_normal((concepts // 10, d)))
    cdir = unit(np.repeat(topics, 10, axis=0) + noise(rng, (concepts, d), 1.2))
    label_feats = [text_features(rng, c, 0.5) for c in cdir]
    lcls = torch.tensor(np.stack([f[0] for f in label_feats]))
    ltok = torch.tensor(np.stack([f[1] for f in label_feats]))
    which = rng.integers(0, concepts, clips)
    frames = np.empty((clips, t, d), np.float32)
    for i in range(clips):
        scene = unit(rng.standard_normal(d))                           # this clip's look
        background = topics[rng.integers(0, len(topics))]
        length = rng.integers(1, t + 1)
        start = rng.integers(0, t - length + 1)
        active = np.zeros(t, bool)
        active[start:start + length] = True
        base = np.where(active[:, None], cdir[which[i]], background)
        frames[i] = unit(base + 0.8 * scene + noise(rng, (t, d), 0.6))
    frames = frames.astype(np.float16).astype(np.float32)               # as stored
    mid = "bench0000000000a"
    store = Store(root, create=True)
    store.write_batch({"models": pa.Table.from_pylist([{
        "model_id": mid, "name": "synthetic-512", "pretrained": "synthetic", "random_init": False, "frames": t,
        "window_s": 10.0, "label_set": "synthetic", "labels": [f"concept {i}" for i in range(concepts)],
        "lexicon": "none", "created_at": datetime.now(timezone.utc)}], schema=TABLES["models"])}, mid, {})
    per_batch = 1000
    tic = time.perf_counter()
    for b0 in range(0, clips, per_batch):
        h = torch.tensor(frames[b0:b0 + per_batch])
        sp = concept_spotting(h, ltok, lcls)
        top = sp.logits.topk(5, dim=1)
        emb = sp.embedding(top.indices[:, 0]).numpy()
        n = h.shape[0]
        vids = [f"vid{b0 + i:06d}" for i in range(n)]
        cids = [f"{v}/0" for v in vids]
        times = [[10.0 * j / t for j in range(t)]] * n
        fe = pa.array(frames[b0:b0 + n].astype(np.float16).reshape(-1))
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * t * d + 1, d, dtype=np.int32)), fe)
        outer = pa.ListArray.from_arrays(pa.array(np.arange(0, n * t + 1, t, dtype=np.int32)), inner)
        tables = {
            "clips": pa.Table.from_arrays([pa.array(cids), pa.array(vids), pa.array([mid] * n),
                                           pa.array([0] * n, pa.int32()), pa.array([0.0] * n),
                                           pa.array([10.0] * n), pa.array(times, pa.list_(pa.float32())), outer],
                                          schema=TABLES["clips"]),
            "labels": pa.Table.from_pylist([
                {"clip_id": cids[i], "video_id": vids[i], "model_id": mid, "rank": r,
                 "label": f"concept {int(top.indices[i, r])}", "score": float(top.values[i, r]),
                 "video_score": float(top.values[i, r]), "peak_s": 0.0}
                for i in range(n) for r in range(5)], schema=TABLES["labels"]),
            "embeddings": pa.Table.from_arrays([pa.array(cids), pa.array(vids), pa.array([mid] * n),
                                                pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)),
                                                                         pa.array(emb.reshape(-1)))],
                                               schema=TABLES["embeddings"]),
            "videos": pa.Table.from_pylist([{"video_id": v, "model_id": mid, "path": f"/bench/{v}.mp4",
                                             "duration_s": 10.0, "status": "ok", "num_clips": 1} for v in vids],
                                           schema=TABLES["videos"]),
        }
        store.write_batch(tables, mid, {v: "ok" for v in vids})
    log(f"tagged store: {clips} clips in {time.perf_counter() - tic:.0f}s")
    return store, mid, frames, cdir


def part2(clips: int, concepts: int, nq: int, log) -> dict:
    d, t = 512, 8
    rng = np.random.default_rng(1)
    out = {"clips": clips, "concepts": concepts, "frames": t, "dim": d, "queries": nq, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bike-bench-") as tmp:
        store, mid, frames, cdir = tagged_store(Path(tmp) / "store", clips, concepts, d, t, rng, log)
        all_frames = torch.tensor(frames)
        queries = [text_features(rng, cdir[rng.integers(0, concepts)], 1.0) for _ in range(nq)]
        tic = time.perf_counter()
        truth = []
        for cls, tok in queries:
            r = rerank_text(all_frames, torch.tensor(tok), torch.tensor(cls))
            truth.append(list(np.argsort(-r.scores, kind="stable")[:10]))
        exhaustive_ms = 1e3 * (time.perf_counter() - tic) / nq
        truth_ids = [[f"vid{i:06d}/0" for i in row] for row in truth]
        for kind in ("flat", "ivf"):
            V.update_index(store, mid, kind=kind)
            s = Searcher(store, mid)
            s.search(Query.from_text_features("warm-up", *map(torch.tensor, queries[0])), k=10)   # cache frames
            for n_cand in (100, 200, 500):
                same, overlap, lat = 0, [], []
                for (cls, tok), want in zip(queries, truth_ids):
                    q = Query.from_text_features("q", torch.tensor(cls), torch.tensor(tok))
                    tic = time.perf_counter()
                    res = s.search(q, k=10, candidates=n_cand)
                    lat.append(time.perf_counter() - tic)
                    got = [r.clip_id for r in res]
                    same += got == want
                    overlap.append(len(set(got) & set(want)) / 10)
                row = {"index": kind, "candidates": n_cand, "top10_identical": same / nq,
                       "mean_overlap@10": float(np.mean(overlap)),
                       "search_p50_ms": 1e3 * float(np.percentile(lat, 50)),
                       "search_p99_ms": 1e3 * float(np.percentile(lat, 99)),
                       "exhaustive_scan_ms_per_query": exhaustive_ms}
                out["runs"].append(row)
                log(f"re-rank {kind} N={n_cand}: identical {row['top10_identical']:.3f}, overlap "
                    f"{row['mean_overlap@10']:.3f}, p50 {row['search_p50_ms']:.1f} ms (exhaustive {exhaustive_ms:.0f} ms)")
    return out


def table(rows: list, part2_out: dict) -> str:
    lines = [f"{'kind':<13}{'spread':>7}{'nlist':>6}{'nprobe':>7}{'build s':>9}{'size MB':>9}{'p50 ms':>8}{'p99 ms':>8}"
             f"{'batch100 ms/q':>14}{'recall@10':>10}"]
    for r in rows:
        p = r["params"]
        extra = f"  (in top200: {r['recall@10_in_top200']:.3f})" if "recall@10_in_top200" in r else ""
        lines.append(f"{r['kind']:<13}{r['spread']:>7}{p.get('nlist', '-'):>6}{p.get('nprobe', '-'):>7}{r['build_s']:9.1f}"
                     f"{r['size_mb']:9.0f}{r['p50_ms']:8.2f}{r['p99_ms']:8.2f}{r['batch_per_query_ms']:14.3f}"
                     f"{r['recall@10']:10.3f}{extra}")
    lines.append("")
    lines.append(f"re-rank agreement with an exhaustive VCS scan ({part2_out['clips']} clips, {part2_out['queries']} queries)")
    lines.append(f"{'index':<7}{'N':>5}{'top10 identical':>17}{'overlap@10':>12}{'p50 ms':>8}{'p99 ms':>8}{'exhaustive ms':>15}")
    for r in part2_out["runs"]:
        lines.append(f"{r['index']:<7}{r['candidates']:>5}{r['top10_identical']:17.3f}{r['mean_overlap@10']:12.3f}"
                     f"{r['search_p50_ms']:8.1f}{r['search_p99_ms']:8.1f}{r['exhaustive_scan_ms_per_query']:15.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in part 1 (default 1M)")
    p.add_argument("--queries", type=int, default=1000, help="queries for recall in part 1")
    p.add_argument("--spreads", type=float, nargs="+", default=[1.0, 1.5],
                   help="sub-cluster noise levels of part 1 (easy 1.0, hard 1.5)")
    p.add_argument("--clips", type=int, default=10_000, help="clips in the tagged store of part 2")
    p.add_argument("--rerank-queries", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    faiss.omp_set_num_threads(os.cpu_count() or 1)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rows = []
    for i, spread in enumerate(args.spreads):
        rows += part1(args.n, 512, args.queries, log, spread, with_flat_latency=i == 0)
    p2 = part2(args.clips, 200, args.rerank_queries, log)
    text = table(rows, p2)
    print(text)
    result = {"command": "python bench/search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine(), "vectors": args.n, "dim": 512, "queries": args.queries,
              "faiss": rows, "rerank": p2, "table": text.splitlines(),
              "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
