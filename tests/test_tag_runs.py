"""``bike tag`` as a user meets it: the counts of a rerun, broken links, no store left by a job that cannot
start (empty source, weights neither cached nor downloadable), what start-up says, what Ctrl-C says, and no
Ray process left behind by a killed driver.

In-process runs share the session's Ray (``ray_cluster``); the runs that start their own Ray, or are
interrupted or killed, are subprocesses.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

import jobs.cli
from index.store import Store
from jobs.tag.sources import list_sources
from media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
LABELS = "dog,cat,surfing"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "c.mp4", seconds=2, fps=10, size=(96, 64),
                      pattern="testsrc").read_bytes()


def distinct(folder, names, clip):
    """Files of distinct content (trailing bytes change the content id, the video decodes the same)."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(clip + b"\0" + name.encode())


def env_without_ray():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT)
    return env


# ---- counts of a rerun --------------------------------------------------------------------------------------
def test_rerun_whose_first_files_are_stored_counts_each_file_once(ray_cluster, tmp_path, clip, capsys):
    src, store = tmp_path / "v", tmp_path / "s"
    distinct(src, ["a0.mp4", "a1.mp4"], clip)
    args = ["tag", src, "--store", store, "--labels", LABELS, *TINY, "--no-index", "--no-progress"]
    assert bike(*args) == 0
    capsys.readouterr()
    distinct(src, ["b0.mp4", "b1.mp4"], clip)                 # listed after the stored ones
    (src / "c.mp4").write_bytes((src / "a0.mp4").read_bytes())  # a copy of a stored file
    assert bike(*args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "2 ok, 0 error, 3 skipped (2 already in the store, 1 same content as another listed file) of 5 listed" \
        in first, first


# ---- broken symbolic links ----------------------------------------------------------------------------------
def test_broken_links_in_a_folder_are_listed(tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    (d / "ok.mp4").write_bytes(b"x")
    os.symlink("nowhere.mp4", d / "dangling.mp4")
    os.symlink("loop.mp4", d / "loop.mp4")
    os.symlink("nowhere.txt", d / "notes.txt")                  # not a video name: skipped by extension
    s = list_sources([d])
    assert s.videos == [str(d / n) for n in ("dangling.mp4", "loop.mp4", "ok.mp4")]
    assert s.skipped["not video files (by extension)"] == 1
    g = list_sources([str(d / "*.mp4")])
    assert g.videos == s.videos


def test_broken_links_become_error_rows_with_the_reason(ray_cluster, tmp_path, clip, capsys):
    src, store = tmp_path / "v", tmp_path / "s"
    distinct(src, ["good.mp4"], clip)
    os.symlink("gone.mp4", src / "dangling.mp4")
    os.symlink("loop.mp4", src / "loop.mp4")
    assert bike("tag", src, "--store", store, "--labels", LABELS, *TINY, "--no-index", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "1 ok, 2 error, 0 skipped" in out, out
    assert f"error: {src / 'dangling.mp4'}: dangling symbolic link to gone.mp4" in out
    assert f"error: {src / 'loop.mp4'}: symbolic link loop" in out
    con = Store(store).connect()
    try:
        rows = con.execute("SELECT path, status, error FROM videos WHERE status = 'error' ORDER BY path").fetchall()
    finally:
        con.close()
    assert rows == [(str(src / "dangling.mp4"), "error", "dangling symbolic link to gone.mp4"),
                    (str(src / "loop.mp4"), "error", "symbolic link loop")]


# ---- jobs that cannot start leave nothing -------------------------------------------------------------------
def test_empty_source_creates_no_store(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert bike("tag", tmp_path / "empty", "--store", tmp_path / "s", "--labels", LABELS, *TINY) == 2
    assert "no video files" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_uncached_weights_without_network_fail_fast_in_one_line(tmp_path, clip):
    """HF_HUB_OFFLINE unset, the hub unreachable (here: a closed port; HF_ENDPOINT is the hub client's own
    setting), nothing cached: before the fix the hub client retried for over a minute, then the job failed
    and left an empty store."""
    distinct(tmp_path / "v", ["a.mp4"], clip)
    env = env_without_ray()
    env.pop("HF_HUB_OFFLINE")
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf"))
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "tag", str(tmp_path / "v"), "--store",
                          str(tmp_path / "s"), "--labels", LABELS, "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bike: error: ") and "cannot be reached" in err[0], err
    assert "bike weights" in err[0] and "not cached" in err[0]
    assert not (tmp_path / "s").exists()
    assert took < 25, took          # start-up (imports) + at most 3 s of probing; it took 68 s before the fix


def test_a_host_that_never_answers_is_unreachable_within_the_bound():
    import socket

    from jobs.tag.precheck import unreachable
    with socket.socket() as silent:                  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        why = unreachable(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=1.0)
        took = time.monotonic() - t0
    assert why is not None and took < 3, (why, took)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))                # bound, not listening: refused at once
        assert "refused" in unreachable(f"http://127.0.0.1:{closed.getsockname()[1]}/", timeout_s=1.0)


# ---- start-up messages, Ctrl-C --------------------------------------------------------------------------------
def test_start_up_says_what_it_does_unless_quiet(ray_cluster, tmp_path, clip, capsys):
    distinct(tmp_path / "v", ["a.mp4"], clip)
    assert bike("tag", tmp_path / "v", "--store", tmp_path / "s", "--labels", LABELS, *TINY, "--no-index",
                "--no-progress", "--runner", "ray") == 0
    assert "bike tag: loading the model (bike-tiny, RANDOM WEIGHTS) in 1 Ray actor(s)..." in capsys.readouterr().err
    assert bike("tag", tmp_path / "v", "--store", tmp_path / "s2", "--labels", LABELS, *TINY, "--no-index",
                "-q") == 0
    assert "loading the model" not in capsys.readouterr().err


def _processes():
    """pid → (ppid, pgid, cmdline start) of every live (non-zombie) process."""
    out = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        pid = int(stat.split("/")[2])
        try:
            with open(stat) as f:
                data = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read(200)
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        if fields[0] != "Z":
            out[pid] = (int(fields[1]), int(fields[2]), cmd)
    return out


def _tree(procs, root):
    kids: dict = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(kids.get(pid, []))
    return out


@pytest.mark.slow                                   # ~25 s idle, 80 s on a loaded 2-core host
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")
def test_ctrl_c_says_what_was_committed_and_how_to_continue(tmp_path, clip):
    src, store = tmp_path / "v", tmp_path / "s"
    distinct(src, [f"v{i:02d}.mp4" for i in range(24)], clip)
    cmd = [sys.executable, "-m", "jobs.cli", "tag", str(src), "--store", str(store), "--labels", LABELS, *TINY,
           "--batch", "2", "--model-batch", "2", "--no-index", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_without_ray(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(glob.glob(str(store / "_commits" / "*.json"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)                         # Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "bike: starting Ray (local, " in err and "bike tag: loading the model (bike-tiny" in err
    last = err.strip().splitlines()[-1]
    done = Store(store).done_videos(Store(store).model_ids().pop())
    assert 2 <= len(done) < 24
    assert last == (f"bike: interrupted: {len(done)} video(s) committed to {store} in this run; rerun the same "
                    "command to continue (what the store holds is skipped)"), err[-3000:]


@pytest.mark.slow                                   # ~25 s idle, 70 s on a loaded 2-core host
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")
def test_killed_driver_leaves_no_ray_process_of_its_session(tmp_path, clip):
    """SIGKILL of the driver only (its process group stays): Ray's raylet dies with it, and the dashboard and
    runtime-env agents it had started must not live on (jobs/tag/reaper.py)."""
    src, store = tmp_path / "v", tmp_path / "s"
    distinct(src, [f"v{i:02d}.mp4" for i in range(24)], clip)
    cmd = [sys.executable, "-m", "jobs.cli", "tag", str(src), "--store", str(store), "--labels", LABELS, *TINY,
           "--batch", "2", "--model-batch", "2", "--no-index", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_without_ray(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray_pids: set = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if glob.glob(str(store / "_commits" / "*.json")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be killed"
        procs = _processes()
        ray_pids = {p for p in _tree(procs, proc.pid) - {proc.pid} if b"reaper.py" not in procs[p][2]}
        agents = {p for p in ray_pids if procs[p][2].startswith((b"ray::DashboardAgent", b"ray::RuntimeEnvAgent"))}
        assert agents, "no Ray agents found: Ray changed how it runs them; update this test"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            now = _processes()
            left = {p for p in ray_pids if p in now} | {p for p, (_, pgid, c) in now.items()
                                                          if pgid == proc.pid and c.startswith(b"ray::")}
            if not left:
                break
            time.sleep(0.2)
        assert not left, f"still running 10 s after the driver was killed: {[_processes().get(p) for p in left]}"
    finally:
        now = _processes()
        for p in [p for p, (_, pgid, _) in now.items() if pgid == proc.pid] + [p for p in ray_pids if p in now]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
