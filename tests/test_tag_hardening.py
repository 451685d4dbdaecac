"""`bike tag` with hostile or careless input, on the real Ray local cluster: FIFOs and devices in a list file,
relative paths, a missing file that appears later, a crash between the last commit and the index step."""
from __future__ import annotations

import os
import shutil
import signal

import jobs.cli
from index.store import Store
from media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing",
        "--no-progress", "--batch", "2"]


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


def rows(store, q):
    con = Store(store).connect()
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def test_fifo_devices_relative_paths_late_files_and_a_lost_index(ray_cluster, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_video(corpus / "a.mp4", seconds=2, fps=8, size=(64, 48), pattern="testsrc")
    os.mkfifo(corpus / "pipe.mp4")
    (corpus / "list.txt").write_text("a.mp4\npipe.mp4\n/dev/zero\nlater.mp4\n")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    signal.alarm(240)                                  # a hang (FIFO, /dev/zero) fails instead of blocking
    try:
        assert bike("tag", "corpus/list.txt", "--store", "store", *TINY) == 0
        got = dict(rows(store, "SELECT path, coalesce(error, status) FROM videos"))
        assert set(got) == {str(corpus / "a.mp4"), str(corpus / "pipe.mp4"), "/dev/zero",
                            str(corpus / "later.mp4")}                       # absolute, normalised paths
        assert got[str(corpus / "a.mp4")] == "ok" and "FIFO" in got[str(corpus / "pipe.mp4")]
        assert "device" in got["/dev/zero"] and got[str(corpus / "later.mp4")] == "file not found"

        # the missing file appears: it is tagged, and its "file not found" row goes
        make_video(corpus / "later.mp4", seconds=2, fps=8, size=(64, 48), pattern="numbered")
        assert bike("tag", "corpus/list.txt", "--store", "store", *TINY) == 0
        later = rows(store, f"SELECT status, error FROM videos WHERE path = '{corpus / 'later.mp4'}'")
        assert later == [("ok", None)]
        assert rows(store, "SELECT count(*) FROM videos") == [(4,)]

        # killed after the last commit, before the index step: the rerun builds the index anyway
        shutil.rmtree(store / "_index")
        capsys.readouterr()
        assert bike("tag", "corpus/list.txt", "--store", "store", *TINY) == 0
        out = capsys.readouterr().out
        assert "4 skipped" in out and "new index" in out and (store / "_index").is_dir()
    finally:
        signal.alarm(0)
