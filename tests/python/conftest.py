"""firelake's own Python tests use the pytest plugin of `python/` (pytest_firelake, which
scripts/test.sh installs into .venv) for their servers and clients: `firelake`, `s3`,
`firehose` and `flush` are its fixtures. pytest.ini asks it for a fresh server per test
(`firelake_fresh`), on `tmp_path / "data"`; test_plugin.py tests its shared-server mode."""
import os
import pathlib

import pytest
import pytest_firelake
from botocore.exceptions import ClientError

# test_plugin.py runs the plugin in pytest sessions of its own.
pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("FIRELAKE_BIN", str(ROOT / "target" / "debug" / "firelake"))
# CI provides every precondition (.ci/run sets CI=true): there a missing one is a failure.
IN_CI = os.environ.get("CI") == "true"


def refused(call, **kwargs):
    """Calls a boto3 operation that must fail: answers AWS's (HTTP status, code, message)."""
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    err = excinfo.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"].get("Message")


def require(present, what):
    """Skips the test when `what` is missing, or fails it in CI, which must provide it."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"CI must provide {what}", pytrace=False)
    pytest.skip(f"needs {what}")


class Firelake(pytest_firelake.Firelake):
    """A server of the binary under test on `data_dir`, as the plugin starts one."""

    def __init__(self, data_dir, *args, env=None, stderr=None):
        super().__init__(BINARY, *args, data_dir=data_dir, env=env, stderr=stderr)


@pytest.fixture(scope="session")
def firelake_binary():
    """The plugin's fixtures start the binary under test, not a `firelake` on PATH."""
    return pathlib.Path(BINARY)


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
        server.kill()


def flush(server, stream=None):
    """POST /_firelake/flush; answers (HTTP status, JSON body)."""
    return server.request("POST", "/_firelake/flush" + (f"?stream={stream}" if stream else ""))


def streams_status(server):
    return server.streams()


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
