"""bike sql: read-only queries over a store's DuckDB views; writes are refused by statement type."""
from __future__ import annotations

import json

import pytest

from index.store.sql import SQLError, check_read_only, query
from index.store import Store
from jobs.tag.records import ClipSpan, ClipResult, LabelRow, VideoResult, tables


def _clip(i, label):
    import numpy as np
    return ClipResult(ClipSpan(i, 10.0 * i, 10.0 * i + 10, [10.0 * i] * 2),
                      [LabelRow(label, 0.9, 0.8, 0.5, [0.5, 0.5], 10.0 * i)], [("phrase", 0.3)],
                      np.zeros((2, 4), np.float16), np.ones(4, np.float32))


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "store", create=True)
    vids = [VideoResult("v1", "/a.mp4", clips=[_clip(0, "surfing"), _clip(1, "cooking")]),
            VideoResult("v2", "/b.mp4", clips=[_clip(0, "surfing")]),
            VideoResult.failed("v3", "/c.mp4", "empty file")]
    s.write_batch(tables("m1", vids), "m1", {v.video_id: v.status for v in vids})
    return s


@pytest.mark.parametrize("sql", [
    "DELETE FROM videos", "INSERT INTO videos SELECT * FROM videos", "UPDATE labels SET label = 'x'",
    "CREATE TABLE t AS SELECT 1", "DROP VIEW videos", "COPY (SELECT 1) TO '/tmp/x.csv'",
    "ATTACH '/tmp/x.duckdb' AS x", "EXPORT DATABASE '/tmp/x'", "SET threads = 1", "INSTALL httpfs",
    "LOAD httpfs", "PRAGMA enable_profiling", "SELECT 1; DROP VIEW videos", "/* hi */ delete from labels",
])
def test_writes_are_refused(store, sql):
    with pytest.raises(SQLError, match="read-only"):
        query(store, sql)


def test_reads_are_allowed(store):
    for sql in ["SELECT 1", "WITH x AS (SELECT 1) SELECT * FROM x", "DESCRIBE labels", "SHOW TABLES",
                "EXPLAIN SELECT * FROM labels", "SUMMARIZE videos"]:
        check_read_only(sql)
    cols, rows = query(store, "SELECT label, count(*) AS n FROM labels WHERE rank = 0 GROUP BY label "
                              "ORDER BY n DESC, label")
    assert cols == ["label", "n"] and rows == [("surfing", 2), ("cooking", 1)]
    _, rows = query(store, "SELECT path, error FROM videos WHERE status = 'error'")
    assert rows == [("/c.mp4", "empty file")]


def test_cli_formats_and_exit_codes(store, capsys, monkeypatch):
    import jobs.cli
    monkeypatch.setattr(jobs.cli.entry, "COMMANDS", ["sql"])
    assert jobs.cli.main(["sql", "--store", str(store.root), "--format", "json",
                          "SELECT clip_id, label FROM labels ORDER BY clip_id"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {"clip_id": "v1/0", "label": "surfing"}
    assert jobs.cli.main(["sql", "--store", str(store.root), "--format", "csv", "SELECT 1 AS a"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a", "1"]
    assert jobs.cli.main(["sql", "--store", str(store.root), "SELECT saliency FROM labels LIMIT 1"]) == 0
    assert "[0.5, 0.5]" in capsys.readouterr().out
    assert jobs.cli.main(["sql", "--store", str(store.root), "DROP VIEW videos"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert jobs.cli.main(["sql", "--store", str(store.root / "nope"), "SELECT 1"]) == 2
    assert "no such store" in capsys.readouterr().err


# ---- the sandbox: DuckDB's own configuration, tested without the statement check in front of it ----------
def _tree(root):
    import hashlib
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 42) TO '{out}'", "EXPLAIN ANALYZE COPY (SELECT 42) TO '{out}'",
    "COPY videos TO '{shard}' (FORMAT parquet)", "EXPORT DATABASE '{tmp}/exported'",
    "ATTACH '{tmp}/x.duckdb' AS x", "SELECT * FROM read_text('{secret}')", "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM read_csv('{secret}')", "SELECT * FROM glob('{tmp}/*')", "SET enable_external_access = true",
    "RESET allowed_paths", "SET temp_directory = '{tmp}'", "LOAD httpfs", "INSTALL httpfs",
    "SELECT * FROM read_parquet('{tmp}/*/*.parquet')",
])
def test_sandbox_refuses_file_access_writes_and_settings_on_its_own(store, tmp_path, sql):
    from index.store.sql import connect_readonly
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    shard = store.files("videos")[0]
    before = _tree(tmp_path)
    con = connect_readonly(store)
    import duckdb
    with pytest.raises(duckdb.Error) as e:
        con.execute(sql.format(out=tmp_path / "out.csv", shard=shard, tmp=tmp_path, secret=secret)).fetchall()
    assert "top secret" not in str(e.value)
    assert _tree(tmp_path) == before                     # nothing written, nothing rewritten
    assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 3     # the store's views still read
    assert con.execute("SELECT current_setting('enable_external_access')").fetchone()[0] is False


@pytest.mark.parametrize("sql", [
    "EXPLAIN ANALYZE COPY (SELECT 42) TO '{out}'", "SELECT * FROM read_text('{secret}')",
    "SELECT content FROM read_text('{secret}') UNION ALL SELECT path FROM videos", "SELECT * FROM glob('/root/*')",
    "SELECT * FROM read_blob('/etc/shadow')",
])
def test_bike_sql_attacks_fail_with_one_line_and_change_nothing(store, tmp_path, capsys, monkeypatch, sql):
    import jobs.cli
    monkeypatch.setattr(jobs.cli.entry, "COMMANDS", ["sql"])
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    before = _tree(tmp_path)
    assert jobs.cli.main(["sql", "--store", str(store.root),
                          sql.format(out=tmp_path / "out.csv", secret=secret)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bike: error:") and "top secret" not in err and "Traceback" not in err
    assert _tree(tmp_path) == before
    cols, rows = query(store, "SELECT count(*) FROM videos")
    assert rows == [(3,)]
