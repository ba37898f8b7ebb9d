"""What a workshop and a CI pipeline rely on: the init file, --ephemeral, reset."""
import json
import os
import pathlib
import subprocess
import time

from conftest import BINARY, Firelake, flush

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKSHOP = ROOT / "fixtures" / "workshop.json"


def test_init_file_creates_resources_once(start_firelake, tmp_path):
    server = start_firelake("--init", str(WORKSHOP))
    s3, fh = server.client("s3"), server.client("firehose")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["sd-vehicle-data"]
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == ["gps-delivery-stream"]
    lines = (ROOT / "fixtures" / "telematics.txt").read_bytes().splitlines(keepends=True)[:1000]
    for i in range(0, len(lines), 500):
        fh.put_record_batch(DeliveryStreamName="gps-delivery-stream", Records=[{"Data": line} for line in lines[i:i + 500]])
    assert server.stop() == 0
    # A second start on the same data directory neither duplicates nor fails.
    again = start_firelake("--init", str(WORKSHOP), data_dir=server.data_dir)
    s3, fh = again.client("s3"), again.client("firehose")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["sd-vehicle-data"]
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == ["gps-delivery-stream"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sd-vehicle-data")["Contents"]]
    assert len(keys) == 1, "the graceful stop delivered the buffer once"
    assert s3.get_object(Bucket="sd-vehicle-data", Key=keys[0])["Body"].read() == b"".join(lines)


def test_bad_init_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"delivery_streams": [{"DeliveryStreamName": "x", "S3DestinationConfiguration": {"RoleARN": "nope"}}]}))
    result = subprocess.run([BINARY, "--port", "0", "--data-dir", str(tmp_path / "d"), "--init", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"firelake: init file {bad}: delivery stream \"x\": ValidationException")


def test_ephemeral_leaves_nothing_behind(tmp_path):
    proc = subprocess.Popen([BINARY, "--port", "0", "--ephemeral"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    data_dir = pathlib.Path(line.rsplit("data in ", 1)[1].strip())
    assert data_dir.is_dir()
    endpoint = next(w for w in line.split() if w.startswith("http://")).rstrip(",")
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    s3.create_bucket(Bucket="tmp")
    s3.put_object(Bucket="tmp", Key="k", Body=b"x")
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert not data_dir.exists()


def test_reset_deletes_streams_buckets_and_buffers(firelake):
    s3, fh = firelake.client("s3"), firelake.client("firehose")
    s3.create_bucket(Bucket="a-bucket")
    s3.put_object(Bucket="a-bucket", Key="k", Body=b"x")
    fh.create_delivery_stream(DeliveryStreamName="s", ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::a-bucket"})
    fh.put_record(DeliveryStreamName="s", Record={"Data": b"buffered"})
    import urllib.request
    with urllib.request.urlopen(urllib.request.Request(f"{firelake.endpoint}/_firelake/reset", data=b"", method="POST")) as response:
        assert response.status == 200
    assert s3.list_buckets()["Buckets"] == []
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == []
    assert sorted(p.name for p in firelake.data_dir.iterdir()) == [".firelake"]
    assert list((firelake.data_dir / ".firelake" / "journal").iterdir()) == []
    # The server goes on as new.
    s3.create_bucket(Bucket="a-bucket")
    assert flush(firelake)[0] == 200
    assert s3.list_objects_v2(Bucket="a-bucket")["KeyCount"] == 0


def test_produce_delivers_the_fixture_exactly_once(start_firelake):
    server = start_firelake("--init", str(WORKSHOP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    result = subprocess.run([BINARY, "produce", "--stream", "gps-delivery-stream", "--file", str(ROOT / "fixtures" / "telematics.txt"),
                             "--endpoint-url", server.endpoint, "--rate", "20000/s", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sent 4000 of 4000 records" in result.stdout and "0 failed" in result.stdout
    assert flush(server)[0] == 200
    s3 = server.client("s3")
    got = b"".join(s3.get_object(Bucket="sd-vehicle-data", Key=o["Key"])["Body"].read()
                   for o in s3.list_objects_v2(Bucket="sd-vehicle-data")["Contents"])
    assert sorted(got.splitlines(keepends=True)) == sorted((ROOT / "fixtures" / "telematics.txt").read_bytes().splitlines(keepends=True))


def test_produce_reads_aws_endpoint_url(start_firelake):
    server = start_firelake("--init", str(WORKSHOP))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "AWS_ENDPOINT_URL": server.endpoint,
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run([BINARY, "produce", "--stream", "gps-delivery-stream", "--records", "1200", "--quiet"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sent 1200 of 1200 records" in result.stdout
    status = streams_status_of(server)
    assert status["buffered_records"] == 1200


def streams_status_of(server):
    from conftest import streams_status
    return streams_status(server)["gps-delivery-stream"]


def test_produce_fails_at_once_on_a_missing_stream_in_one_line(start_firelake):
    server = start_firelake()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "AWS_EC2_METADATA_DISABLED": "true"}
    started = time.time()
    result = subprocess.run([BINARY, "produce", "--stream", "nope", "--records", "10", "--endpoint-url", server.endpoint, "--quiet"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert time.time() - started < 5, "a missing stream was retried"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ResourceNotFoundException" in lines[0] and "nope" in lines[0], result.stderr


def test_logs_have_no_colour_codes_when_not_at_a_terminal(start_firelake, tmp_path):
    log = open(tmp_path / "stderr.log", "w")
    server = start_firelake(stderr=log, env={"RUST_LOG": "info"})
    server.client("s3").create_bucket(Bucket="plain")
    server.stop()
    log.close()
    text = (tmp_path / "stderr.log").read_text()
    assert "INFO" in text and "\x1b[" not in text
