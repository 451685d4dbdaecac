"""index/parquetio.read_parquet: the same table as ``pyarrow.parquet.read_table`` (columns, schema conformance)
read in the calling thread for Python-backed sources, and damaged bytes raise as pyarrow does."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from index.store.parquetio import read_parquet, threads_safe


def _bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=2)       # several row groups
    return buf.getvalue()


TABLE = pa.table({"a": pa.array([1, 2, 3, 4, 5], pa.int32()), "b": ["x", "y", None, "w", "v"],
                  "c": pa.array([0.5] * 5, pa.float32())})


@pytest.mark.parametrize("columns", [None, ["c", "a"]])
@pytest.mark.parametrize("schema", [None, pa.schema([("b", pa.string()), ("a", pa.int64()), ("d", pa.float64())])])
def test_same_table_as_read_table(tmp_path, columns, schema):
    if schema is not None and columns is not None:
        columns = ["a", "d"]
    path = tmp_path / "t.parquet"
    pq.write_table(TABLE, path, row_group_size=2)
    want = pq.read_table(path, columns=columns, schema=schema)
    for source, fs in [(_bytes(TABLE), None), (str(path), None), (path, None), (str(path), pafs.LocalFileSystem()),
                       (io.BytesIO(_bytes(TABLE)), None)]:
        got = read_parquet(source, filesystem=fs, columns=columns, schema=schema)
        assert got.schema == want.schema and got.equals(want), (type(source), fs)


def test_only_arrow_native_paths_use_the_thread_pool(tmp_path):
    assert threads_safe(str(tmp_path / "x")) and threads_safe(tmp_path / "x")
    assert threads_safe("x", pafs.LocalFileSystem())
    assert not threads_safe(b"PAR1") and not threads_safe(io.BytesIO())
    assert not threads_safe("bucket/x", pafs.PyFileSystem(pafs.FSSpecHandler(__import__("fsspec").filesystem("memory"))))


def test_damaged_bytes_raise_like_pyarrow():
    with pytest.raises(pa.ArrowException):
        read_parquet(_bytes(TABLE)[:40])
