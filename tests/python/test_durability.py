"""Backpressure and a full disk, against a real firelake."""
import os
import pathlib
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError
from conftest import flush, require, streams_status

ROLE = "arn:aws:iam::000000000000:role/firehose"


def create(fh, name, bucket, **hints):
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", **hints})


def rss_mb(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) / 1024


def delivered(s3, bucket, record_len):
    """Every record delivered to `bucket` (records of one length), sorted."""
    records = []
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        data = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        assert len(data) % record_len == 0
        records.extend(data[i:i + record_len] for i in range(0, len(data), record_len))
    return sorted(records)


def test_backpressure_throttles_the_stuck_stream_not_the_healthy_one(start_firelake):
    server = start_firelake("--stream-buffer-max-mb", "8", "--total-buffer-max-mb", "12", "--buffer-interval-cap", "1")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="healthy")
    create(fh, "stuck", "later")
    create(fh, "fine", "healthy", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    record = b"x" * 10_000
    accepted, throttled = [], 0
    # Faster than the stuck stream can deliver (it cannot at all): it must throttle itself.
    for batch in range(30):
        records = [f"{batch:04}-{i:03}-".encode() + record for i in range(50)]
        answer = fh.put_record_batch(DeliveryStreamName="stuck", Records=[{"Data": r} for r in records])
        for data, result in zip(records, answer["RequestResponses"]):
            if "RecordId" in result:
                accepted.append(data)
            else:
                assert (result["ErrorCode"], result["ErrorMessage"]) == ("ServiceUnavailableException", "Slow down.")
                throttled += 1
        assert answer["FailedPutCount"] == sum(1 for r in answer["RequestResponses"] if "ErrorCode" in r)
    assert throttled > 0 and len(accepted) * len(record) <= 8 * 1024 * 1024
    with pytest.raises(ClientError) as err:
        fh.put_record(DeliveryStreamName="stuck", Record={"Data": record})
    assert err.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    # The healthy stream is not throttled by its neighbour: it delivers as it goes.
    fine_sent = []
    for batch in range(20):
        records = [f"fine-{batch:02}-{i:02}|".encode() + b"y" * 5_000 for i in range(40)]
        answer = fh.put_record_batch(DeliveryStreamName="fine", Records=[{"Data": r} for r in records])
        assert answer["FailedPutCount"] == 0
        fine_sent.extend(records)
    # Memory stays under the caps plus a fixed overhead.
    assert rss_mb(server.proc.pid) < 12 + 60
    assert streams_status(server)["stuck"]["buffered_bytes"] <= 8 * 1024 * 1024
    s3.create_bucket(Bucket="later")
    assert flush(server)[0] == 200
    assert delivered(s3, "later", len(accepted[0])) == sorted(accepted), "every accepted record arrives, once"
    assert delivered(s3, "healthy", len(fine_sent[0])) == sorted(fine_sent)
    # Once delivery caught up, puts succeed again.
    assert fh.put_record_batch(DeliveryStreamName="stuck", Records=[{"Data": record}] * 50)["FailedPutCount"] == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real, small ext4 file system on a loop device (tmpfs would not do: its fsync does nothing)."""
    require(os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None, "root and mkfs.ext4 to loop-mount a file system")
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["dd", "if=/dev/zero", f"of={image}", "bs=1M", "count=32", "status=none"], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_an_error_never_corruption(start_firelake, small_disk):
    server = start_firelake(data_dir=small_disk / "data")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    create(fh, "s", "bkt", BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 900})
    acked = []
    for batch in range(10):
        records = [f"rec-{batch}-{i:03}-".encode() + b"r" * 200 + b"\n" for i in range(100)]
        assert fh.put_record_batch(DeliveryStreamName="s", Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
        acked.extend(records)
    s3.put_object(Bucket="bkt", Key="keep", Body=b"readable while full")
    # Fill the disk with objects until a PUT fails, then with smaller ones until they fail too.
    filler, failure = [], None
    for size in (1024 * 1024, 64 * 1024, 4096):
        for i in range(200):
            key = f"filler/{size}/{i}"
            try:
                s3.put_object(Bucket="bkt", Key=key, Body=os.urandom(size))
                filler.append(key)
            except ClientError as err:
                failure = failure or (key, err.response)
                break
    assert failure is not None, "the disk never filled"
    failed_key, response = failure
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "out of space" in response["Error"]["Message"]
    # The failed PUT left no object and no temp file.
    with pytest.raises(ClientError):
        s3.head_object(Bucket="bkt", Key=failed_key)
    assert list((small_disk / "data" / ".firelake" / "tmp").iterdir()) == []
    # Reads still work; puts are refused, not half-kept; delivery fails and keeps the records.
    assert s3.get_object(Bucket="bkt", Key="keep")["Body"].read() == b"readable while full"
    with pytest.raises(ClientError) as err:
        fh.put_record_batch(DeliveryStreamName="s", Records=[{"Data": b"x" * 900_000}] * 4)
    assert err.value.response["Error"]["Code"] == "ServiceUnavailableException"
    status, answer = flush(server, "s")
    assert status == 503 and "space" in answer["failed"][0]["error"].lower(), answer
    # Space returns: everything acknowledged is delivered.
    for key in filler:
        s3.delete_object(Bucket="bkt", Key=key)
    assert flush(server, "s")[0] == 200
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"] if o["Key"] != "keep"]
    assert len(keys) == 1
    assert s3.get_object(Bucket="bkt", Key=keys[0])["Body"].read() == b"".join(acked)
    server.stop()
