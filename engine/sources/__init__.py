"""engine.sources: the byte sources the video decoders read, besides local files: objects in object storage.

* :mod:`engine.sources.remote`: ``s3://``, ``gs://`` and ``http(s)://`` URLs: the S3/HTTP clients (fsspec,
  boto3, imported lazily on first use), retries with backoff, listing a prefix or glob, content ids of
  objects, and decoding an object (streamed, or through a bounded spool file).
* :mod:`engine.sources.ranged`: :class:`~engine.sources.ranged.RemoteSource`, one object read with ranged
  GETs as a seekable ``engine.video`` byte source (read-ahead, a bounded block cache, hashed on the way).

A local file needs no source object: the decoders open its path. Like the rest of ``engine``, nothing here
imports Ray, DuckDB or the store (``index``): what the store remembers about objects (their content ids) is
kept by :mod:`index.store.remoteids`.
"""
