"""The Ray decode worker of ``bike tag`` stays light (issue 19): no torch in its process, a small resident size.

Ray imports a remote function's whole module on the worker that runs it; when the decode task lived in
``jobs.tag.pipeline`` (now jobs/tag/rayrunner.py, beside the model actor, which imports ``jobs.tag.scoring`` and torch), every decode worker held
torch (~620 MB resident on a CPU host, ~850 MB reported with CUDA, where PyAV + numpy need ~150 MB). ``jobs.tag.decodetask.worker_report`` decodes a video on
a decode worker, exactly as ``decode_task`` does, and reports what its process holds.
"""
from __future__ import annotations

import subprocess
import sys

from media import make_video

#: Resident memory allowed to a decode worker after decoding a small video (MB): ~150 measured, ~620 with torch.
MAX_RSS_MB = 300


def test_a_decode_worker_has_no_torch_and_a_small_resident_size(ray_cluster, tmp_path):
    from jobs.tag.decodetask import decode_task, worker_report
    from jobs.tag.stages import DecodeStage
    from jobs.tag.tasks import DecodeSpec, DecodeTask, End
    video = make_video(tmp_path / "a.mp4", seconds=2.0)
    stage = DecodeStage(DecodeSpec(frames=4, window_s=1.0, size=32, resize=36, chunk_clips=8, timeout_s=60.0,
                                   threads=1, decoder="pyav"))
    task = DecodeTask("v", str(video))
    msgs = list(ray_cluster.get(list(decode_task.remote(stage, task))))   # the real task, end to end
    end = [m for m in msgs if isinstance(m, End)][-1]
    assert end.error is None and end.clips == 2 and "CPU" in dict(end.held)
    report = ray_cluster.get(worker_report.remote(stage, task))
    assert report["error"] is None and report["clips"] == 2            # it decoded the video, in a decode worker
    assert report["torch"] is False, report
    assert report["rss_mb"] <= MAX_RSS_MB, report


def test_the_decode_task_module_imports_no_torch():
    """The same check without Ray: importing the module a decode worker imports loads no torch."""
    code = "import sys, jobs.tag.decodetask; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
