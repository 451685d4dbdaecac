"""What ``bike export`` costs: stream copy (default) vs frame-exact re-encode (``--exact``).

    .venv/bin/python bench/export.py            # two 60-s 1280×720 H.264+AAC videos (GOP 1 s and 10 s), ~1 min

For each video, spans of 10 s at 5 places are cut both ways with ``engine.video.export.export_span`` (the code
behind ``bike export``). Reported per mode: wall and CPU seconds per exported second, how early a stream
copy starts (it starts at the keyframe at or before the requested start), output bytes. Both modes run in the
same process one after the other, so their ratio holds on a shared machine. Writes bench/results/export.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine  # noqa: E402

from engine.video import ffmpeg_exe  # noqa: E402
from engine.video.export import export_span  # noqa: E402

SPAN_S = 10.0
STARTS = [3.3, 14.1, 27.5, 38.9, 46.2]


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make(path: Path, gop: int) -> Path:
    if not path.exists():
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "60",
                        "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-shortest", str(path)], check=True, timeout=600)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "export.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bike-export-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for gop in (25, 250):
        src = make(work / f"src_gop{gop}.mp4", gop)
        for exact in (False, True):
            wall, cpus, early, sizes = [], [], [], []
            for i, s in enumerate(STARTS):
                out = work / f"o_{gop}_{int(exact)}_{i}.mp4"
                t0, c0 = time.perf_counter(), cpu()
                rep = export_span(str(src), s, s + SPAN_S, out, exact=exact)
                wall.append(time.perf_counter() - t0)
                cpus.append(cpu() - c0)
                early.append(rep.early_s)
                sizes.append(rep.bytes)
            rows.append({"gop_frames": gop, "mode": "exact" if exact else "copy",
                         "wall_s_per_exported_s": round(statistics.median(wall) / SPAN_S, 4),
                         "cpu_s_per_exported_s": round(statistics.median(cpus) / SPAN_S, 4),
                         "early_s_median": round(statistics.median(early), 3), "early_s_max": round(max(early), 3),
                         "mb_per_exported_s": round(statistics.median(sizes) / SPAN_S / 1e6, 3)})
    print(f"{'GOP':>4} {'mode':<6} {'wall s/s':>9} {'CPU s/s':>8} {'early median/max s':>19} {'MB/s':>6}")
    for r in rows:
        print(f"{r['gop_frames']:>4} {r['mode']:<6} {r['wall_s_per_exported_s']:>9.4f} {r['cpu_s_per_exported_s']:>8.4f} "
              f"{r['early_s_median']:>9.2f}/{r['early_s_max']:<9.2f} {r['mb_per_exported_s']:>6.3f}")
    ratio = {g: round(next(r for r in rows if r["gop_frames"] == g and r["mode"] == "exact")["cpu_s_per_exported_s"]
                      / max(1e-9, next(r for r in rows if r["gop_frames"] == g and r["mode"] == "copy")["cpu_s_per_exported_s"]), 1)
             for g in (25, 250)}
    print(f"exact / copy CPU: {ratio}")
    out = {"bench": "export", "machine": machine(), "source": "60 s 1280x720 25 fps H.264 (veryfast) + AAC",
           "span_s": SPAN_S, "starts_s": STARTS, "rows": rows, "exact_over_copy_cpu": ratio}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
