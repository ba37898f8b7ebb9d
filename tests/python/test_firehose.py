"""boto3 and the AWS CLI against a real firelake's Firehose: every operation and its errors,
buffering by size and time, object keys, compression, and what survives a restart."""
import gzip
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import zipfile

import cramjam
import pytest
from conftest import flush, require, streams_status

AWS = str(pathlib.Path(sys.executable).with_name("aws"))
ROLE = "arn:aws:iam::000000000000:role/firehose"
SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared"
KEY_TAIL = r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def create(fh, name, bucket="bkt", **destination):
    config = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", **destination}
    return fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=config)


def objects(s3, bucket="bkt"):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def body(s3, key, bucket="bkt"):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def error_of(call, **kwargs):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"].get("Message", ""), err.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def fh(firelake):
    return firelake.client("firehose")


def test_course_walkthrough_script(firelake):
    script = SHARED / "acceptance" / "seed_scenario.py"
    require(script.exists(), f"{script} (the shared course material, beside the repository)")
    result = subprocess.run([sys.executable, str(script), "--endpoint", firelake.endpoint, "--strict-keys", "--flush", "--expect-objects", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT PASS" in result.stdout


def test_describe_has_aws_defaults_and_both_views(firelake, fh, s3):
    arn = create(fh, "defaults")["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:000000000000:deliverystream/defaults"
    d = fh.describe_delivery_stream(DeliveryStreamName="defaults")["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE" and d["VersionId"] == "1" and d["DeliveryStreamType"] == "DirectPut"
    assert d["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}
    assert d["HasMoreDestinations"] is False and "LastUpdateTimestamp" not in d
    dest = d["Destinations"][0]
    assert dest["DestinationId"] == "destinationId-000000000001"
    ext = dest["ExtendedS3DestinationDescription"]
    assert ext["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    assert ext["CompressionFormat"] == "UNCOMPRESSED"
    assert ext["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    assert ext["S3BackupMode"] == "Disabled"
    assert "Prefix" not in ext
    assert dest["S3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::bkt"


def test_list_pagination_and_type_filter(fh):
    for name in ["c", "a", "b", "d"]:
        create(fh, name)
    page = fh.list_delivery_streams(Limit=2)
    assert page["DeliveryStreamNames"] == ["a", "b"] and page["HasMoreDeliveryStreams"] is True
    page = fh.list_delivery_streams(Limit=2, ExclusiveStartDeliveryStreamName="b")
    assert page["DeliveryStreamNames"] == ["c", "d"] and page["HasMoreDeliveryStreams"] is False
    assert fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"] == []


def test_streams_belong_to_an_account_and_region(firelake, fh):
    create(fh, "mine")
    import boto3
    other = boto3.client("firehose", endpoint_url=firelake.endpoint, region_name="eu-west-1",
                         aws_access_key_id="111122223333", aws_secret_access_key="x")
    assert other.list_delivery_streams()["DeliveryStreamNames"] == []
    arn = create(other, "mine")["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:eu-west-1:111122223333:deliverystream/mine"


def test_errors_have_aws_types_and_messages(firelake, fh):
    create(fh, "dup")
    code, message, status = error_of(create, fh=fh, name="dup")
    assert (code, status) == ("ResourceInUseException", 400)
    assert message == "Firehose dup under accountId 000000000000 already exists"
    code, message, status = error_of(fh.describe_delivery_stream, DeliveryStreamName="missing")
    assert (code, message) == ("ResourceNotFoundException", "Firehose missing under account 000000000000 not found.")
    code, message, _ = error_of(fh.describe_delivery_stream, DeliveryStreamName="x" * 65)
    assert code == "ValidationException"
    assert message == f"1 validation error detected: Value '{'x' * 65}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length less than or equal to 64"
    code, message, _ = error_of(create, fh=fh, name="bad-hints", BufferingHints={"SizeInMBs": 129, "IntervalInSeconds": 901})
    assert code == "ValidationException" and message.startswith("2 validation errors detected: ")
    code, message, _ = error_of(fh.create_delivery_stream, DeliveryStreamName="no-dest")
    assert (code, message) == ("InvalidArgumentException", "Exactly one destination configuration is supported for a Firehose")
    code, message, _ = error_of(create, fh=fh, name="expr", Prefix="!{timestamp:yyyy}/")
    assert code == "InvalidArgumentException"
    assert message == "Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions"
    code, message, _ = error_of(create, fh=fh, name="conversion", DataFormatConversionConfiguration={"Enabled": True})
    assert code == "InvalidArgumentException" and "DataFormatConversionConfiguration" in message and "--lenient" in message
    code, message, _ = error_of(fh.create_delivery_stream, DeliveryStreamName="kinesis", DeliveryStreamType="KinesisStreamAsSource",
                                KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "RoleARN": ROLE},
                                ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})
    assert code == "InvalidArgumentException" and "KinesisStreamAsSource" in message
    code, _, _ = error_of(create, fh=fh, name="half-hints", BufferingHints={"SizeInMBs": 1})
    assert code == "InvalidArgumentException"


def raw_firehose(firelake, target, body):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(firelake.endpoint + "/", data=body, method="POST",
                                     headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_malformed_requests(firelake, fh):
    create(fh, "s")
    status, answer = raw_firehose(firelake, "Firehose_20150804.PutRecord", b"{not json")
    assert (status, answer["__type"]) == (400, "SerializationException")
    status, answer = raw_firehose(firelake, "Firehose_20150804.PutRecord", b'{"DeliveryStreamName":"s","Record":{"Data":"@@@"}}')
    assert (status, answer["__type"]) == (400, "SerializationException")
    status, answer = raw_firehose(firelake, "Firehose_20150804.PutRecord", b'{"DeliveryStreamName":5}')
    assert answer["__type"] == "SerializationException"
    status, answer = raw_firehose(firelake, "Firehose_20150804.Nope", b"{}")
    assert (status, answer["__type"]) == (400, "UnknownOperationException")


def test_put_limits(fh):
    create(fh, "s")
    code, message, _ = error_of(fh.put_record_batch, DeliveryStreamName="s", Records=[{"Data": b"x"}] * 501)
    assert code == "ValidationException"
    code, message, _ = error_of(fh.put_record, DeliveryStreamName="s", Record={"Data": b"x" * 1_024_001})
    assert code == "ValidationException"
    assert "Member must have length less than or equal to 1024000" in message
    code, message, _ = error_of(fh.put_record_batch, DeliveryStreamName="s", Records=[{"Data": b"x" * 1_000_000}] * 5)
    assert (code, message) == ("InvalidArgumentException", "Records size exceeds 4 MB limit")
    ok = fh.put_record_batch(DeliveryStreamName="s", Records=[{"Data": b""}, {"Data": b"x" * 1_024_000}])
    assert ok["FailedPutCount"] == 0 and len(ok["RequestResponses"]) == 2
    assert all(len(r["RecordId"]) > 100 for r in ok["RequestResponses"])
    assert len({r["RecordId"] for r in ok["RequestResponses"]}) == 2


def test_update_destination_versions_and_conflicts(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "u")
    code, message, _ = error_of(fh.update_destination, DeliveryStreamName="u", CurrentDeliveryStreamVersionId="7",
                                DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP"})
    assert code == "ConcurrentModificationException"
    assert message == "Cannot update firehose: u since the current version id: 1 and specified version id: 7 do not match"
    fh.update_destination(DeliveryStreamName="u", CurrentDeliveryStreamVersionId="1", DestinationId="destinationId-000000000001",
                          ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP", "Prefix": "logs/"})
    d = fh.describe_delivery_stream(DeliveryStreamName="u")["DeliveryStreamDescription"]
    assert d["VersionId"] == "2" and "LastUpdateTimestamp" in d
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert (ext["CompressionFormat"], ext["Prefix"], ext["BucketARN"]) == ("GZIP", "logs/", "arn:aws:s3:::bkt")
    # The same values again change nothing, not even the version.
    fh.update_destination(DeliveryStreamName="u", CurrentDeliveryStreamVersionId="2", DestinationId="destinationId-000000000001",
                          ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP"})
    assert fh.describe_delivery_stream(DeliveryStreamName="u")["DeliveryStreamDescription"]["VersionId"] == "2"
    code, _, _ = error_of(fh.update_destination, DeliveryStreamName="u", CurrentDeliveryStreamVersionId="2",
                          DestinationId="destinationId-000000000009", ExtendedS3DestinationUpdate={"Prefix": "x/"})
    assert code == "InvalidArgumentException"
    # Buffered records take the configuration and version in force when they are delivered.
    fh.put_record(DeliveryStreamName="u", Record={"Data": b"one\n"})
    assert flush(firelake, "u")[0] == 200
    [key] = objects(s3)
    assert re.fullmatch(r"logs/\d{4}/\d{2}/\d{2}/\d{2}/u-2" + KEY_TAIL + r"\.gz", key), key
    assert gzip.decompress(body(s3, key)) == b"one\n"


def test_tags(fh):
    fh.create_delivery_stream(DeliveryStreamName="t", ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"},
                              Tags=[{"Key": "team", "Value": "data"}])
    fh.tag_delivery_stream(DeliveryStreamName="t", Tags=[{"Key": f"k{i:02}", "Value": str(i)} for i in range(10)] + [{"Key": "team", "Value": "fleet"}])
    page = fh.list_tags_for_delivery_stream(DeliveryStreamName="t", Limit=5)
    assert [t["Key"] for t in page["Tags"]] == ["k00", "k01", "k02", "k03", "k04"] and page["HasMoreTags"] is True
    rest = fh.list_tags_for_delivery_stream(DeliveryStreamName="t", ExclusiveStartTagKey="k09")
    assert rest["Tags"] == [{"Key": "team", "Value": "fleet"}] and rest["HasMoreTags"] is False
    fh.untag_delivery_stream(DeliveryStreamName="t", TagKeys=["team", "unknown"])
    assert len(fh.list_tags_for_delivery_stream(DeliveryStreamName="t")["Tags"]) == 10
    code, _, _ = error_of(fh.tag_delivery_stream, DeliveryStreamName="t", Tags=[{"Key": f"x{i}", "Value": ""} for i in range(41)])
    assert code == "LimitExceededException"
    code, _, _ = error_of(fh.tag_delivery_stream, DeliveryStreamName="t", Tags=[{"Key": "aws:reserved", "Value": ""}])
    assert code == "ValidationException"


def test_encryption_calls(fh):
    create(fh, "e")
    assert fh.put_record(DeliveryStreamName="e", Record={"Data": b"x"})["Encrypted"] is False
    fh.start_delivery_stream_encryption(DeliveryStreamName="e", DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
    d = fh.describe_delivery_stream(DeliveryStreamName="e")["DeliveryStreamDescription"]
    assert d["DeliveryStreamEncryptionConfiguration"] == {"KeyType": "AWS_OWNED_CMK", "Status": "ENABLED"}
    assert fh.put_record_batch(DeliveryStreamName="e", Records=[{"Data": b"x"}])["Encrypted"] is True
    fh.stop_delivery_stream_encryption(DeliveryStreamName="e")
    assert fh.describe_delivery_stream(DeliveryStreamName="e")["DeliveryStreamDescription"]["DeliveryStreamEncryptionConfiguration"]["Status"] == "DISABLED"


def test_size_trigger_delivers_without_waiting(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "size", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 900})
    record = b"r" * 100_000 + b"\n"
    fh.put_record_batch(DeliveryStreamName="size", Records=[{"Data": record}] * 12)
    deadline = time.time() + 10
    while not objects(s3) and time.time() < deadline:
        time.sleep(0.05)
    [key] = objects(s3)
    # One object of the records that reached 1 MiB (11 of 100,001 bytes); the 12th waits.
    assert body(s3, key) == record * 11
    assert streams_status(firelake)["size"]["buffered_records"] == 1


def test_interval_trigger_on_time_not_early(start_firelake):
    server = start_firelake("--buffer-interval-cap", "2")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    create(fh, "timed")  # 300 s configured; the cap makes it 2 s
    assert fh.describe_delivery_stream(DeliveryStreamName="timed")["DeliveryStreamDescription"]["Destinations"][0][
        "ExtendedS3DestinationDescription"]["BufferingHints"]["IntervalInSeconds"] == 300
    start = time.time()
    fh.put_record(DeliveryStreamName="timed", Record={"Data": b"first\n"})
    time.sleep(0.5)
    fh.put_record(DeliveryStreamName="timed", Record={"Data": b"second\n"})
    time.sleep(1.0)
    assert objects(s3) == [], "delivered before the interval ran out"
    while not objects(s3) and time.time() - start < 10:
        time.sleep(0.05)
    elapsed = time.time() - start
    assert 2.0 <= elapsed < 4.0, elapsed
    [key] = objects(s3)
    assert body(s3, key) == b"first\nsecond\n"


def test_zero_interval_delivers_at_once(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "zero", BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 0})
    fh.put_record(DeliveryStreamName="zero", Record={"Data": b"now"})
    deadline = time.time() + 3
    while not objects(s3) and time.time() < deadline:
        time.sleep(0.02)
    assert [body(s3, k) for k in objects(s3)] == [b"now"]


def test_single_puts_fill_the_buffer_and_new_hints_apply_to_it(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "later", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 900})
    record = b"r" * 100_000 + b"\n"
    for _ in range(11):  # one record per call: the 11th reaches the MiB
        fh.put_record(DeliveryStreamName="later", Record={"Data": record})
    deadline = time.time() + 10
    while not objects(s3) and time.time() < deadline:
        time.sleep(0.05)
    [first] = objects(s3)
    assert body(s3, first) == record * 11
    fh.put_record(DeliveryStreamName="later", Record={"Data": b"tail\n"})
    time.sleep(0.3)
    assert objects(s3) == [first]
    described = fh.describe_delivery_stream(DeliveryStreamName="later")["DeliveryStreamDescription"]
    fh.update_destination(DeliveryStreamName="later", CurrentDeliveryStreamVersionId=described["VersionId"],
                          DestinationId=described["Destinations"][0]["DestinationId"],
                          ExtendedS3DestinationUpdate={"BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}})
    deadline = time.time() + 5
    while len(objects(s3)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    [second] = [k for k in objects(s3) if k != first]
    assert body(s3, second) == b"tail\n"


@pytest.mark.parametrize("prefix,expected", [
    ("logs", r"logs\d{4}/\d{2}/\d{2}/\d{2}/"),
    ("logs/", r"logs/\d{4}/\d{2}/\d{2}/\d{2}/"),
    ("year=!{timestamp:yyyy}/hour=!{timestamp:HH}/", r"year=\d{4}/hour=\d{2}/"),
    ("r/!{firehose:random-string}/", r"r/[0-9a-f-]{11}/"),
])
def test_prefixes(firelake, fh, s3, prefix, expected):
    s3.create_bucket(Bucket="bkt")
    create(fh, "p", Prefix=prefix, ErrorOutputPrefix="errors/!{firehose:error-output-type}/")
    fh.put_record(DeliveryStreamName="p", Record={"Data": b"a"})
    fh.put_record(DeliveryStreamName="p", Record={"Data": b"b"})
    assert flush(firelake, "p")[0] == 200
    [key] = objects(s3)
    assert re.fullmatch(expected + "p-1" + KEY_TAIL, key), key
    assert body(s3, key) == b"ab", "records are concatenated with no delimiter"


def test_custom_time_zone_and_oldest_record_time(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "tz", CustomTimeZone="Asia/Tokyo")
    before = time.time()
    fh.put_record(DeliveryStreamName="tz", Record={"Data": b"x"})
    time.sleep(1.2)
    fh.put_record(DeliveryStreamName="tz", Record={"Data": b"y"})
    assert flush(firelake, "tz")[0] == 200
    [key] = objects(s3)
    tokyo = time.gmtime(before + 9 * 3600)
    assert key.startswith(time.strftime("%Y/%m/%d/%H/", tokyo)), key
    stamp = re.search(r"tz-1-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-", key).group(1)
    # The name carries the first record's arrival (to the second), not the delivery time.
    assert stamp in {time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(before + 9 * 3600 + d)) for d in (0, 1)}


def test_compressions_extensions_and_metadata(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    payload = b"".join(f"line {i}\n".encode() for i in range(20000))
    records = [payload[i:i + 4000] for i in range(0, len(payload), 4000)]
    expect = {"GZIP": ("gz", "gzip"), "ZIP": ("zip", "zip"), "Snappy": ("snappy", "snappy-java"), "HADOOP_SNAPPY": ("snappy", "hadoop-snappy")}
    for fmt in expect:
        create(fh, f"c-{fmt.lower()}", Prefix=f"{fmt}/", CompressionFormat=fmt)
        for i in range(0, len(records), 100):
            fh.put_record_batch(DeliveryStreamName=f"c-{fmt.lower()}", Records=[{"Data": r} for r in records[i:i + 100]])
    create(fh, "c-ext", Prefix="EXT/", CompressionFormat="GZIP", FileExtension=".custom.log")
    fh.put_record(DeliveryStreamName="c-ext", Record={"Data": b"ext"})
    assert flush(firelake)[0] == 200
    keys = objects(s3)
    for fmt, (ext, encoding) in expect.items():
        [key] = [k for k in keys if k.startswith(f"{fmt}/")]
        assert key.endswith("." + ext), key
        head = s3.head_object(Bucket="bkt", Key=key)
        assert (head["ContentType"], head["ContentEncoding"]) == ("application/octet-stream", encoding)
        data = body(s3, key)
        if fmt == "GZIP":
            out = gzip.decompress(data)
        elif fmt == "ZIP":
            archive = zipfile.ZipFile(io.BytesIO(data))
            [entry] = archive.namelist()
            assert re.fullmatch(r"[0-9a-f-]{36}", entry)
            out = archive.read(entry)
        elif fmt == "Snappy":
            assert data[:16] == b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
            out, rest = b"", data[16:]
            while rest:
                n = int.from_bytes(rest[:4], "big")
                out += bytes(cramjam.snappy.decompress_raw(rest[4:4 + n]))
                rest = rest[4 + n:]
        else:
            out, rest = b"", data
            while rest:
                raw, n = int.from_bytes(rest[:4], "big"), int.from_bytes(rest[4:8], "big")
                block = bytes(cramjam.snappy.decompress_raw(rest[8:8 + n]))
                assert len(block) == raw
                out += block
                rest = rest[8 + n:]
        assert out == payload, fmt
    [ext_key] = [k for k in keys if k.startswith("EXT/")]
    assert ext_key.endswith(".custom.log") and not ext_key.endswith(".gz.custom.log")
    assert gzip.decompress(body(s3, ext_key)) == b"ext"
    # gunzip, the standard tool, reads the object as a file too.
    path = firelake.data_dir / "bkt" / [k for k in keys if k.startswith("GZIP/")][0]
    assert subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout == payload


def test_append_delimiter_processor(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "d", ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]})
    fh.put_record_batch(DeliveryStreamName="d", Records=[{"Data": b'{"a":1}'}, {"Data": b'{"a":2}'}, {"Data": b'{"a":3}'}])
    assert flush(firelake, "d")[0] == 200
    [key] = objects(s3)
    assert body(s3, key) == b'{"a":1}\n{"a":2}\n{"a":3}'


def test_delete_discards_the_buffer(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    create(fh, "gone")
    fh.put_record(DeliveryStreamName="gone", Record={"Data": b"dropped"})
    fh.delete_delivery_stream(DeliveryStreamName="gone")
    code, _, _ = error_of(fh.describe_delivery_stream, DeliveryStreamName="gone")
    assert code == "ResourceNotFoundException"
    create(fh, "gone")
    fh.put_record(DeliveryStreamName="gone", Record={"Data": b"kept"})
    assert flush(firelake)[0] == 200
    assert [body(s3, k) for k in objects(s3)] == [b"kept"]


def test_missing_bucket_keeps_records_and_does_not_delay_others(start_firelake):
    server = start_firelake("--buffer-interval-cap", "1")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="healthy")
    create(fh, "stuck", bucket="later")
    create(fh, "fine", bucket="healthy")
    fh.put_record(DeliveryStreamName="stuck", Record={"Data": b"waiting"})
    start = time.time()
    fh.put_record(DeliveryStreamName="fine", Record={"Data": b"on time"})
    while not objects(s3, "healthy") and time.time() - start < 5:
        time.sleep(0.05)
    assert time.time() - start < 3, "the healthy stream was delayed"
    status, answer = flush(server, "stuck")
    assert status == 503
    assert answer["failed"][0]["stream"].endswith("/stuck") and "bucket later does not exist" in answer["failed"][0]["error"]
    assert streams_status(server)["stuck"]["last_error"] == "bucket later does not exist"
    s3.create_bucket(Bucket="later")
    assert flush(server, "stuck")[0] == 200
    assert [body(s3, k, "later") for k in objects(s3, "later")] == [b"waiting"]
    assert streams_status(server)["stuck"]["last_error"] is None


def test_graceful_shutdown_delivers_every_buffer(start_firelake):
    server = start_firelake()
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    create(fh, "s")
    fh.put_record_batch(DeliveryStreamName="s", Records=[{"Data": b"a\n"}, {"Data": b"b\n"}])
    assert server.stop() == 0
    files = [p for p in (server.data_dir / "bkt").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in files] == [b"a\nb\n"]
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\d{2}/s-1" + KEY_TAIL, str(files[0].relative_to(server.data_dir / "bkt")))


def test_streams_and_buffers_survive_a_kill(start_firelake, tmp_path):
    server = start_firelake()
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    create(fh, "durable", CompressionFormat="GZIP")
    fh.tag_delivery_stream(DeliveryStreamName="durable", Tags=[{"Key": "k", "Value": "v"}])
    sent = [f"record {i}\n".encode() for i in range(300)]
    for i in range(0, 300, 100):
        fh.put_record_batch(DeliveryStreamName="durable", Records=[{"Data": r} for r in sent[i:i + 100]])
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    again = start_firelake(data_dir=server.data_dir)
    fh, s3 = again.client("firehose"), again.client("s3")
    d = fh.describe_delivery_stream(DeliveryStreamName="durable")["DeliveryStreamDescription"]
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["CompressionFormat"] == "GZIP"
    assert fh.list_tags_for_delivery_stream(DeliveryStreamName="durable")["Tags"] == [{"Key": "k", "Value": "v"}]
    assert flush(again, "durable")[0] == 200
    [key] = objects(s3)
    assert gzip.decompress(body(s3, key)) == b"".join(sent)


def test_lenient_accepts_and_reports_what_it_ignores(start_firelake):
    server = start_firelake("--lenient")
    fh = server.client("firehose")
    create(fh, "l", DataFormatConversionConfiguration={"Enabled": True, "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"}})
    d = fh.describe_delivery_stream(DeliveryStreamName="l")["DeliveryStreamDescription"]
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["DataFormatConversionConfiguration"]["SchemaConfiguration"]["TableName"] == "t"
    assert streams_status(server)["l"]["ignored"] == ["ExtendedS3DestinationConfiguration.DataFormatConversionConfiguration"]


def test_create_delay_keeps_streams_creating(start_firelake):
    server = start_firelake("--create-delay", "1.5")
    fh = server.client("firehose")
    create(fh, "slow")
    assert fh.describe_delivery_stream(DeliveryStreamName="slow")["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "CREATING"
    code, _, _ = error_of(fh.put_record, DeliveryStreamName="slow", Record={"Data": b"x"})
    assert code == "ResourceNotFoundException"
    time.sleep(1.6)
    assert fh.describe_delivery_stream(DeliveryStreamName="slow")["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE"
    fh.put_record(DeliveryStreamName="slow", Record={"Data": b"x"})


def test_aws_cli_put_record(firelake, aws_env, s3):
    s3.create_bucket(Bucket="bkt")
    subprocess.run([AWS, "firehose", "create-delivery-stream", "--delivery-stream-name", "cli",
                    "--extended-s3-destination-configuration", json.dumps({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})],
                   env=aws_env, check=True, capture_output=True)
    # AWS CLI v1 sends a blob argument's text as the bytes (it base64-encodes it itself).
    out = subprocess.run([AWS, "firehose", "put-record", "--delivery-stream-name", "cli", "--record", '{"Data":"hello cli\\n"}'],
                         env=aws_env, check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["RecordId"]
    assert flush(firelake, "cli")[0] == 200
    assert [body(s3, k) for k in objects(s3)] == [b"hello cli\n"]
