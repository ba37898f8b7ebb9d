"""boto3 against a real firelake's delivery pipeline: dynamic partitioning by jq queries,
record de-aggregation (JSON, DELIMITED, KPL), CloudWatch Logs decompression and message
extraction, error output documents, S3 backup, the active-partition limit, per-partition
flush timing, and the races of the stream registry."""
import base64
import concurrent.futures
import gzip
import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import flush, streams_status

ROLE = "arn:aws:iam::000000000000:role/firehose"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TAIL = r"-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-" + UUID


def jq_processor(query):
    return {"Type": "MetadataExtraction", "Parameters": [
        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": query},
        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}


def partitioned(fh, name, prefix, query, bucket="bkt", processors=(), **extra):
    return fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": prefix,
        "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "DynamicPartitioningConfiguration": {"Enabled": True},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [*processors, jq_processor(query)]},
        **extra})


def everything(s3, bucket="bkt"):
    keys, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def error_of(call, **kwargs):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"].get("Message", "")


def put_all(fh, name, records):
    for i in range(0, len(records), 500):
        answer = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 500]])
        assert answer["FailedPutCount"] == 0


@pytest.fixture
def fh(firelake):
    return firelake.client("firehose")


def test_partitions_by_vin_with_exact_keys_and_contents(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "telematics", "vin=!{partitionKeyFromQuery:vin}/year=!{timestamp:yyyy}/", "{vin: .vin}",
                processors=[{"Type": "AppendDelimiterToRecord"}])
    vins = [f"VIN{n:03}" for n in range(7)]
    records = [json.dumps({"vin": vins[i % 7], "seq": i}).encode() for i in range(700)]
    put_all(fh, "telematics", records)
    assert streams_status(firelake)["telematics"]["active_partitions"] == 7
    assert flush(firelake, "telematics")[0] == 200
    objects = everything(s3)
    year = time.strftime("%Y", time.gmtime())
    assert len(objects) == 7
    for vin in vins:
        [(key, data)] = [(k, v) for k, v in objects.items() if k.startswith(f"vin={vin}/")]
        assert re.fullmatch(f"vin={vin}/year={year}/telematics{TAIL}", key), key
        expected = [r for r in records if json.loads(r)["vin"] == vin]
        assert data == b"\n".join(expected)


@pytest.mark.parametrize("query,record,prefix", [
    ("{day: .ts[0:10]}", {"ts": "2024-05-01T13:00:00Z"}, "day=2024-05-01/"),
    ('{year: .ts|strftime("%Y")}', {"ts": 1700000000}, "year=2023/"),
    ("{device: .type.device}", {"type": {"device": "mobile"}}, "device=mobile/"),
    ("{a: .a, b: .b}", {"a": 1.0, "b": True}, "a=1/b=true/"),
    ('{g: (.logGroup|ltrimstr("/"))}', {"logGroup": "/aws/x"}, "g=aws/x/"),
])
def test_queries_real_configurations_use(firelake, fh, s3, query, record, prefix):
    s3.create_bucket(Bucket="bkt")
    names = re.findall(r"(\w+)=", prefix)
    stream_prefix = "".join(f"{n}=!{{partitionKeyFromQuery:{n}}}/" for n in names)
    partitioned(fh, "q", stream_prefix, query)
    fh.put_record(DeliveryStreamName="q", Record={"Data": json.dumps(record).encode()})
    assert flush(firelake, "q")[0] == 200
    [key] = everything(s3)
    assert key.startswith(prefix) and re.fullmatch(re.escape(prefix) + "q" + TAIL, key), key


def test_records_without_keys_go_to_error_output_as_aws_documents(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "p", "vin=!{partitionKeyFromQuery:vin}/", "{vin: .vin}")
    before = int(time.time() * 1000)
    fh.put_record_batch(DeliveryStreamName="p", Records=[
        {"Data": b'{"vin":"A"}'}, {"Data": b"not json"}, {"Data": b'{"speed":3}'}])
    assert flush(firelake, "p")[0] == 200
    objects = everything(s3)
    [data_key] = [k for k in objects if k.startswith("vin=A/")]
    assert objects[data_key] == b'{"vin":"A"}'
    [error_key] = [k for k in objects if k.startswith("errors/")]
    assert re.fullmatch("errors/partitioning-failed/p" + TAIL, error_key), error_key
    lines = objects[error_key].decode().splitlines()
    docs = [json.loads(line) for line in lines]
    assert objects[error_key].endswith(b"\n") and len(docs) == 2
    assert [base64.b64decode(d["rawData"]) for d in docs] == [b"not json", b'{"speed":3}']
    for doc in docs:
        assert list(doc) == ["attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData"]
        assert doc["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
        assert doc["attemptsMade"] == 1 and before <= doc["arrivalTimestamp"] <= int(time.time() * 1000)
    assert docs[0]["errorMessage"] == "Non JSON record provided"
    assert streams_status(firelake)["p"]["failed_records"] == {"partitioning-failed": 2}


def test_json_and_delimited_deaggregation(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "json", "k=!{partitionKeyFromQuery:k}/", "{k: .k}",
                processors=[{"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]}])
    fh.put_record(DeliveryStreamName="json", Record={"Data": b'{"k":"a","n":1}{"k":"b","n":2}\n{"k":"a","n":3}'})
    delimiter = base64.b64encode(b"####").decode()
    partitioned(fh, "delim", "d/k=!{partitionKeyFromQuery:k}/", "{k: .k}",
                processors=[{"Type": "RecordDeAggregation", "Parameters": [
                    {"ParameterName": "SubRecordType", "ParameterValue": "DELIMITED"},
                    {"ParameterName": "Delimiter", "ParameterValue": delimiter}]}])
    fh.put_record(DeliveryStreamName="delim", Record={"Data": b'{"k":"x"}####{"k":"y"}####{"k":"x","z":1}'})
    assert flush(firelake)[0] == 200
    objects = everything(s3)
    by_prefix = {k.rsplit("/", 1)[0]: v for k, v in objects.items()}
    assert by_prefix == {
        "k=a": b'{"k":"a","n":1}{"k":"a","n":3}', "k=b": b'{"k":"b","n":2}',
        "d/k=x": b'{"k":"x"}{"k":"x","z":1}', "d/k=y": b'{"k":"y"}',
    }


def test_kpl_aggregated_records_are_deaggregated(firelake, fh, s3):
    import aws_kinesis_agg.aggregator as agg

    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "kpl", "vin=!{partitionKeyFromQuery:vin}/", "{vin: .vin}",
                processors=[{"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]}])
    aggregator = agg.RecordAggregator()
    users = [json.dumps({"vin": v, "i": i}).encode() for i, v in enumerate(["A", "B", "A", "C"])]
    for user in users:
        assert aggregator.add_user_record("pk", user) is None
    _, _, aggregated = aggregator.clear_and_get().get_contents()
    assert aggregated[:4] == b"\xf3\x89\x9a\xc2"
    fh.put_record(DeliveryStreamName="kpl", Record={"Data": aggregated})
    assert flush(firelake, "kpl")[0] == 200
    by_prefix = {k.rsplit("/", 1)[0]: v for k, v in everything(s3).items()}
    assert by_prefix == {"vin=A": users[0] + users[2], "vin=B": users[1], "vin=C": users[3]}


def cloudwatch_payload(messages, kind="DATA_MESSAGE"):
    events = [{"id": str(i), "timestamp": 1700000000000 + i, "message": m} for i, m in enumerate(messages)]
    envelope = {"messageType": kind, "owner": "000000000000", "logGroup": "/aws/app", "logStream": "s",
                "subscriptionFilters": ["f"], "logEvents": events}
    return gzip.compress(json.dumps(envelope).encode())


def post_cloudwatch(server, stream, payload):
    request = urllib.request.Request(f"{server.endpoint}/_firelake/cloudwatch-logs?stream={stream}", data=payload, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_cloudwatch_logs_subscription_is_decompressed_and_extracted(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    fh.create_delivery_stream(DeliveryStreamName="cwl", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt", "Prefix": "logs/", "ErrorOutputPrefix": "logerrors/",
        "ProcessingConfiguration": {"Enabled": True, "Processors": [
            {"Type": "Decompression", "Parameters": [{"ParameterName": "CompressionFormat", "ParameterValue": "GZIP"}]},
            {"Type": "CloudWatchLogProcessing", "Parameters": [{"ParameterName": "DataMessageExtraction", "ParameterValue": "true"}]}]}})
    code, message = error_of(fh.put_record, DeliveryStreamName="cwl", Record={"Data": cloudwatch_payload(["x"])})
    assert code == "InvalidSourceException" and "not originating from CloudWatch" in message
    assert post_cloudwatch(firelake, "cwl", cloudwatch_payload(["first line", "second line"]))[0] == 200
    assert post_cloudwatch(firelake, "cwl", cloudwatch_payload(["CWL CONTROL MESSAGE"], "CONTROL_MESSAGE"))[0] == 200
    assert post_cloudwatch(firelake, "cwl", b"not gzip at all")[0] == 200
    assert post_cloudwatch(firelake, "nope", b"x")[0] == 400
    assert flush(firelake, "cwl")[0] == 200
    objects = everything(s3)
    [data_key] = [k for k in objects if k.startswith("logs/")]
    assert objects[data_key] == b"first line\nsecond line\n"
    [error_key] = [k for k in objects if k.startswith("logerrors/")]
    [doc] = [json.loads(line) for line in objects[error_key].splitlines()]
    assert doc["errorCode"] == "Decompression failed." and base64.b64decode(doc["rawData"]) == b"not gzip at all"


def test_default_error_location_without_error_output_prefix(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    fh.create_delivery_stream(DeliveryStreamName="plain", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt", "Prefix": "in/",
        "ProcessingConfiguration": {"Enabled": True, "Processors": [
            {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]}]}})
    fh.put_record_batch(DeliveryStreamName="plain", Records=[{"Data": b'{"a":1}{"a":2}'}, {"Data": b'{"broken'}])
    assert flush(firelake, "plain")[0] == 200
    objects = everything(s3)
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
    [data_key] = [k for k in objects if k.startswith("in/2")]
    assert objects[data_key] == b'{"a":1}{"a":2}'
    [error_key] = [k for k in objects if "processing-failed" in k]
    assert re.fullmatch(f"in/processing-failed/{hour}/plain" + TAIL, error_key), error_key


def test_s3_backup_gets_the_original_records(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    s3.create_bucket(Bucket="backup")
    partitioned(fh, "bk", "vin=!{partitionKeyFromQuery:vin}/", "{vin: .vin}",
                S3BackupMode="Enabled",
                S3BackupConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup", "Prefix": "raw/",
                                       "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}})
    description = fh.describe_delivery_stream(DeliveryStreamName="bk")["DeliveryStreamDescription"]
    backup = description["Destinations"][0]["ExtendedS3DestinationDescription"]["S3BackupDescription"]
    assert backup["BucketARN"] == "arn:aws:s3:::backup" and backup["CompressionFormat"] == "GZIP" and backup["Prefix"] == "raw/"
    records = [b'{"vin":"A"}', b"oops", b'{"vin":"B"}']
    fh.put_record_batch(DeliveryStreamName="bk", Records=[{"Data": r} for r in records])
    assert flush(firelake, "bk")[0] == 200
    [(key, data)] = everything(s3, "backup").items()
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
    assert re.fullmatch(f"raw/{hour}/bk" + TAIL + r"\.gz", key), key
    assert gzip.decompress(data) == b"".join(records)
    assert sorted(k.split("/")[0] for k in everything(s3)) == ["errors", "vin=A", "vin=B"]
    status = streams_status(firelake)["bk"]
    assert status["delivered_objects"] == {"backup": 1, "data": 2, "error": 1}
    code, message = error_of(fh.update_destination, DeliveryStreamName="bk", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"S3BackupMode": "Disabled"})
    assert code == "InvalidArgumentException" and "cannot be disabled" in message


def test_records_beyond_the_active_partition_limit_go_to_error_output(firelake, fh, s3):
    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "many", "id=!{partitionKeyFromQuery:id}/", "{id: .id}")
    records = [json.dumps({"id": n}).encode() for n in range(502)]
    answer = fh.put_record_batch(DeliveryStreamName="many", Records=[{"Data": r} for r in records[:500]])
    assert answer["FailedPutCount"] == 0
    fh.put_record_batch(DeliveryStreamName="many", Records=[{"Data": r} for r in records[500:]])
    status = streams_status(firelake)["many"]
    assert status["active_partitions"] == 500 and status["failed_records"] == {"activePartitionExceeded": 2}
    assert flush(firelake, "many")[0] == 200
    objects = everything(s3)
    assert len(objects) == 501
    [(error_key, data)] = [(k, v) for k, v in objects.items() if k.startswith("errors/")]
    assert error_key.startswith("errors/activePartitionExceeded/")
    assert [base64.b64decode(json.loads(line)["rawData"]) for line in data.splitlines()] == records[500:]


def test_each_partition_flushes_on_its_own_interval(start_firelake):
    server = start_firelake("--buffer-interval-cap", "2")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    partitioned(fh, "timed", "k=!{partitionKeyFromQuery:k}/", "{k: .k}")
    start = time.time()
    fh.put_record(DeliveryStreamName="timed", Record={"Data": b'{"k":"early"}'})
    time.sleep(1.2)
    fh.put_record(DeliveryStreamName="timed", Record={"Data": b'{"k":"late"}'})
    seen = {}
    while len(seen) < 2 and time.time() - start < 10:
        for key in everything(s3):
            seen.setdefault(key.split("/")[0], time.time() - start)
        time.sleep(0.02)
    assert 2.0 <= seen["k=early"] < 3.0, seen
    assert 3.2 <= seen["k=late"] < 4.5, seen


def test_create_time_rules(fh):
    base = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"}
    dp = {"DynamicPartitioningConfiguration": {"Enabled": True}}
    jq = {"ProcessingConfiguration": {"Enabled": True, "Processors": [jq_processor("{k: .k}")]}}
    cases = [
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/", **jq},
         "need DynamicPartitioningConfiguration enabled"),
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", **dp, **jq}, "ErrorOutputPrefix"),
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/", **dp, **jq,
          "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}}, "at least 64"),
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/", **dp, **jq,
          "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 0}}, "cannot be 0"),
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/", **dp,
          "ProcessingConfiguration": {"Enabled": True, "Processors": [jq_processor("{k: .k")]}}, "Invalid MetadataExtractionQuery"),
        ({**base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/", **dp}, "needs a MetadataExtraction processor"),
        ({**base, "S3BackupMode": "Enabled"}, "S3BackupConfiguration is required"),
    ]
    for config, text in cases:
        code, message = error_of(fh.create_delivery_stream, DeliveryStreamName="rules", ExtendedS3DestinationConfiguration=config)
        assert code == "InvalidArgumentException" and text in message, (config, message)
    fh.create_delivery_stream(DeliveryStreamName="ok", ExtendedS3DestinationConfiguration={
        **base, "Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/", **dp, **jq})
    code, message = error_of(fh.update_destination, DeliveryStreamName="ok", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001",
                             ExtendedS3DestinationUpdate={"DynamicPartitioningConfiguration": {"Enabled": False}})
    assert code == "InvalidArgumentException" and "cannot be disabled" in message


def test_concurrent_tags_are_all_kept(fh):
    fh.create_delivery_stream(DeliveryStreamName="t", ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: fh.tag_delivery_stream(DeliveryStreamName="t", Tags=[{"Key": f"k{n}", "Value": "v"}]), range(40)))
    assert len(fh.list_tags_for_delivery_stream(DeliveryStreamName="t", Limit=50)["Tags"]) == 40


def test_concurrent_updates_with_one_version_have_one_winner(fh):
    fh.create_delivery_stream(DeliveryStreamName="u", ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})
    from botocore.exceptions import ClientError

    def update(n):
        try:
            fh.update_destination(DeliveryStreamName="u", CurrentDeliveryStreamVersionId="1", DestinationId="destinationId-000000000001",
                                  ExtendedS3DestinationUpdate={"Prefix": f"p{n}/"})
            return "ok"
        except ClientError as err:
            return err.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(update, range(8)))
    assert results.count("ok") == 1 and results.count("ConcurrentModificationException") == 7, results
    description = fh.describe_delivery_stream(DeliveryStreamName="u")["DeliveryStreamDescription"]
    assert description["VersionId"] == "2"


def test_concurrent_creates_of_one_name_make_one_stream(start_firelake, tmp_path):
    server = start_firelake()
    fh = server.client("firehose")
    from botocore.exceptions import ClientError

    def create(name):
        try:
            fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})
            return "ok"
        except ClientError as err:
            return err.response["Error"]["Code"]

    names = [f"dup{n}" for n in range(12)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, [name for name in names for _ in range(6)]))
    assert results.count("ok") == len(names) and results.count("ResourceInUseException") == 5 * len(names), results
    assert len(list((server.data_dir / ".firelake" / "streams").iterdir())) == len(names)


def test_deleted_streams_stay_deleted_after_racing_tags_and_a_restart(start_firelake, tmp_path):
    data = tmp_path / "data"
    server = start_firelake(data_dir=data)
    fh = server.client("firehose")
    names = [f"d{n}" for n in range(20)]
    for name in names:
        fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})

    def tag_loop(name, stop):
        while not stop.is_set():
            try:
                fh.tag_delivery_stream(DeliveryStreamName=name, Tags=[{"Key": "k", "Value": str(time.time())}])
            except Exception:
                return

    stop = threading.Event()
    threads = [threading.Thread(target=tag_loop, args=(n, stop)) for n in names]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    for name in names:
        fh.delete_delivery_stream(DeliveryStreamName=name)
    stop.set()
    for thread in threads:
        thread.join()
    server.proc.kill()
    server.proc.wait()
    again = start_firelake(data_dir=data)
    assert again.client("firehose").list_delivery_streams()["DeliveryStreamNames"] == []


def test_puts_racing_a_delete_leave_nothing_held(firelake):
    fh = firelake.client("firehose", max_pool_connections=32)
    for n in range(12):
        name = f"r{n}"
        fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::nobucket"})

        def put_loop(name=name):
            for _ in range(400):
                try:
                    fh.put_record(DeliveryStreamName=name, Record={"Data": b"x" * 1000})
                except Exception:
                    return

        threads = [threading.Thread(target=put_loop) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        fh.delete_delivery_stream(DeliveryStreamName=name)
        for thread in threads:
            thread.join()
    with urllib.request.urlopen(f"{firelake.endpoint}/_firelake/streams", timeout=10) as response:
        assert json.loads(response.read()) == {"streams": [], "held_bytes_total": 0}


def test_flush_needs_post(firelake):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{firelake.endpoint}/_firelake/flush", timeout=10)
    assert err.value.code == 405 and err.value.headers["Allow"] == "POST"


def test_a_lambda_that_cannot_be_invoked_sends_records_to_error_output_after_the_retries(start_firelake):
    server = start_firelake("--buffer-interval-cap", "0.2")
    fh, s3 = server.client("firehose"), server.client("s3")
    s3.create_bucket(Bucket="bkt")
    arn = "arn:aws:lambda:us-east-1:000000000000:function:absent"
    fh.create_delivery_stream(DeliveryStreamName="lam", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt", "Prefix": "ok/", "ErrorOutputPrefix": "failed/",
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": arn},
            {"ParameterName": "NumberOfRetries", "ParameterValue": "1"},
            {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}})
    fh.put_record_batch(DeliveryStreamName="lam", Records=[{"Data": b"one"}, {"Data": b"two"}])
    assert flush(server, "lam")[0] == 200
    objects = everything(s3)
    [key] = objects
    assert key.startswith("failed/") and "/lam-1-" in key, key
    docs = [json.loads(line) for line in objects[key].splitlines()]
    assert [base64.b64decode(d["rawData"]) for d in docs] == [b"one", b"two"]
    for doc in docs:
        assert doc["errorCode"] == "Lambda.FunctionNotFound" and doc["attemptsMade"] == 2 and doc["lambdaARN"] == arn
        assert list(doc)[-1] == "lambdaARN" and doc["attemptEndingTimestamp"] >= doc["arrivalTimestamp"]
    assert streams_status(server)["lam"]["lambda_invocations"] == {"failed after retries": 1}
    for bad, text in [("2.9.9", "NumberOfRetries"), ("arn:aws:s3:::x", "LambdaArn")]:
        name = "LambdaArn" if bad.startswith("arn") else "NumberOfRetries"
        params = [{"ParameterName": "LambdaArn", "ParameterValue": arn if name != "LambdaArn" else bad}]
        if name == "NumberOfRetries":
            params.append({"ParameterName": "NumberOfRetries", "ParameterValue": bad})
        code, message = error_of(fh.create_delivery_stream, DeliveryStreamName="bad", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": params}]}})
        assert code == "InvalidArgumentException" and text in message, message


TRANSFORM = '''
import base64, json

def handler(event, context):
    out = []
    for record in event["records"]:
        data = json.loads(base64.b64decode(record["data"]))
        if data.get("speed", 0) == 0:
            out.append({"recordId": record["recordId"], "result": "Dropped"})
        elif "vin" not in data:
            out.append({"recordId": record["recordId"], "result": "ProcessingFailed"})
        else:
            line = json.dumps({"vehicle": data["vin"], "kmh": data["speed"]}) + "\\n"
            out.append({"recordId": record["recordId"], "result": "Ok",
                        "data": base64.b64encode(line.encode()).decode(),
                        "metadata": {"partitionKeys": {"fleet": data["vin"][:3]}}})
    return {"records": out}
'''


def lambda_zip(source):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("transform.py", source)
    return buffer.getvalue()


def with_function(start_firelake, name, source, *args, **function):
    """A firelake that runs Python functions (with `args`), a bucket `bkt`, and the function
    `name` (handler `transform.handler` of `source`, and `function`'s CreateFunction
    members): (server, firehose, s3, the function's ARN)."""
    import sys

    server = start_firelake("--lambda-python", sys.executable, "--buffer-interval-cap", "0.2", *args)
    fh, s3, lam = server.client("firehose"), server.client("s3"), server.client("lambda")
    s3.create_bucket(Bucket="bkt")
    arn = lam.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/l",
                              Handler="transform.handler", Code={"ZipFile": lambda_zip(source)}, **function)["FunctionArn"]
    return server, fh, s3, arn


def test_a_python_lambda_transforms_drops_and_fails_telematics_records(start_firelake):
    server, fh, s3, arn = with_function(start_firelake, "transform", TRANSFORM)
    fh.create_delivery_stream(DeliveryStreamName="course", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt",
        "Prefix": "fleet=!{partitionKeyFromLambda:fleet}/", "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "DynamicPartitioningConfiguration": {"Enabled": True},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": arn},
            {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}})
    records = [{"vin": "WVW001", "speed": 50}, {"vin": "BMW002", "speed": 0}, {"speed": 30},
               {"vin": "WVW003", "speed": 80}, {"vin": "BMW004", "speed": 12}]
    fh.put_record_batch(DeliveryStreamName="course", Records=[{"Data": json.dumps(r).encode()} for r in records])
    assert flush(server, "course")[0] == 200
    by_prefix = {k.rsplit("/", 1)[0]: v for k, v in everything(s3).items()}
    assert by_prefix.pop("fleet=WVW") == b'{"vehicle": "WVW001", "kmh": 50}\n{"vehicle": "WVW003", "kmh": 80}\n'
    assert by_prefix.pop("fleet=BMW") == b'{"vehicle": "BMW004", "kmh": 12}\n'
    [doc] = [json.loads(line) for line in by_prefix.pop("errors/processing-failed").splitlines()]
    assert by_prefix == {}
    assert doc["errorCode"] == "Lambda.ProcessingFailedStatus" and doc["errorMessage"] == "ProcessingFailed status set for record"
    assert doc["lambdaARN"] == arn and doc["attemptsMade"] == 1 and json.loads(base64.b64decode(doc["rawData"])) == {"speed": 30}
    assert streams_status(server)["course"]["lambda_invocations"] == {"answered": 1}


OVERLAP = '''
import base64, os, time

def handler(event, context):
    # Marks itself running, and waits (a bounded while) until it sees three invocations run
    # at once, or hears that another one saw that: with batches invoked one at a time it
    # would only ever see itself. Each record is labelled with the most it saw.
    running, seen = os.environ["RUNNING"], os.environ["SEEN"]
    mine = os.path.join(running, event["invocationId"])
    open(mine, "w").close()
    try:
        deadline = time.monotonic() + 10
        most = len(os.listdir(running))
        while most < 3 and not os.path.exists(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
            most = max(most, len(os.listdir(running)))
        if most >= 3:
            open(seen, "w").close()
        records = [base64.b64decode(r["data"]) for r in event["records"]]
        # The first batch ends last: its records must still be delivered first.
        if records[0].startswith(b"0000"):
            time.sleep(0.5)
    finally:
        os.remove(mine)
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": base64.b64encode(b"%d " % most + data).decode()}
                        for r, data in zip(event["records"], records)]}
'''


def test_lambda_batches_of_one_stream_are_invoked_concurrently_and_delivered_in_order(start_firelake, tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    variables = {"RUNNING": str(running), "SEEN": str(tmp_path / "three-seen")}
    server, fh, s3, arn = with_function(start_firelake, "overlap", OVERLAP, "--lambda-workers-max", "3",
                                        Timeout=60, Environment={"Variables": variables})
    fh.create_delivery_stream(DeliveryStreamName="wide", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt", "Prefix": "out/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": arn},
            {"ParameterName": "BufferSizeInMBs", "ParameterValue": "0.2"},
            {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}})
    # 500 records of 1000 bytes, put at once: three Lambda batches (0.2 MiB, 0.2 MiB, the rest).
    records = [b"%04d" % i + b"." * 995 + b"\n" for i in range(500)]
    answer = fh.put_record_batch(DeliveryStreamName="wide", Records=[{"Data": r} for r in records])
    assert answer["FailedPutCount"] == 0
    assert flush(server, "wide")[0] == 200
    objects = list(everything(s3).values())
    # Some invocation ran beside two others (never more: --lambda-workers-max); the records
    # come out once each, every object holding a run of them in the order they were put,
    # though the first batch was answered last (objects are written concurrently, so the
    # order between objects is not the test's).
    lines = [line for body in sorted(objects, key=lambda b: b.split(b" ", 1)[1][:4]) for line in body.splitlines(keepends=True)]
    most = [int(line.split(b" ", 1)[0]) for line in lines]
    assert max(most) == 3 and len(most) == 500
    assert [line.split(b" ", 1)[1] for line in lines] == records
    assert streams_status(server)["wide"]["lambda_invocations"] == {"answered": 3}
    assert streams_status(server)["wide"]["lambda_batches_in_flight"] == 0


BROKEN = '''
def handler(event, context):
    raise RuntimeError("the transform is broken")
'''


def test_a_failing_lambda_is_retried_then_its_records_are_error_documents(start_firelake):
    server, fh, s3, arn = with_function(start_firelake, "broken", BROKEN)
    fh.create_delivery_stream(DeliveryStreamName="b", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt", "Prefix": "ok/", "ErrorOutputPrefix": "failed/",
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": arn}, {"ParameterName": "NumberOfRetries", "ParameterValue": "2"},
            {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}})
    fh.put_record(DeliveryStreamName="b", Record={"Data": b"payload"})
    assert flush(server, "b")[0] == 200
    [(key, data)] = everything(s3).items()
    [doc] = [json.loads(line) for line in data.splitlines()]
    assert key.startswith("failed/") and doc["errorCode"] == "Lambda.FunctionError" and doc["attemptsMade"] == 3
    assert "the transform is broken" in doc["errorMessage"] and base64.b64decode(doc["rawData"]) == b"payload"


def test_the_open_file_limit_caps_streams_with_limit_exceeded_and_a_restart_still_serves(tmp_path):
    import resource
    import subprocess

    from conftest import BINARY, Firelake

    def limited():
        resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600))

    def start():
        proc = subprocess.Popen([BINARY, "--port", "0", "--data-dir", str(tmp_path / "data")], stdout=subprocess.PIPE, text=True,
                                preexec_fn=limited, env={**__import__("os").environ, "RUST_LOG": "error"})
        server = Firelake.__new__(Firelake)
        server.proc, server.data_dir = proc, tmp_path / "data"
        server.endpoint = next(w for w in proc.stdout.readline().split() if w.startswith("http://")).rstrip(",")
        return server

    server = start()
    try:
        fh = server.client("firehose")
        created = 0
        while True:
            try:
                fh.create_delivery_stream(DeliveryStreamName=f"s{created}",
                                          ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bkt"})
                created += 1
            except Exception as err:
                assert err.response["Error"]["Code"] == "LimitExceededException", err
                assert "open-file limit of 600" in err.response["Error"]["Message"]
                break
            assert created < 200
        assert created == 600 - 512
    finally:
        server.stop()
    again = start()
    try:
        names = again.client("firehose").list_delivery_streams(Limit=1000)["DeliveryStreamNames"]
        assert len(names) == created
    finally:
        again.stop()
