"""Archive-scale benchmarks (issue 14): a store of many small batches before/after `bike compact`; listing and
identifying objects on a local S3-compatible server; tagging from S3 vs local disk.

    python bench/scale.py compact --batches 2000        # bike sql / search p50 before and after bike compact
    python bench/scale.py s3-list --objects 100000      # objects/s and requests to list + identify on moto
    python bench/scale.py s3-tag --videos 8             # bike tag: local files vs s3 ranged reads vs s3 spool,
                                                        # with bytes and GETs fetched per new object

Each section prints a table and merges its figures into bench/results/scale.json (with machine facts). The
machine is shared by other jobs: compare the before/after (or S3/local) figures of one run, not absolute ones.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))          # tests/searchstore.py writes real store batches
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
RESULTS = ROOT / "bench" / "results" / "scale.json"


def machine() -> dict:
    return bench_machine(note="compare ratios within this run; the load average at the start (and end) says whether other work shared the machine")


def save(section: str, result: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = {"machine": machine(), **result}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))
    print(f"→ {RESULTS.relative_to(ROOT)} [{section}]")


def p50(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def table(rows, header) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


# ------------------------------------------------------------------------------------------- compaction
SQL = {"histogram": "SELECT label, count(*) AS n FROM labels WHERE rank = 0 GROUP BY label ORDER BY n DESC LIMIT 10",
       "join": "SELECT v.path, c.start_s, l.peak_s FROM labels l JOIN clips c USING (clip_id, model_id) "
               "JOIN videos v ON v.video_id = l.video_id AND v.model_id = l.model_id "
               "WHERE l.rank = 0 AND l.label = 'Surfing' ORDER BY l.score DESC LIMIT 5"}


def measure_store(path: Path, mid: str, model, repeat: int) -> dict:
    from index.search.search import Searcher
    from index.store import Store

    def sql(q):
        con = Store(path).connect()              # what `bike sql` does after start-up: list, views, query
        con.execute(q).fetchall()
        con.close()

    out = {f"sql_{name}_p50_ms": round(1000 * p50(lambda q=q: sql(q), repeat), 1) for name, q in SQL.items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", "sql", "--store", str(path), SQL["histogram"]],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        cli.append(time.perf_counter() - t)
    out["bike_sql_cli_p50_ms"] = round(1000 * statistics.median(cli), 1)
    out["search_cold_p50_ms"] = round(1000 * p50(
        lambda: Searcher(path, mid, model=model).search("a person surfing a wave", k=10), repeat), 1)
    s = Searcher(path, mid, model=model)
    s.search("warm up", k=10)
    out["search_warm_p50_ms"] = round(1000 * p50(lambda: s.search("a person surfing a wave", k=10), repeat), 1)
    out["clip_shards"] = len(Store(path).files("clips"))
    return out


def bench_compact(args) -> None:
    import numpy as np

    import engine
    from index.store.compact import compact
    from index.store import Store
    from index.search.vectors import update_index
    from searchstore import add_video, random_clips

    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    labels = engine.load_labels("ucf101")
    work = Path(args.dir or tempfile.mkdtemp(prefix="bike-scale-"))
    path = work / "store"
    shutil.rmtree(path, ignore_errors=True)
    store = Store(path, create=True)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for v in range(args.batches):
        mid = add_video(store, model, labels, f"v{v:05d}", random_clips(rng, args.clips, 8, model.embed_dim))
    build_s = time.perf_counter() - t
    update_index(Store(path), mid)
    print(f"built {args.batches} batches × {args.clips} clips in {build_s:.0f}s at {path}")
    before = measure_store(path, mid, model, args.repeat)
    t = time.perf_counter()
    report = compact(Store(path), grace_s=0)
    compact_s = time.perf_counter() - t
    print("bike " + report.line())
    after = measure_store(path, mid, model, args.repeat)
    rows = [[k, before[k], after[k], f"{before[k] / after[k]:.1f}×" if after[k] else "-"] for k in before]
    table(rows, ["figure", f"{args.batches} batches", "compacted", "ratio"])
    save("compact", {"batches": args.batches, "clips_per_batch": args.clips, "build_s": round(build_s, 1),
                     "compact_s": round(compact_s, 2), "compact": report.line(), "before": before, "after": after,
                     "queries": SQL, "repeat": args.repeat,
                     "how": "p50 of in-process Store.connect()+query (bike sql minus interpreter start), of the "
                            "`python -m jobs.cli sql` process (3 runs), and of Searcher(...).search over "
                            "a tiny random-init model (cold: new Searcher each query; warm: one Searcher)"})
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------- object storage
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto_server():
    """A moto S3 server on a free loopback port (the same as tests/test_remote.py's fixture)."""
    os.environ.update(CREDS)
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    return server, os.environ["AWS_ENDPOINT_URL"]


def count_requests(fs) -> dict:
    """Count the HTTP requests an s3fs filesystem's boto client sends, by operation."""
    from collections import Counter
    counts: Counter = Counter()
    client = getattr(fs, "s3", None)
    if client is not None:
        client.meta.events.register("before-send.s3.*",
                                    lambda event_name="", **kw: counts.update([event_name.rsplit(".", 1)[-1]]))
    return counts


def bench_s3_list(args) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from engine.sources import remote
    from index.store.remoteids import RemoteIds
    from jobs.tag.sources import list_sources
    server, endpoint = moto_server()
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        t = time.perf_counter()
        body = b"\0" * 1024

        def put(i):
            client.put_object(Bucket="bench", Key=f"archive/{i % 100:02d}/v{i:06d}.mp4", Body=body + str(i).encode())
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(args.objects)))
        upload_s = time.perf_counter() - t
        fs, _ = remote.filesystem("s3://bench/")
        counts = count_requests(fs)
        t = time.perf_counter()
        src = list_sources(["s3://bench/archive/"])
        list_s = time.perf_counter() - t
        list_requests = dict(counts)
        assert len(src.videos) == args.objects, len(src.videos)
        counts.clear()
        store = Path(tempfile.mkdtemp(prefix="bike-ids-"))
        sample = src.videos[: args.identify]
        new = RemoteIds(store, listed=src.objects)      # new objects: a provisional id, no request
        t = time.perf_counter()
        for url in sample:
            new.identify(url)
        new_s = time.perf_counter() - t
        new_requests = dict(counts)
        counts.clear()
        ids = RemoteIds(store, listed=src.objects, trust=False)   # --rehash: the driver hashes each
        t = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:                  # bike tag identifies with 4 threads
            list(pool.map(ids.identify, sample))
        cold_s = time.perf_counter() - t
        cold_requests = dict(counts)
        ids.save()
        counts.clear()
        warm = RemoteIds(store, listed=src.objects)
        t = time.perf_counter()
        for url in sample:
            warm.identify(url)
        warm_s = time.perf_counter() - t
        assert warm.hits == len(sample) and warm.hashed == 0
        warm_requests = dict(counts)
        shutil.rmtree(store, ignore_errors=True)
    finally:
        server.stop()
    rows = [["list (prefix, recursive)", args.objects, f"{list_s:.1f}", f"{args.objects / list_s:,.0f}", list_requests],
            ["identify new objects (hashed later by their decode)", len(sample), f"{new_s:.2f}",
             f"{len(sample) / new_s:,.0f}", new_requests or "none"],
            ["identify with --rehash (the driver hashes bytes)", len(sample), f"{cold_s:.1f}", f"{len(sample) / cold_s:,.0f}", cold_requests],
            ["identify, rerun (ETag remembered)", len(sample), f"{warm_s:.2f}", f"{len(sample) / warm_s:,.0f}",
             warm_requests or "none"]]
    table(rows, ["step", "objects", "s", "objects/s", "requests"])
    save("s3_list", {"objects": args.objects, "upload_s": round(upload_s, 1), "endpoint": "moto ThreadedMotoServer, loopback",
                     "list": {"s": round(list_s, 2), "objects_per_s": round(args.objects / list_s), "requests": list_requests},
                     "identify_new": {"objects": len(sample), "s": round(new_s, 3),
                                      "objects_per_s": round(len(sample) / new_s), "requests": new_requests},
                     "identify_rehash": {"objects": len(sample), "s": round(cold_s, 2),
                                        "objects_per_s": round(len(sample) / cold_s), "requests": cold_requests},
                     "identify_rerun": {"objects": len(sample), "s": round(warm_s, 3),
                                        "objects_per_s": round(len(sample) / warm_s), "requests": warm_requests},
                     "how": "objects of ~1 KiB in 100 'folders'; identify-new gives --identify of them provisional "
                            "ids (their decode tasks hash them), identify-rehash hashes them on the driver (a GET "
                            "each), the rerun answers the same objects from STORE/_ids/remote.parquet"})


#: s3-tag sources: (name, BIKE_REMOTE_READ for the run or None, source is the bucket)
S3_TAG_MODES = (("local", None, False), ("s3-stream", "stream", True), ("s3-spool", "spool", True))


def bench_s3_tag(args) -> None:
    import boto3

    from jobs.tag.tag import TagOptions, run_tag
    from media import make_video
    server, endpoint = moto_server()
    work = Path(tempfile.mkdtemp(prefix="bike-s3tag-"))
    saved = os.environ.get("BIKE_REMOTE_READ")
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        local = work / "videos"
        local.mkdir()
        size = 0
        for i in range(args.videos):
            make_video(local / f"v{i:02d}.mp4", seconds=args.seconds, fps=25, size=(320, 240), pattern="testsrc")
            with open(local / f"v{i:02d}.mp4", "ab") as f:
                f.write(bytes([i]) * 16)                     # distinct content ids
            client.upload_file(str(local / f"v{i:02d}.mp4"), "bench", f"videos/v{i:02d}.mp4")
            size += (local / f"v{i:02d}.mp4").stat().st_size
        model = {"name": "bike-tiny", "random_init": True, "lexicon": "hmdb51"}
        modes = [m for m in S3_TAG_MODES if m[0] in args.modes]
        runs: dict = {name: [] for name, _, _ in modes}
        for rep in range(args.repeat):                   # alternated, so that load drifts hit all alike
            for name, read, from_s3 in modes:
                if read is None:
                    os.environ.pop("BIKE_REMOTE_READ", None)
                else:
                    os.environ["BIKE_REMOTE_READ"] = read    # forwarded to the Ray workers (jobs/tag/raycluster.py)
                src = "s3://bench/videos/" if from_s3 else str(local)
                summary = run_tag(TagOptions(sources=[src], store=str(work / f"store-{name}-{rep}"),
                                             labels="dog,cat,surfing", model_kwargs=model, index=False,
                                             progress=False), log=lambda m: None)
                assert summary.ok == args.videos, (name, summary.errors)
                assert not from_s3 or summary.objects_read == args.videos, summary
                runs[name].append(summary)
        out = {}
        for name, sums in runs.items():
            run_s = statistics.median(x.run_s for x in sums)
            frames = sums[0].frames
            out[name] = {"run_s_median": round(run_s, 2), "run_s_each": [round(x.run_s, 2) for x in sums],
                         "frames": frames, "frames_per_s": round(frames / run_s, 1),
                         "videos_per_s": round(args.videos / run_s, 2)}
            if sums[0].objects_read:
                x = sums[-1]
                out[name].update({"bytes_fetched_per_object": round(x.fetched_bytes / x.objects_read),
                                  "bytes_fetched_over_size": round(x.fetched_bytes / x.objects_bytes, 3),
                                  "gets_per_object": round(x.fetched_gets / x.objects_read, 2)})
    finally:
        if saved is None:
            os.environ.pop("BIKE_REMOTE_READ", None)
        else:
            os.environ["BIKE_REMOTE_READ"] = saved
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    table([[k, v["run_s_median"], v["run_s_each"], v["frames_per_s"], v["videos_per_s"],
            v.get("bytes_fetched_over_size", "-"), v.get("gets_per_object", "-")] for k, v in out.items()],
          ["source", "run s (median)", "each run", "frames/s", "videos/s", "fetched/size", "GETs/object"])
    result = {"videos": args.videos, "seconds_each": args.seconds, "size": "320x240 H.264 25 fps",
              "mean_object_bytes": round(size / args.videos), "model": "bike-tiny random-init", **out,
              "how": "run_tag in-process (a local Ray started per run), modes alternated, median run_s (excludes "
                     "Ray and model start-up); every run is a new store, so every object is new and read once by "
                     "its decode task (s3-stream: ranged reads decoded in process; s3-spool: BIKE_REMOTE_READ=spool, "
                     "a local spool file); S3 = moto on loopback, so this measures bike's overhead, not a network"}
    if "local" in out:
        for name in out:
            if name != "local":
                result[f"ratio_{name}_over_local"] = round(out[name]["frames_per_s"] / out["local"]["frames_per_s"], 2)
    save("s3_tag", result)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="section", required=True)
    c = sub.add_parser("compact", help="bike sql/search p50 on a store of many small batches, before/after")
    c.add_argument("--batches", type=int, default=2000)
    c.add_argument("--clips", type=int, default=2, help="clips per batch (one video each)")
    c.add_argument("--repeat", type=int, default=7)
    c.add_argument("--dir", default=None, help="keep the store here (default: a temporary folder, removed)")
    c.set_defaults(func=bench_compact)
    s = sub.add_parser("s3-list", help="list and identify many objects on a local S3 server (moto)")
    s.add_argument("--objects", type=int, default=100_000)
    s.add_argument("--identify", type=int, default=5_000, help="objects hashed in the first-run identify step")
    s.set_defaults(func=bench_s3_list)
    t = sub.add_parser("s3-tag", help="bike tag throughput: s3:// sources vs the same files on local disk")
    t.add_argument("--videos", type=int, default=8)
    t.add_argument("--seconds", type=float, default=10.0)
    t.add_argument("--repeat", type=int, default=3, help="runs per source, alternating the sources")
    t.add_argument("--modes", nargs="+", default=[m[0] for m in S3_TAG_MODES], choices=[m[0] for m in S3_TAG_MODES],
                   help="sources to compare (default: all): local files, s3 decoded from ranged reads, s3 spooled")
    t.set_defaults(func=bench_s3_tag)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
