"""Damaged stores (index/store/check.py, index/store/core.py): readers skip a damaged batch with a warning, `bike check`
finds it, `bike repair` sets it aside (nothing deleted) and the videos become "not done"; killed --force runs
never show duplicate rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

import jobs.cli
from index.store.check import check_store, repair_store
from index.store import COMMITS, QUARANTINE, Store
from jobs.tag.records import ClipResult, ClipSpan, LabelRow, VideoResult, tables


def _clip(i, label="surf"):
    return ClipResult(ClipSpan(i, 10.0 * i, 10.0 * i + 10, [10.0 * i] * 2),
                      [LabelRow(label, 0.9, 0.8, 0.5, [0.5, 0.5], 10.0 * i)], [("phrase", 0.3)],
                      np.zeros((2, 4), np.float16), np.ones(4, np.float32))


def _add(store, vid, label="surf", replace=False):
    v = [VideoResult(vid, f"/videos/{vid}.mp4", clips=[_clip(0, label), _clip(1, label)])]
    return store.write_batch(tables("m1", v), "m1", {vid: "ok"}, replace=replace)


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "st", create=True)
    batches = [_add(s, v) for v in ("a", "b", "c")]
    return s, batches


def _count(root, table="labels"):
    return Store(root, warn=lambda m: None).connect().execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bike(*argv):
    return jobs.cli.main([str(a) for a in argv])


def test_truncated_shard_skipped_with_warning_then_checked_and_repaired(store, capsys):
    s, (a, b, c) = store
    _truncate(s.shard("labels", b))
    warnings = []
    r = Store(s.root, warn=warnings.append)
    assert r.connect().execute("SELECT count(*) FROM labels").fetchone()[0] == 4      # a and c: 2 clips each
    assert r.connect().execute("SELECT count(*) FROM videos").fetchone()[0] == 2      # other tables too
    assert len(warnings) == 1 and b in warnings[0] and "bike repair" in warnings[0]
    assert set(r.done_videos("m1")) == {"a", "c"}                  # b is tagged again by the next bike tag
    # bike sql still answers, with one warning line
    assert bike("sql", "--store", s.root, "SELECT count(*) AS n FROM clips") == 0
    out = capsys.readouterr()
    assert "4" in out.out and out.err.count("bike: warning:") == 1 and b in out.err
    # bike check: exit 1, names the batch and the table
    assert bike("check", "--store", s.root) == 1
    out = capsys.readouterr().out
    assert f"damaged: batch {b}: labels shard" in out and "bike repair" in out
    # bike repair: everything of batch b set aside, nothing deleted; the rest untouched
    def kept():
        return {str(p.relative_to(s.root)): p.read_bytes() for p in s.root.rglob("*.parquet")
                if QUARANTINE not in p.parts and b not in p.name}
    before = kept()
    assert bike("repair", "--store", s.root) == 0
    assert f"batch {b} set aside" in capsys.readouterr().out
    q = s.root / QUARANTINE / b
    assert sorted(p.name for p in q.iterdir()) == ["attributes.parquet", "clips.parquet", "commit.json",
                                                  "embeddings.parquet", "labels.parquet", "retag.txt",
                                                  "videos.parquet", "why.json"]
    assert (q / "retag.txt").read_text() == "/videos/b.mp4\n"
    assert kept() == before and len(before) == 10
    assert bike("check", "--store", s.root) == 0 and "OK" in capsys.readouterr().out
    assert set(Store(s.root).done_videos("m1")) == {"a", "c"}
    assert _count(s.root) == 4


def test_unreadable_commit_record_keeps_its_shards(store, capsys):
    s, (a, b, c) = store
    rec = s.root / COMMITS / f"{b}.json"
    rec.write_text(rec.read_text()[:20])                       # a truncated commit record
    r = Store(s.root, warn=lambda m: None)
    r.commits()
    assert _count(s.root) == 4 and b in r.damaged and str(rec) in r.damaged[b]
    assert r.recover()["uncommitted"] == 0                       # its shards are not "uncommitted": kept
    assert s.shard("labels", b).exists()
    report = check_store(r)
    assert report.damaged == [b] and "commit record" in report.lines()[1]
    repair_store(r)
    assert (s.root / QUARANTINE / b / "commit.json").exists() and (s.root / QUARANTINE / b / "labels.parquet").exists()
    assert check_store(Store(s.root)).ok


def test_deleted_shard_makes_its_videos_not_done(store):
    s, (a, b, c) = store
    s.shard("clips", c).unlink()
    r = Store(s.root, warn=lambda m: None)
    assert "c" not in r.done_videos("m1") and _count(s.root, "videos") == 2   # no "ok with no clips" row
    assert check_store(r).problems[0].reason == "missing"


def test_bit_flip_of_the_same_size_is_found_by_its_checksum(store):
    s, (a, b, c) = store
    p = s.shard("embeddings", a)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    report = check_store(Store(s.root))
    assert report.damaged == [a] and "SHA-256" in report.problems[0].reason


def test_force_over_a_damaged_batch_does_not_break_later_writers(store):
    s, (a, b, c) = store
    _truncate(s.shard("labels", a))
    w = Store(s.root, warn=lambda m: None)
    _add(w, "a", label="cooking", replace=True)                   # --force of video a
    Store(s.root, warn=lambda m: None).recover()                   # the next writer: no crash
    r = Store(s.root, warn=lambda m: None)
    labels = r.connect().execute("SELECT video_id, label FROM labels ORDER BY 1").fetchall()
    assert [x for x in labels if x[0] == "a"] == [("a", "cooking")] * 2


def test_killed_force_run_never_shows_duplicates(store):
    s, (a, b, c) = store
    s._supersede = lambda record: None                             # killed right after the replacing commit
    _add(s, "b", label="cooking", replace=True)
    r = Store(s.root)
    con = r.connect()
    assert con.execute("SELECT count(*) FROM videos WHERE video_id = 'b'").fetchone()[0] == 1
    assert con.execute("SELECT DISTINCT label FROM labels WHERE video_id = 'b'").fetchall() == [("cooking",)]
    assert r.read("videos", ["video_id"])["video_id"].to_pylist().count("b") == 1
    assert check_store(r).pending and r.recover()["replacements"] == 1
    assert check_store(Store(s.root)).ok


def test_stores_without_checksums_are_read_and_checked(store):
    s, batches = store
    for p in (s.root / COMMITS).glob("*.json"):
        rec = json.loads(p.read_text())
        rec.pop("files")
        p.write_text(json.dumps(rec))
    assert _count(s.root) == 6 and check_store(Store(s.root)).ok
    _truncate(s.shard("clips", batches[0]))
    assert check_store(Store(s.root)).damaged == [batches[0]] and _count(s.root) == 4


# ---- compaction (index/store/compact.py) and integrity -----------------------------------------------------------
from index.store.compact import collect_garbage, compact  # noqa: E402


@pytest.fixture()
def compacted(tmp_path):
    """Five one-video batches merged by `bike compact` into one; the merged batches' files still on disk
    (their grace period)."""
    s = Store(tmp_path / "st", create=True)
    batches = [_add(s, v) for v in ("a", "b", "c", "d", "e")]
    report = compact(Store(s.root))
    assert report.groups == 1 and report.merged == 5
    (rec,) = Store(s.root).commits()
    return s, batches, rec


def test_check_is_clean_right_after_compact(compacted, capsys):
    s, batches, rec = compacted
    assert "-c" in rec["batch"] and rec["compacted"] == batches
    assert set(rec["files"]) == {"videos", "clips", "labels", "attributes", "embeddings"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] == s.shard(t, rec["batch"]).stat().st_size
               for t, f in rec["files"].items())
    warnings = []
    r = Store(s.root, warn=warnings.append)
    assert [x["batch"] for x in r.commits()] == [rec["batch"]]
    assert _count(s.root) == 10 and not r.damaged and not warnings and r.superseded == set(batches)
    report = check_store(r)
    assert report.ok and not report.leftovers and report.superseded == batches and report.batches == 1
    assert report.rows == sum(rec["tables"].values())
    assert r.recover() == {"tmp": 0, "uncommitted": 0, "replacements": 0}      # merged files are not "of no batch"
    assert all(s.shard("labels", b).exists() for b in batches)
    assert bike("check", "--store", s.root) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "5 batch(es) merged by `bike compact`" in out and "no committed batch" not in out
    # the merged batches' files half deleted (a clean-up killed midway): still neither damaged nor leftovers
    s.shard("labels", batches[0]).unlink()
    s.shard("clips", batches[1]).unlink()
    (s.root / COMMITS / f"{batches[2]}.json").write_text("{")      # even an unreadable merged record
    warnings.clear()
    r = Store(s.root, warn=warnings.append)
    assert len(r.commits()) == 1 and _count(s.root) == 10 and not r.damaged and not warnings
    assert check_store(r).ok and bike("check", "--store", s.root) == 0
    assert bike("repair", "--store", s.root) == 0 and not (s.root / QUARANTINE).exists()
    # past the grace period: the clean-up removes them; still OK
    assert collect_garbage(Store(s.root), grace_s=0) == 4          # (the unreadable record is left to repair)
    assert check_store(Store(s.root)).ok and _count(s.root) == 10


def test_truncated_compacted_shard_is_left_out_and_its_merged_batches_are_read_again(compacted, capsys):
    """A compaction hides the batches it merged only while it is whole: damaged, it hides nothing, and the
    clean-up never deletes behind it; repair sets it aside alone."""
    s, batches, rec = compacted
    c = rec["batch"]
    _truncate(s.shard("labels", c))
    warnings = []
    r = Store(s.root, warn=warnings.append)
    assert [x["batch"] for x in r.commits()] == batches and list(r.damaged) == [c] and not r.superseded
    assert len(warnings) == 1 and c in warnings[0] and "bike repair" in warnings[0]
    assert _count(s.root) == 10 and _count(s.root, "videos") == 5 and set(r.done_videos("m1")) == set("abcde")
    assert collect_garbage(Store(s.root, warn=lambda m: None), grace_s=0) == 0
    assert all(s.shard("labels", b).exists() for b in batches)
    (s.root / COMMITS / f"{batches[4]}.json").write_text("{")     # a merged batch's record unreadable too
    r = Store(s.root, warn=lambda m: None)
    assert len(r.commits()) == 4 and sorted(r.damaged) == sorted([c, batches[4]]) and _count(s.root) == 8
    assert bike("check", "--store", s.root) == 1
    out = capsys.readouterr().out
    assert f"damaged: batch {c}: labels shard" in out and f"damaged: batch {batches[4]}: commit record" in out
    assert "2 damaged batch(es)" in out
    assert bike("repair", "--store", s.root) == 0
    assert f"batch {c} set aside" in capsys.readouterr().out
    q = s.root / QUARANTINE / c
    assert (q / "commit.json").exists() and (q / "labels.parquet").exists() and not (q / "merged").exists()
    assert all(s.shard("labels", b).exists() for b in batches[:4])   # the merged batches stay where they are
    assert bike("check", "--store", s.root) == 0 and "OK" in capsys.readouterr().out
    assert set(Store(s.root).done_videos("m1")) == set("abcd") and _count(s.root) == 8    # e: tagged again


def test_compaction_never_merges_a_damaged_shard(tmp_path):
    s = Store(tmp_path / "st", create=True)
    a, b, c, d, e, f = (_add(s, v) for v in "abcdef")
    p = s.shard("embeddings", b)                                  # same size: only the SHA-256 shows it
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    _truncate(s.shard("labels", e))                               # readers already leave e out
    warnings = []
    report = compact(Store(s.root, warn=warnings.append))
    assert report.damaged == [b, e] and "damaged" in report.line()
    assert report.groups == 1 and report.merged == 2              # c + d; a is alone, b and e are left alone
    r = Store(s.root, warn=lambda m: None)
    (merged,) = [x for x in r.commits() if "compacted" in x]
    assert merged["compacted"] == [c, d]
    assert [x["batch"] for x in r.commits()] == [a, b, merged["batch"], f]
    assert any(b in w and "not merged" in w for w in warnings)
    assert check_store(r).damaged == [b, e]                      # both still found, and only them


def test_pending_force_replacement_over_a_compacted_batch(compacted):
    s, batches, rec = compacted
    w = Store(s.root)
    w._supersede = lambda record: None                            # killed right after the replacing commit
    _add(w, "b", label="cooking", replace=True)
    r = Store(s.root)
    con = r.connect()
    assert con.execute("SELECT count(*) FROM videos WHERE video_id = 'b'").fetchone()[0] == 1
    assert con.execute("SELECT DISTINCT label FROM labels WHERE video_id = 'b'").fetchall() == [("cooking",)]
    assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 10
    assert r.read("videos", ["video_id"])["video_id"].to_pylist().count("b") == 1
    assert check_store(r).pending and check_store(r).ok
    # the next writer (here: a compaction) finishes the replacement in the compacted shard, then merges again
    report = compact(Store(s.root))
    assert report.groups == 1
    r = Store(s.root)
    assert len(r.commits()) == 1 and not check_store(r).pending and check_store(r).ok
    con = r.connect()
    assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 10
    assert con.execute("SELECT DISTINCT label FROM labels WHERE video_id = 'b'").fetchall() == [("cooking",)]


# ---- forged and malformed commit records -------------------------------------------------------------------
def _forge(root, name, **fields):
    rec = {"batch": name, "model_id": "m1", "videos": {}, "tables": {}, "files": {}, "replace": False,
           "cleaned": True, "created": 0.0, "covers": [], **fields}
    (root / COMMITS / f"{name}.json").write_text(json.dumps(rec))


@pytest.mark.parametrize("fields", [
    {},                                                           # the issue's record: no rows at all
    {"model_id": "m2", "tables": {"labels": 6, "clips": 6, "attributes": 3, "videos": 3, "embeddings": 6}},
    {"tables": {"labels": 6, "attributes": 3}},                  # rows claimed, no shard sizes recorded
    {"tables": {"labels": 6, "attributes": 3},                   # sizes recorded, shards that do not exist
     "files": {"labels": {"bytes": 900}, "attributes": {"bytes": 900}}},
], ids=["no-rows", "other-model", "no-sizes", "no-shards"])
def test_a_forged_compaction_record_hides_nothing_and_deletes_nothing(store, capsys, fields):
    s, (a, b, c) = store
    forged = f"{c}-cbad"                                          # sorts right after the batches it names
    _forge(s.root, forged, compacted=[a, b, c], **fields)
    warnings = []
    r = Store(s.root, warn=warnings.append)
    assert [x["batch"] for x in r.commits()] == [a, b, c] and not r.superseded and list(r.damaged) == [forged]
    assert _count(s.root) == 6 and set(r.done_videos("m1")) == {"a", "b", "c"}
    assert len(warnings) == 1 and forged in warnings[0]
    assert collect_garbage(Store(s.root, warn=lambda m: None), grace_s=0) == 0
    assert all(s.shard(t, x).exists() for t in ("labels", "videos") for x in (a, b, c))
    assert bike("check", "--store", s.root) == 1
    out = capsys.readouterr().out
    assert f"damaged: batch {forged}: " in out and "1 damaged batch(es)" in out
    # `bike compact` merges the real batches (every row kept), and never deletes behind the forged record
    assert bike("compact", "--store", s.root, "--grace", "0") == 0
    capsys.readouterr()
    assert _count(s.root) == 6 and set(Store(s.root).done_videos("m1")) == {"a", "b", "c"}


def test_the_forged_record_of_the_issue_is_reported_as_forged_and_set_aside(store, capsys):
    s, (a, b, c) = store
    _forge(s.root, f"{c}-c0", compacted=[a, b, c])
    (p,) = check_store(Store(s.root)).problems
    assert p.batch == f"{c}-c0" and p.table is None
    assert "forged or damaged compaction record" in p.line() and "0 rows, the batches it names hold 6" in p.line()
    assert bike("repair", "--store", s.root) == 0 and f"batch {c}-c0 set aside" in capsys.readouterr().out
    assert (s.root / QUARANTINE / f"{c}-c0" / "commit.json").exists()
    assert bike("check", "--store", s.root) == 0 and _count(s.root) == 6


def test_the_clean_up_verifies_a_compaction_in_full_before_deleting(compacted):
    """A same-size corruption of the compacted shard passes readers' cheap checks; the clean-up's full check
    (SHA-256, row count) does not, so the merged batches, the only intact copy, are kept."""
    s, batches, rec = compacted
    p = s.shard("labels", rec["batch"])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    warnings = []
    assert collect_garbage(Store(s.root, warn=warnings.append), grace_s=0) == 0
    assert all(s.shard("labels", b).exists() and (s.root / COMMITS / f"{b}.json").exists() for b in batches)
    assert len(warnings) == 1 and "does not hold what its record says" in warnings[0] and "SHA-256" in warnings[0]


def test_a_replacement_during_the_grace_period_keeps_the_compaction_trusted(compacted):
    """--force after a compaction removes rows from the compacted shard AND from the merged batches still on
    disk, so their rows keep adding up to no more than the compaction's: they stay hidden, nothing doubles."""
    s, batches, rec = compacted
    _add(Store(s.root), "b", label="cooking", replace=True)
    r = Store(s.root)
    assert len(r.commits()) == 2 and set(batches) <= r.superseded and not r.damaged and not r.forged
    assert _count(s.root) == 10 and _count(s.root, "videos") == 5
    con = r.connect()
    assert con.execute("SELECT DISTINCT label FROM labels WHERE video_id = 'b'").fetchall() == [("cooking",)]
    assert check_store(r).ok
    assert collect_garbage(Store(s.root), grace_s=0) == 5 and _count(s.root) == 10


def test_check_and_repair_speak_the_format_vocabulary(store, capsys):
    s, (a, b, c) = store
    assert bike("check", "--store", s.root, "--format", "json") == 0
    got = json.loads(capsys.readouterr().out)
    assert got["ok"] is True and got["batches"] == 3 and got["problems"] == [] and got["store"] == str(s.root)
    _truncate(s.shard("labels", b))
    assert bike("check", "--store", s.root, "--format", "json") == 1
    got = json.loads(capsys.readouterr().out)
    assert got["ok"] is False and got["damaged"] == [b]
    assert got["problems"][0]["batch"] == b and got["problems"][0]["table"] == "labels"
    assert bike("check", "--store", s.root, "--format", "jsonl") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["damaged"] == [b]
    assert bike("check", "--store", s.root) == 1 and "bike check: damaged: batch" in capsys.readouterr().out
    assert bike("repair", "--store", s.root, "--format", "json") == 0
    got = json.loads(capsys.readouterr().out)
    assert [q["batch"] for q in got["quarantined"]] == [b] and got["quarantined"][0]["retag"] == ["/videos/b.mp4"]
    assert got["quarantined"][0]["videos"] == 1 and got["quarantined"][0]["folder"].endswith(f"{QUARANTINE}/{b}")
    assert bike("repair", "--store", s.root, "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[0] == "store,quarantined,recovered"
    with pytest.raises(SystemExit):
        bike("check", "--store", s.root, "--format", "yaml")


# ---- a shard corrupted without changing its size ---------------------------------------------------------
def _spoil_pages(path):
    """Overwrite a shard's data pages (everything between the leading magic and the footer) with 0xFF: same
    size, intact footer, so only a reader that decodes the pages (or the SHA-256) can tell."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4:len(data) - 8 - footer] = b"\xff" * (len(data) - 12 - footer)
    path.write_bytes(bytes(data))


@pytest.fixture()
def search_store(tmp_path, tiny_model):
    import engine
    from searchstore import add_video, random_clips
    labels = engine.load_labels("ucf101")
    s = Store(tmp_path / "st", create=True)
    rng = np.random.default_rng(0)
    for v in range(4):
        add_video(s, tiny_model, labels, f"v{v}", random_clips(rng, 2, 8, tiny_model.embed_dim))
    batches = {v: c["batch"] for c in Store(s.root).commits() for v in c["videos"]}
    return s, batches


@pytest.mark.parametrize("table", ["clips", "embeddings"])
def test_search_and_sql_skip_a_same_size_corrupt_shard_with_a_warning(search_store, capsys, table):
    s, batches = search_store
    bad = batches["v1"]
    _spoil_pages(s.shard(table, bad))
    assert bike("search", "--store", s.root, "--clip", "v0/0", "-k", "8", "--format", "json") == 0
    out = capsys.readouterr()
    found = json.loads(out.out)
    hits = {h["video_id"] for h in (found["results"] if isinstance(found, dict) else found)}
    assert hits == {"v0", "v2", "v3"}, hits
    assert out.err.count("bike: warning:") == 1 and bad in out.err and "bike repair" in out.err
    assert bike("sql", "--store", s.root, "--format", "json",
                f"SELECT count(*) AS n, count(DISTINCT video_id) AS v FROM {table}") == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == [{"n": 6, "v": 3}]
    assert out.err.count("bike: warning:") == 1 and bad in out.err
    assert bike("sql", "--store", s.root, "SELECT nope FROM clips") == 2       # the user's own error: no scan
    assert "query failed" in capsys.readouterr().err
    assert bike("check", "--store", s.root) == 1
    assert f"damaged: batch {bad}: {table} shard: SHA-256 differs" in capsys.readouterr().out
