"""Serving benchmark: ``bike serve`` over HTTP on a 100k-clip store, against the CLI's cold start.

    .venv/bin/python bench/serve.py                  # 100k clips (~3-4 min here), writes bench/results/serve.json
    .venv/bin/python bench/serve.py --clips 20000    # smaller

The store is written with the real store writer (``Store.write_batch``), one shard per 5000 clips: clustered
synthetic frame embeddings (100 topics × 10 concepts; in each clip a concept shows in a run of frames, a
topic background in the others; T = 8 frames × 64-d, the width of the tiny model), top-5 labels per clip by
cosine to the concept directions, clip embeddings as the normalised frame mean, one video row per 10 clips
(no media files: only search is measured), and the FAISS index that ``bike index`` builds
(``index.search.vectors.update_index``). Its ``models`` row is the seeded random-init ``bike-tiny`` model, so the
server loads a real model and encodes every text query with it.

The real server (``python -m jobs.cli serve``, uvicorn, one process) is started on a free loopback port; text
queries (distinct sentences, so the model's text cache never answers) are sent by 1, 8 and 32 concurrent
clients (threads with keep-alive ``httpx`` clients in this process). Reported per level: p50/p99 latency,
queries/s, errors, and the server's resident memory (VmRSS / VmHWM from /proc). Beside it: the wall time of one
``bike search`` (a fresh process: imports, model load, search) on the same store.

The machine is shared with other work, so absolute figures move; the JSON records the load average.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import pyarrow as pa  # noqa: E402

from index.search import vectors as V  # noqa: E402
from index.store.schema import TABLES  # noqa: E402
from index.store import Store  # noqa: E402
from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs
from serving import free_port, stop, wait_healthy  # noqa: E402

T, D = 8, 64
MODEL_ID = "benchserve00tiny"
WORDS = ("a person dog cat riding bike car street crowd dancing ballet jumping swimming pool cooking kitchen "
         "guitar playing football kicking ball running park beach surfing waves snow skiing mountain horse "
         "children laughing birthday cake train station rain night city lights").split()


def machine() -> dict:
    return bench_machine(note="compare ratios within this run; the load average at the start (and end) says whether other work shared the machine")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def build_store(root: Path, clips: int, log) -> Store:
    import engine
    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    rng = np.random.default_rng(0)
    topics = unit(rng.standard_normal((100, D)))
    concepts = unit(np.repeat(topics, 10, axis=0) + 0.8 * unit(rng.standard_normal((1000, D))))
    names = [f"concept {i}" for i in range(len(concepts))]
    store = Store(root, create=True)
    m = model.meta
    store.write_batch({"models": pa.Table.from_pylist([{
        "model_id": MODEL_ID, "name": m["name"], "pretrained": None, "checkpoint": None,
        "weights_sha": m["weights_sha"], "random_init": True, "frames": T, "window_s": 10.0,
        "label_set": "synthetic", "labels": names, "lexicon": "hmdb51",
        "created_at": datetime.now(timezone.utc)}], schema=TABLES["models"])}, MODEL_ID, {})
    per_batch, tic = 5000, time.perf_counter()
    now = datetime.now(timezone.utc)
    for b0 in range(0, clips, per_batch):
        n = min(per_batch, clips - b0)
        which = rng.integers(0, len(concepts), n)
        active = np.zeros((n, T), bool)
        length = rng.integers(1, T + 1, n)
        start = (rng.random(n) * (T - length + 1)).astype(int)
        for i in range(n):
            active[i, start[i]:start[i] + length[i]] = True
        background = topics[rng.integers(0, len(topics), n)]
        frames = np.where(active[..., None], concepts[which][:, None], background[:, None])
        frames = unit(frames + 0.8 * unit(rng.standard_normal((n, 1, D))) + 0.5 * rng.standard_normal((n, T, D)) / np.sqrt(D))
        frames = frames.astype(np.float16)
        emb = unit(frames.astype(np.float32).mean(axis=1))
        sims = emb @ concepts.T
        top = np.argsort(-sims, axis=1)[:, :5]
        ids = np.arange(b0, b0 + n)
        vids = [f"vid{i // 10:07d}" for i in ids]
        cidx = (ids % 10).astype(np.int32)
        cids = [f"{v}/{c}" for v, c in zip(vids, cidx)]
        starts = cidx * 10.0
        times = pa.array([[float(s + 10.0 * j / T) for j in range(T)] for s in starts], pa.list_(pa.float32()))
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * T * D + 1, D, dtype=np.int32)),
                                         pa.array(frames.reshape(-1)))
        outer = pa.ListArray.from_arrays(pa.array(np.arange(0, n * T + 1, T, dtype=np.int32)), inner)
        mids = pa.array([MODEL_ID] * n)
        tables = {
            "clips": pa.Table.from_arrays([pa.array(cids), pa.array(vids), mids, pa.array(cidx),
                                           pa.array(starts), pa.array(starts + 10.0), times, outer],
                                          schema=TABLES["clips"]),
            "labels": pa.table({
                "clip_id": np.repeat(cids, 5), "video_id": np.repeat(vids, 5), "model_id": [MODEL_ID] * (5 * n),
                "rank": np.tile(np.arange(5, dtype=np.int32), n),
                "label": [names[j] for j in top.reshape(-1)],
                "score": np.take_along_axis(sims, top, 1).reshape(-1).astype(np.float64),
                "video_score": np.take_along_axis(sims, top, 1).reshape(-1).astype(np.float64),
                "attribute_score": pa.nulls(5 * n, pa.float64()),
                "saliency": pa.nulls(5 * n, TABLES["labels"].field("saliency").type),
                "peak_s": np.repeat(starts, 5)}).cast(TABLES["labels"]),
            "embeddings": pa.Table.from_arrays([pa.array(cids), pa.array(vids), mids, pa.ListArray.from_arrays(
                pa.array(np.arange(0, n * D + 1, D, dtype=np.int32)), pa.array(emb.reshape(-1)))],
                schema=TABLES["embeddings"]),
        }
        uv = sorted(set(vids))
        tables["videos"] = pa.Table.from_pylist([
            {"video_id": v, "model_id": MODEL_ID, "path": f"/bench/{v}.mp4", "size": 1, "duration_s": 100.0,
             "fps": 25.0, "width": 640, "height": 360, "codec": "h264", "num_clips": 10, "status": "ok",
             "tagged_at": now} for v in uv], schema=TABLES["videos"])
        store.write_batch(tables, MODEL_ID, {v: "ok" for v in uv})
    log(f"store: {clips} clips in {time.perf_counter() - tic:.0f} s")
    tic = time.perf_counter()
    rep = V.update_index(store, MODEL_ID)
    log(f"index: {getattr(rep, 'kind', '?')} in {time.perf_counter() - tic:.0f} s")
    return store


def memory(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, val = line.split(":")
                out[key + "_mb"] = round(int(val.split()[0]) / 1024, 1)
    return out


def sentences(n: int, seed: int) -> "list[str]":
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 8)))) + f" {i}" for i in range(n)]


def load(base: str, clients: int, requests: int, seed: int, feedback: "list[str] | None" = None,
         group: "str | None" = None, offset: int = 0) -> dict:
    """``requests`` distinct text queries from ``clients`` threads; ``feedback``: clip ids sent as 3 positives and
    1 negative with every query (relevance feedback re-ranking); ``group="video"`` and ``offset``: the page's
    default request (one result per video) and a deeper page of it."""
    queries = sentences(requests, seed)
    local = __import__("threading").local()
    extra = {} if not feedback else {"positive": ",".join(feedback[:3]), "negative": feedback[3]}
    if group:
        extra["group"] = group
    if offset:
        extra["offset"] = offset

    def one(q: str):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, timeout=60)
        t0 = time.perf_counter()
        try:
            r = c.get("/api/search", params={"q": q, "k": 10, **extra})
            ok = r.status_code == 200 and len(r.json()["results"]) == 10
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - t0, ok

    tic = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        got = list(pool.map(one, queries))
    wall = time.perf_counter() - tic
    lat = np.array([g[0] for g in got]) * 1e3
    return {"clients": clients, "requests": requests, "feedback": bool(feedback), "group": group or "clip",
            "offset": offset,
            "errors": int(sum(not g[1] for g in got)),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "mean_ms": round(float(lat.mean()), 1), "qps": round(requests / wall, 1)}


def serve_levels(store: Store, tree: Path, args, env: dict, log, name: str) -> dict:
    """Start ``bike serve`` from the source tree ``tree`` on ``store`` and load it at 1, 8 and 32 clients, then
    8 clients with relevance feedback (3 positives, 1 negative), then 8 clients with the page's default request
    (``group=video``, first page and ``offset=90``)."""
    env = {**env, "PYTHONPATH": os.pathsep.join(x for x in (str(tree), os.environ.get("PYTHONPATH")) if x)}
    out: dict = {"code": str(tree) if name == "before" else "this tree"}
    port = free_port()
    tic = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", "--store", str(store.root),
                             "--port", str(port), "--cache-gb", "4"], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base)
        out["server_start_s"] = round(time.perf_counter() - tic, 1)
        out["server_memory_after_start"] = memory(proc.pid)
        log(f"[{name}] server up in {out['server_start_s']} s, {out['server_memory_after_start']}")
        load(base, 4, 40, seed=99)                                      # warm-up
        first = httpx.get(base + "/api/search", params={"q": "warm up", "k": 10}).json()["results"]
        fb = [r["clip_id"] for r in first[:4]]
        has_fb = httpx.get(base + "/api/search", params={"q": "x", "positive": fb[0]}).json().get("positives")
        out["levels"] = []
        plan = [(1, None, None, 0), (8, None, None, 0), (32, None, None, 0)] + (
            [(8, fb, None, 0)] if has_fb is not None else []) + [(8, None, "video", 0), (8, None, "video", 90)]
        for i, (clients, feedback, group, offset) in enumerate(plan):
            row = load(base, clients, args.requests * (2 if clients == 32 else 1), seed=i, feedback=feedback,
                       group=group, offset=offset)
            row.update(memory(proc.pid))
            out["levels"].append(row)
            log(f"[{name}] {clients:>3} clients{' +feedback' if feedback else ''}"
                f"{f' group={group} offset={offset}' if group else ''}: p50 {row['p50_ms']} ms, "
                f"p99 {row['p99_ms']} ms, {row['qps']} q/s, errors {row['errors']}, RSS {row.get('VmRSS_mb')} MB")
    finally:
        stop(proc)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency level (x2 at 32 clients)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve.json"))
    p.add_argument("--store", default=None, metavar="DIR",
                   help="build the store here and keep it (reused as it is when DIR already holds one: the same "
                        "store for several runs); default: a temporary folder")
    p.add_argument("--before", default=None, metavar="DIR",
                   help="another source tree (e.g. `git archive` of an older commit) served on the same store in "
                        "the same run, for a before/after comparison under the same machine load")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)}
    out = {"machine": machine(), "command": "python bench/serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "clips": args.clips, "frames": T, "dim": D, "model": "bike-tiny (random init)",
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="bike-bench-serve-") as tmp:
        root = Path(args.store) if args.store else Path(tmp) / "store"
        if (root / "_commits").is_dir():
            store = Store(root)
            out["store_reused"] = str(root)
            log(f"store: reusing {root}")
        else:
            store = build_store(root, args.clips, log)
        out["store_mb"] = round(sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file()) / 2**20, 1)
        cli = []
        for _ in range(2):
            tic = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "jobs.cli", "search", "--store", str(store.root),
                                  "children laughing at a birthday cake", "-k", "10", "--format", "json"],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            cli.append(time.perf_counter() - tic)
            assert res.returncode == 0, res.stderr
        out["cli_cold_start_s"] = round(min(cli), 2)
        out["cli_search_s"] = json.loads(res.stdout)["seconds"]
        log(f"CLI: bike search wall {min(cli):.2f} s (search proper {out['cli_search_s'] * 1000:.0f} ms)")

        code = [("after", ROOT)] + ([("before", Path(args.before).resolve())] if args.before else [])
        out["runs"] = {}
        for name, tree in code:
            out["runs"][name] = serve_levels(store, tree, args, env, log, name)
    out["machine"]["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["levels"] = out["runs"]["after"]["levels"]
    out["targets"] = {"p50_ms_at_8": 30, "p99_ms_at_8": 100, "errors_at_32": 0, "feedback_p50_vs_plain_at_8": 2.0}
    lines = [f"bike serve, {args.clips} clips ({T}x{D}), text queries over HTTP, k=10 (shared 2-core machine)",
             f"{'code':>7} {'clients':>7} {'feedback':>8} {'group':>12} {'p50 ms':>8} {'p99 ms':>8} {'q/s':>7} {'errors':>7} "
             f"{'RSS MB':>8}"]
    for name, run in out["runs"].items():
        for r in run["levels"]:
            grp = f"{r.get('group', 'clip')}@{r.get('offset', 0)}"
            lines.append(f"{name:>7} {r['clients']:>7} {str(r['feedback']):>8} {grp:>12} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                         f"{r['qps']:>7} {r['errors']:>7} {r.get('VmRSS_mb', '?'):>8}")
    lines.append(f"CLI cold start (bike search, one query): {out['cli_cold_start_s']} s wall, "
                 f"search proper {out['cli_search_s'] * 1000:.0f} ms; server start "
                 f"{out['runs']['after']['server_start_s']} s")
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
