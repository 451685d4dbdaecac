"""A real S3-compatible server for tests: moto's server mode on a free loopback port (shared by
tests/test_remote.py and tests/test_store_s3.py)."""
from __future__ import annotations

import os
from contextlib import contextmanager

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_s3(*buckets: str):
    """Start moto's S3 server on 127.0.0.1:<free port>, point this process at it (``AWS_ENDPOINT_URL`` and test
    credentials, restored afterwards), create ``buckets`` → ``{"endpoint": url, "client": boto3 client}``."""
    from moto.server import ThreadedMotoServer
    saved = {k: os.environ.get(k) for k in [*CREDS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        import boto3
        client = boto3.client("s3", endpoint_url=endpoint)
        for b in buckets:
            client.create_bucket(Bucket=b)
        yield {"endpoint": endpoint, "client": client}
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
