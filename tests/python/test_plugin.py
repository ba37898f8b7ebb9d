"""The pytest plugin of python/ (pytest_firelake) as a user's suite meets it: installed
(scripts/test.sh installs it into .venv), found by its entry point, in a pytest session
of its own with the plugin's defaults: one server for the session, reset before each
test; a marked test gets its own."""
import pathlib

import pytest_firelake
from conftest import BINARY

USER_SUITE = '''
import pytest
from pytest_firelake import FlushError

DESTINATION = {"RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::fleet"}
seen = []


def test_deliver(firelake, s3, firehose, flush):
    seen.append(firelake.endpoint)
    s3.create_bucket(Bucket="fleet")
    firehose.create_delivery_stream(DeliveryStreamName="positions", ExtendedS3DestinationConfiguration=DESTINATION)
    firehose.put_record(DeliveryStreamName="positions", Record={"Data": b"4FTEX4944AK844294 106.94 -6.33\\n"})
    flush("positions")
    [listed] = s3.list_objects_v2(Bucket="fleet")["Contents"]
    assert s3.get_object(Bucket="fleet", Key=listed["Key"])["Body"].read() == b"4FTEX4944AK844294 106.94 -6.33\\n"


def test_the_next_test_starts_clean(firelake_endpoint, s3, firehose):
    assert firelake_endpoint == seen[0]
    assert s3.list_buckets()["Buckets"] == []
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == []


@pytest.mark.firelake("--buffer-interval-cap", "0.2")
def test_a_marked_test_gets_its_own(firelake, tmp_path):
    assert firelake.endpoint != seen[0]
    assert firelake.data_dir == (tmp_path / "data").resolve()
    assert firelake.args == ("--buffer-interval-cap", "0.2")


def test_a_failed_flush_raises(firehose, flush):
    firehose.create_delivery_stream(DeliveryStreamName="orphan", ExtendedS3DestinationConfiguration=DESTINATION)
    firehose.put_record(DeliveryStreamName="orphan", Record={"Data": b"x\\n"})
    with pytest.raises(FlushError) as failed:
        flush()
    assert failed.value.status == 503
    assert failed.value.body["failed"][0]["error"] == "bucket fleet does not exist"
'''


def test_a_suite_with_the_plugins_defaults(pytester):
    pytester.makepyfile(test_user=USER_SUITE)
    result = pytester.runpytest_subprocess(f"--firelake-bin={BINARY}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_firelake_fresh_gives_each_test_its_own(pytester):
    pytester.makeini("[pytest]\nfirelake_fresh = true\nfirelake_args = --create-delay 0\n")
    pytester.makepyfile(test_user='''
pids = set()

def test_one(firelake):
    pids.add(firelake.proc.pid)
    assert firelake.args == ("--create-delay", "0")

def test_two(firelake):
    assert firelake.proc.pid not in pids
''')
    result = pytester.runpytest_subprocess(f"--firelake-bin={BINARY}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_binary_is_found_as_documented(tmp_path, monkeypatch):
    built = tmp_path / "checkout" / "target" / "debug" / "firelake"
    built.parent.mkdir(parents=True)
    built.write_text("")
    monkeypatch.delenv("FIRELAKE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert pytest_firelake.find_binary(None, tmp_path / "checkout" / "tests") == built
    assert pytest_firelake.find_binary(None, tmp_path / "elsewhere") is None
    on_path = tmp_path / "bin" / "firelake"
    on_path.parent.mkdir()
    on_path.write_text("")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert pytest_firelake.find_binary(None, tmp_path / "checkout") == on_path
    monkeypatch.setenv("FIRELAKE_BIN", "/opt/firelake")
    assert pytest_firelake.find_binary(None, tmp_path / "checkout") == pathlib.Path("/opt/firelake")
    assert pytest_firelake.find_binary("/given", tmp_path / "checkout") == pathlib.Path("/given")
