"""Starts a real firelake process on port 0 with a fresh data directory for each test."""
import os
import pathlib
import signal
import subprocess

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("FIRELAKE_BIN", str(ROOT / "target" / "debug" / "firelake"))
# CI provides every precondition (.ci/run sets CI=true): there a missing one is a failure.
IN_CI = os.environ.get("CI") == "true"


def require(present, what):
    """Skips the test when `what` is missing, or fails it in CI, which must provide it."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"CI must provide {what}", pytrace=False)
    pytest.skip(f"needs {what}")


class Firelake:
    def __init__(self, data_dir, *args, env=None, stderr=None):
        self.data_dir = pathlib.Path(data_dir)
        self.proc = subprocess.Popen(
            [BINARY, "--port", "0", "--data-dir", str(self.data_dir), *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true", **(env or {})},
        )
        line = self.proc.stdout.readline()
        url = next(w for w in line.split() if w.startswith("http://"))
        self.endpoint = url.rstrip(",")
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.data_dir = self.data_dir.resolve()

    def client(self, service, access_key="test", secret="test", **config):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=access_key, aws_secret_access_key=secret,
            config=Config(**config) if config else None,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.fixture
def firelake(tmp_path):
    server = Firelake(tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def start_firelake(tmp_path):
    """Starts firelake with extra options; every server started is stopped at the end."""
    servers = []

    def start(*args, data_dir=None, env=None, stderr=None):
        server = Firelake(data_dir or tmp_path / "data", *args, env=env, stderr=stderr)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def flush(server, stream=None):
    """POST /_firelake/flush; answers (HTTP status, JSON body)."""
    import json
    import urllib.error
    import urllib.request

    url = f"{server.endpoint}/_firelake/flush" + (f"?stream={stream}" if stream else "")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=90) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def streams_status(server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.endpoint}/_firelake/streams", timeout=10) as response:
        return {s["name"]: s for s in json.loads(response.read())["streams"]}


@pytest.fixture
def s3(firelake):
    return firelake.client("s3")


@pytest.fixture
def aws_env(firelake):
    """Environment for the AWS CLI: dummy credentials and the endpoint variables the SDKs read."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": firelake.endpoint,
    }
