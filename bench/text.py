"""Text channels benchmark: generated videos with known text, read by the channels of ``bike tag --text``.

    .venv/bin/python bench/text.py            # writes bench/results/text.json (~3-6 min on 2 busy cores)
    .venv/bin/python bench/text.py --n 2 --no-hostile

Each of N videos (10 s, 640x360) carries: two captions burned in with ffmpeg drawtext (matplotlib's DejaVu
Sans) at known times; two subtitle cues, as a sidecar .srt (even videos) or an embedded mov_text stream (odd);
one sentence spoken by espeak-ng. Measured per channel, with the functions ``bike tag`` runs
(jobs/tag/textstage.py → engine/transcripts/):

- OCR character accuracy: 1 - edit distance / length, of each caption against the OCR span overlapping it;
- subtitle timing: the largest |error| of cue starts and ends (s);
- speech word recall per backend (words of the sentence found among the recognised words);
- search: for each caption and subtitle phrase, BM25 over the transcripts (index/search/textindex.py, what the fused
  search uses) must rank the right video first with the span's start within ±1 s of the truth;
- cost per video-hour: channel seconds / video seconds × 3600, on this machine;
- hostile inputs: a 100 MB subtitle stream, a malformed .srt, binary junk named .vtt, control characters and
  HTML in a cue: time, outcome and the one-line warnings.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

from engine.video import ffmpeg_exe  # noqa: E402

FONT = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
PHRASES = ["QUARTERLY REPORT 2026", "HARBOUR LIGHTHOUSE", "ELEPHANT CROSSING", "BUDGET REVIEW MEETING",
           "NORTHERN RAILWAY 42", "SOLAR ECLIPSE TONIGHT", "MARKET CLOSES EARLY", "WINTER STORM WARNING"]
#: One phrase per subtitle cue (two per video): a phrase shown in two videos would make its query ambiguous.
SUBS = ["the committee approved the plan", "rain is expected over the valley", "our guest tonight is a chef",
        "the museum opens on monday", "a new bridge spans the river", "tickets are sold out",
        "volunteers planted oak saplings", "the orchestra tuned its violins", "fresh bread arrives at dawn",
        "a comet streaked past jupiter", "the ferry leaves from pier nine", "glaciers retreat each summer"]
SPEECH = ["the quarterly budget meeting starts at noon", "the harbour lighthouse is closed today",
          "please check the northern railway timetable", "an elephant crossed the road this morning"]


def ff(*args):
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=600)


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_set(d: Path, n: int) -> list:
    if 2 * n > min(len(PHRASES), len(SUBS)):
        raise SystemExit(f"--n {n}: at most {min(len(PHRASES), len(SUBS)) // 2} videos (each caption and "
                         "subtitle phrase must be unique to one video, or its search query is ambiguous)")
    out = []
    for i in range(n):
        caps = [(PHRASES[2 * i], 1.0, 3.5), (PHRASES[2 * i + 1], 5.0, 8.0)]
        subs = [(SUBS[2 * i], 0.5 + 0.25 * i, 2.75), (SUBS[2 * i + 1], 6.125, 9.0)]
        speech = SPEECH[i % len(SPEECH)]
        draw = ",".join(f"drawtext=fontfile={FONT}:text='{t}':fontsize=34:fontcolor=white:x=50:y={120 + 90 * k}:"
                        f"enable='between(t,{a},{b})'" for k, (t, a, b) in enumerate(caps))
        wav = d / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), speech], check=True)
        srt = d / f"v{i}.srt.txt"
        srt.write_text("".join(f"{k + 1}\n{srt_time(a)} --> {srt_time(b)}\n{t}\n\n" for k, (t, a, b) in enumerate(subs)))
        video = d / f"v{i}.mp4"
        args = ["-f", "lavfi", "-i", "color=c=0x203060:size=640x360:rate=25:duration=10", "-i", wav]
        if i % 2:
            args += ["-i", srt, "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:s", "mov_text"]
        else:
            args += ["-map", "0:v", "-map", "1:a"]
        ff(*args, "-vf", draw, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-af", "apad",
           "-t", "10", video)
        if i % 2 == 0:
            shutil.copy(srt, d / f"v{i}.srt")
        out.append({"path": str(video), "vid": f"v{i}", "captions": caps, "subs": subs, "speech": speech,
                    "seconds": 10.0, "subtitle_kind": "embedded mov_text" if i % 2 else "sidecar .srt"})
    return out


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def run_channel(store, videos, channel, **kw):
    from jobs.tag.textstage import TextOptions, run_text_stage
    t0 = time.perf_counter()
    (s,) = run_text_stage(store, [(v["path"], v["vid"]) for v in videos], TextOptions(channels=(channel,), **kw))
    return s, time.perf_counter() - t0


def hostile(d: Path) -> dict:
    from engine.transcripts import subtitles as subs
    out = {}
    big = d / "big.srt"
    with open(big, "w") as f:
        i, size = 0, 0
        while size < 100 << 20:
            line = f"{i + 1}\n{srt_time(i * 0.01)} --> {srt_time(i * 0.01 + 0.005)}\n{'lorem ipsum ' * 30}{i}\n\n"
            f.write(line)
            size += len(line)
            i += 1
    ff("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=10:duration=2", "-i", big, "-c:v", "libx264",
       "-c:s", "srt", d / "big.mkv")
    import resource
    t0 = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracks, warns = subs.read_subtitles(str(d / "big.mkv"))
    out["stream_100MB"] = {"bytes_stream": size, "seconds": round(time.perf_counter() - t0, 2),
                           "cues_kept": sum(len(t.cues) for t in tracks), "warnings": warns,
                           "max_rss_growth_MB": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)}
    ff("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=10:duration=1", "-c:v", "libx264", d / "h.mp4")
    (d / "h.srt").write_text("1\n00:00:00,500 --> 00:00:01,000\n<script>alert(1)</script>\x1b[2J\u202eevil &amp;\n\n"
                             "nonsense\nwithout times\n\n2\n00:00:0x,000 --> zz\nbroken\n\n")
    (d / "h.vtt").write_bytes(os.urandom(4096))
    tracks, warns = subs.read_subtitles(str(d / "h.mp4"))
    out["malformed_srt_binary_vtt_html"] = {"cues": [c.text for t in tracks for c in t.cues], "warnings": warns}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--no-hostile", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "text.json"))
    args = ap.parse_args()
    from index.store import Store
    from index.search.textindex import TextIndex
    res = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
           "cpus": os.cpu_count(), "videos": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        videos = make_set(d, args.n)
        store = Store(d / "store", create=True)
        hours = sum(v["seconds"] for v in videos) / 3600
        channels = {}
        for ch, kw in (("subtitles", {}), ("ocr", {}), ("asr", {"asr": "pocketsphinx"})):
            s, secs = run_channel(store, videos, ch, **kw)
            channels[ch] = {"seconds": round(secs, 2), "seconds_per_video_hour": round(secs / hours, 1),
                            "spans": s.spans, "errors": s.errors, "backend": s.backend}
        rows = store.read("transcripts").to_pylist()
        by = lambda vid, src: [r for r in rows if r["video_id"] == vid and r["source"] == src]  # noqa: E731
        acc, timing, recall, found = [], [], [], []
        for v in videos:
            ocr = by(v["vid"], "ocr")
            for text, a, b in v["captions"]:
                over = [r for r in ocr if r["start_s"] < b and r["end_s"] > a]
                got = max(over, key=lambda r: -edit_distance(r["text"], text))["text"] if over else ""
                acc.append(max(0.0, 1 - edit_distance(got, text) / len(text)))
            sub = by(v["vid"], "subtitle")
            for text, a, b in v["subs"]:
                m = [r for r in sub if r["text"] == text]
                timing.append(max(abs(m[0]["start_s"] - a), abs(m[0]["end_s"] - b)) if m else None)
            heard = " ".join(r["text"] for r in by(v["vid"], "speech")).lower().split()
            words = v["speech"].split()
            recall.append(sum(w in heard for w in words) / len(words))
        idx = TextIndex.build(store)
        misses = []
        for v in videos:
            for text, a, _b in [*v["captions"], *v["subs"]]:
                hits = idx.search(text, k=1)
                found.append(bool(hits) and hits[0].video_id == v["vid"] and abs(hits[0].start_s - a) <= 1.0)
                if not found[-1]:
                    misses.append({"query": text, "video": v["vid"], "at_s": a,
                                   "got": [hits[0].video_id, hits[0].start_s] if hits else None})
        res["ocr"] = {"char_accuracy": round(sum(acc) / len(acc), 4), "captions": len(acc),
                      "per_caption": [round(x, 3) for x in acc]}
        res["subtitles"] = {"max_timing_error_s": max(t for t in timing if t is not None) if all(
            t is not None for t in timing) else None, "cues": len(timing), "all_found": all(t is not None for t in timing)}
        res["speech"] = {"pocketsphinx_word_recall": round(sum(recall) / len(recall), 3),
                         "per_video": [round(x, 3) for x in recall],
                         "whisper": "not measured: faster-whisper is not installed here (no weights offline)"}
        res["search"] = {"found_within_1s": sum(found), "queries": len(found),
                         "rate": round(sum(found) / len(found), 3), "misses": misses}
        res["channels"] = channels
        if not args.no_hostile:
            res["hostile"] = hostile(d)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
