"""pytest fixtures for firelake (a local Amazon Data Firehose and Amazon S3).

Installed with `pip install ./python` from the firelake repository; pytest finds it by
its `pytest11` entry point. Fixtures:

- `firelake`: a running server for the test. By default one server serves the whole
  session (started on first use, with `--ephemeral`) and is reset (`POST
  /_firelake/reset`: no streams, no buckets) before each test that uses it. A test
  marked `@pytest.mark.firelake("--buffer-interval-cap", "1")` gets a server of its own
  with those options, on its own data directory under `tmp_path`, stopped after it; so
  does every test with the ini option `firelake_fresh = true`.
- `firelake_endpoint`: its `http://127.0.0.1:<port>`.
- `s3`, `firehose`: boto3 clients for it (region us-east-1, dummy credentials).
- `flush`: `flush()` / `flush("stream")` delivers what is buffered now and returns
  once it is written; raises `FlushError` naming each stream that could not deliver.
- `firelake_session`: the session's shared server itself; `firelake_binary`: the
  executable, which a conftest may override.

The binary is `--firelake-bin` (or the ini option `firelake_bin`), else `$FIRELAKE_BIN`,
else `firelake` on `PATH`, else the newest `target/{debug,release}/firelake` in the
rootdir or a folder above it (a firelake checkout). `--firelake-args` / `firelake_args`
are options for every server started (shell-quoted).
"""
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

__all__ = ["Firelake", "FlushError", "find_binary"]


class FlushError(Exception):
    """A flush that did not deliver everything: `.status` and `.body` are firelake's answer."""

    def __init__(self, status, body):
        super().__init__(f"flush answered {status}: {body}")
        self.status = status
        self.body = body


class Firelake:
    """A firelake process on a free port. With `data_dir=None` its data directory is
    temporary (`--ephemeral`) and removed when it stops."""

    def __init__(self, binary, *args, data_dir=None, env=None, stderr=None):
        place = ["--data-dir", str(data_dir)] if data_dir is not None else ["--ephemeral"]
        self.args = args
        self.proc = subprocess.Popen(
            [str(binary), "--port", "0", *place, *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "RUST_LOG": "warn", "AWS_EC2_METADATA_DISABLED": "true", **(env or {})},
        )
        # "firelake listening on http://127.0.0.1:PORT[ and http://[::1]:PORT], data in DIR"
        line = self.proc.stdout.readline()
        if not line.startswith("firelake listening on "):
            self.proc.wait(timeout=30)
            raise RuntimeError(f"firelake did not start (exit {self.proc.returncode}): {line.strip()!r}")
        self.endpoint = line.split()[3].rstrip(",")
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.data_dir = pathlib.Path(line.split(", data in ", 1)[1].strip()).resolve()

    def client(self, service, access_key="test", secret="test", **config):
        """A boto3 client for `service` ("s3", "firehose", "lambda") on this server; `config`
        goes to botocore's `Config`."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=access_key, aws_secret_access_key=secret,
            config=Config(**config) if config else None,
        )

    def request(self, method, path, timeout=90):
        """An HTTP request to firelake's own endpoints: answers (status, parsed JSON body)."""
        request = urllib.request.Request(self.endpoint + path, data=b"" if method == "POST" else None, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def flush(self, stream=None):
        """Delivers every buffer (or `stream`'s) now; raises `FlushError` unless all were written."""
        status, body = self.request("POST", "/_firelake/flush" + (f"?stream={stream}" if stream else ""))
        if status != 200:
            raise FlushError(status, body)
        return body

    def reset(self):
        """Deletes every delivery stream and every bucket."""
        status, body = self.request("POST", "/_firelake/reset", timeout=60)
        if status != 200:
            raise RuntimeError(f"reset answered {status}: {body}")

    def streams(self):
        """`GET /_firelake/streams`, by stream name."""
        return {s["name"]: s for s in self.request("GET", "/_firelake/streams", timeout=10)[1]["streams"]}

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM (buffers are delivered), then wait; answers the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def find_binary(configured=None, rootdir=None):
    """The firelake executable: `configured`, `$FIRELAKE_BIN`, `firelake` on PATH, or the
    newest `target/{debug,release}/firelake` in `rootdir` or above it."""
    for candidate in (configured, os.environ.get("FIRELAKE_BIN")):
        if candidate:
            return pathlib.Path(candidate)
    on_path = shutil.which("firelake")
    if on_path:
        return pathlib.Path(on_path)
    if rootdir is not None:
        for folder in [pathlib.Path(rootdir).resolve(), *pathlib.Path(rootdir).resolve().parents]:
            built = [p for p in (folder / "target" / "debug" / "firelake", folder / "target" / "release" / "firelake") if p.is_file()]
            if built:
                return max(built, key=lambda p: p.stat().st_mtime)
    return None


def pytest_addoption(parser):
    group = parser.getgroup("firelake")
    group.addoption("--firelake-bin", help="the firelake executable (default: $FIRELAKE_BIN, PATH, ./target)")
    group.addoption("--firelake-args", help="options for every firelake started, shell-quoted")
    parser.addini("firelake_bin", "the firelake executable")
    parser.addini("firelake_args", "options for every firelake started, shell-quoted")
    parser.addini("firelake_fresh", "a server of its own for every test instead of one per session", type="bool", default=False)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "firelake(*args): the test gets a firelake of its own, started with these options",
    )


def _extra_args(config):
    text = config.getoption("--firelake-args") or config.getini("firelake_args") or ""
    return shlex.split(text)


@pytest.fixture(scope="session")
def firelake_binary(pytestconfig):
    """The firelake executable the fixtures start; override it in a conftest to choose."""
    binary = find_binary(pytestconfig.getoption("--firelake-bin") or pytestconfig.getini("firelake_bin") or None, pytestconfig.rootpath)
    if binary is None:
        pytest.fail("no firelake binary: set FIRELAKE_BIN, pass --firelake-bin, put firelake on PATH, or build it (cargo build)", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def firelake_session(firelake_binary, pytestconfig):
    """One firelake for the session, on a temporary data directory."""
    server = Firelake(firelake_binary, *_extra_args(pytestconfig))
    yield server
    server.stop()


@pytest.fixture
def firelake(request, firelake_binary, pytestconfig, tmp_path):
    """The test's firelake: the session's, reset, or one of its own (marker or `firelake_fresh`)."""
    marker = request.node.get_closest_marker("firelake")
    if marker is None and not pytestconfig.getini("firelake_fresh"):
        server = request.getfixturevalue("firelake_session")
        if not server.running():
            pytest.fail(f"the session's firelake exited ({server.proc.returncode})", pytrace=False)
        server.reset()
        yield server
        return
    args = [*_extra_args(pytestconfig), *(marker.args if marker else ())]
    server = Firelake(firelake_binary, *args, data_dir=tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def firelake_endpoint(firelake):
    return firelake.endpoint


@pytest.fixture
def s3(firelake):
    return firelake.client("s3")


@pytest.fixture
def firehose(firelake):
    return firelake.client("firehose")


@pytest.fixture
def flush(firelake):
    """`flush(stream=None)`: delivers what is buffered now; raises `FlushError` on failure."""
    return firelake.flush
