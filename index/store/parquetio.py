"""Read one Parquet file into an Arrow table, synchronously, in the calling thread.

Why not ``pyarrow.parquet.read_table``: it reads through the dataset API, whose scan hands the file's
``FileSource`` to Arrow's thread pools and lets the last reference go on a pool thread, some time after the
call returned. When that source wraps a Python object (the bytes of a small file read whole from the store,
an ``io.BytesIO``, a file of an fsspec filesystem behind ``pyarrow.fs.PyFileSystem`` on object storage),
releasing it needs the GIL. If the interpreter is already finalising (a command that read a small file just
before it exited: a ``bike tag`` rerun with nothing to do), the pool thread cannot take the GIL, is made to
exit, and the forced unwind through a ``noexcept`` destructor aborts the whole process after its work was
done ("terminate called without an active exception", exit status -6; seen about once in 40 runs on a
loaded 2-core machine, with the backtrace in ``ParquetFileFragment::~ParquetFileFragment``).

Even ``ParquetFile.read`` decodes row groups on pool threads when ``use_threads`` is on, and a pool thread may
drop the last reference to the column readers (and with them to the Python-backed file) after the call
returned: seen in the same way on a rerun that read a checkpoint's store. So :func:`read_parquet` reads in the
calling thread whenever the source is backed by a Python object (:func:`threads_safe`), and the file is
released here, with the GIL, when the call returns. A local file through Arrow's own filesystem holds no
Python object and keeps the thread pool.
"""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def threads_safe(source, filesystem=None) -> bool:
    """Whether Arrow's thread pool may read ``source``: only a path in an Arrow-native filesystem (local, or
    Arrow's own S3) holds no Python object that a pool thread could be left to release at exit."""
    return isinstance(source, (str, os.PathLike)) and not isinstance(filesystem, pafs.PyFileSystem) and (
        filesystem is None or isinstance(filesystem, pafs.FileSystem))


def read_parquet(source, *, filesystem=None, columns=None, schema: "pa.Schema | None" = None) -> pa.Table:
    """The table in ``source`` (a path in ``filesystem``, or bytes / a file object when ``filesystem`` is None).

    ``columns``: read only these (in this order). ``schema``: the table conforms to it as
    ``pyarrow.parquet.read_table(schema=...)`` would: its columns in its order (those of ``columns`` when
    given), each cast to the schema's type, a column the file lacks all null. Damaged input raises what
    pyarrow raises (``ArrowException``, ``OSError``).
    """
    threads = threads_safe(source, filesystem)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = pa.BufferReader(source)
    with pq.ParquetFile(source, filesystem=filesystem) as f:
        present = set(f.schema_arrow.names)
        if schema is None:
            return f.read(columns=columns, use_threads=threads)
        want = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        t = f.read(columns=[n for n in want.names if n in present], use_threads=threads)
    return pa.table([t.column(fd.name).cast(fd.type) if fd.name in present else pa.nulls(t.num_rows, fd.type)
                     for fd in want], schema=want)
