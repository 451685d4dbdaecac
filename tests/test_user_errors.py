"""Errors that used to be tracebacks are one line `bike: error: <file>: <reason>` with exit status 2:
non-UTF-8 list files, devices in train/eval lists, --device gpu / cuda on a CPU-only host, a full disk."""
from __future__ import annotations

import errno

import pytest

import jobs.cli
from index.store import Store, StoreError
from tests.media import make_video

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]


def bike(*argv) -> int:
    return jobs.cli.main([str(a) for a in argv])


def _one_line(capsys, start="bike: error: "):
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("bike: model:")]
    assert len(err) == 1 and err[0].startswith(start) and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("command", ["train", "eval", "adapt"])
def test_non_utf8_list_files(tmp_path, capsys, command):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"caf\xe9.mp4 0\n")                       # Latin-1, not UTF-8
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,a\n1,b\n")
    extra = {"train": ["--labels", labels, "--out", tmp_path / "out"], "eval": ["--labels", labels],
             "adapt": ["--shots", "1", "--out", tmp_path / "out"]}[command]
    assert bike(command, lst, *extra, *TINY) == 2
    line = _one_line(capsys)
    assert str(lst) in line and "UTF-8" in line


def test_device_in_a_training_list_is_refused(tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text("/dev/zero 0\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,a\n")
    assert bike("eval", lst, "--labels", labels, *TINY) == 2
    assert "not a regular file" in _one_line(capsys)


@pytest.mark.parametrize("device, match", [("cuda", "not available"), ("cuda:7", "not available")])
def test_bad_device_is_one_line(tmp_path, capsys, device, match):
    import torch
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this host has the GPU")
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    assert bike("classify", video, *TINY, "--device", device) == 2
    line = _one_line(capsys)
    assert f"--device {device}" in line and match in line


@pytest.mark.parametrize("device, match", [("gpu", "say 'cuda'"), ("tpu9", "give cpu, cuda or cuda:N")])
def test_device_names_that_are_no_device_are_refused_at_parse_time(tmp_path, capsys, device, match):
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    with pytest.raises(SystemExit) as e:
        bike("classify", video, *TINY, "--device", device)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --device" in last and match in last and "Traceback" not in last


def test_disk_full_while_writing_a_batch_keeps_the_store(tmp_path, monkeypatch):
    """ENOSPC in the middle of a batch: a StoreError naming the store and 'disk full'; the committed batches
    are untouched and the half-written batch never becomes visible."""
    import pyarrow.parquet as pq
    from tests.test_check import _add
    s = Store(tmp_path / "st", create=True)
    _add(s, "a")
    real = pq.write_table

    def full(table, where, *a, **k):
        if "labels" in str(where):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)
    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(StoreError, match="disk full|No space left"):
        _add(s, "b")
    monkeypatch.setattr(pq, "write_table", real)
    r = Store(s.root)
    assert set(r.done_videos("m1")) == {"a"}
    assert r.connect().execute("SELECT count(*) FROM labels").fetchone()[0] == 2
    assert not list((s.root / "labels").glob("*.tmp")) and r.recover()["uncommitted"] >= 1


def test_unwritable_adapt_out_is_one_line(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    lst = tmp_path / "shots.txt"
    lst.write_text(f"{video} dog\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert bike("adapt", lst, "--shots", "1", "--out", blocker / "out", *TINY) == 2
    assert str(blocker / "out") in _one_line(capsys)
