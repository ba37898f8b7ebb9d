"""boto3, the AWS CLI, pandas and s3fs against a real firelake: bytes, headers and files on disk."""
import base64
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from boto3.s3.transfer import TransferConfig

AWS = str(pathlib.Path(sys.executable).with_name("aws"))


def md5(data):
    return hashlib.md5(data).hexdigest()


def test_put_get_with_default_checksums(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    body = b"record one\nrecord two\n"
    put = s3.put_object(Bucket="bkt", Key="logs/a.txt", Body=body)
    assert put["ETag"] == f'"{md5(body)}"'
    # boto3 >= 1.36 sends a CRC32 by default; firelake validates and stores it.
    assert "ChecksumCRC32" in put
    got = s3.get_object(Bucket="bkt", Key="logs/a.txt", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore validates the returned checksum
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert got["ContentType"] == "binary/octet-stream"
    assert (firelake.data_dir / "bkt" / "logs" / "a.txt").read_bytes() == body


def test_crc64nvme_through_awscrt(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    put = s3.put_object(Bucket="bkt", Key="k", Body=b"123456789", ChecksumAlgorithm="CRC64NVME")
    # The CRC-64/NVME check value of "123456789" is 0xAE8B14860A799888.
    assert base64.b64decode(put["ChecksumCRC64NVME"]).hex() == "ae8b14860a799888"
    got = s3.get_object(Bucket="bkt", Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"123456789"
    assert got["ChecksumCRC64NVME"] == put["ChecksumCRC64NVME"]


def test_upload_and_download_64_mib_go_multipart(firelake, s3, tmp_path):
    s3.create_bucket(Bucket="bkt")
    source = tmp_path / "big.bin"
    data = os.urandom(64 * 1024 * 1024)
    source.write_bytes(data)
    s3.upload_file(str(source), "bkt", "big/file.bin")
    head = s3.head_object(Bucket="bkt", Key="big/file.bin")
    assert head["ContentLength"] == len(data)
    # The default transfer config uploads 8 MiB parts: an AWS multipart ETag with 8 parts.
    chunk = 8 * 1024 * 1024
    part_md5s = b"".join(hashlib.md5(data[i:i + chunk]).digest() for i in range(0, len(data), chunk))
    assert head["ETag"] == f'"{hashlib.md5(part_md5s).hexdigest()}-8"'
    assert (firelake.data_dir / "bkt" / "big" / "file.bin").read_bytes() == data
    target = tmp_path / "back.bin"
    s3.download_file("bkt", "big/file.bin", str(target), Config=TransferConfig(max_concurrency=4))
    assert target.read_bytes() == data


def test_pandas_reads_an_object_body(firelake, s3):
    import pandas as pd

    s3.create_bucket(Bucket="sd-vehicle-data")
    rows = b"r1 4:25:06.000 4FTEX4944AK844294 106.94 -6.33 25\nr2 4:25:07.000 4FTEX4944AK844294 106.95 -6.34 27\n"
    s3.put_object(Bucket="sd-vehicle-data", Key="2026/11/27/21/fleet", Body=rows)
    obj = s3.get_object(Bucket="sd-vehicle-data", Key="2026/11/27/21/fleet")
    df = pd.read_csv(obj["Body"], delimiter=" ", names=["record_id", "timestamp", "vin", "lon", "lat", "speed"])
    assert list(df["speed"]) == [25, 27]


def test_pandas_reads_s3_urls_through_s3fs(firelake, s3):
    import pandas as pd

    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="data/table.csv", Body=b"a,b\n1,2\n3,4\n")
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": firelake.endpoint, "region_name": "us-east-1"}}
    df = pd.read_csv("s3://bkt/data/table.csv", storage_options=options)
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    df.assign(c=df.a + df.b).to_csv("s3://bkt/data/out.csv", index=False, storage_options=options)
    assert (firelake.data_dir / "bkt" / "data" / "out.csv").read_text() == "a,b,c\n1,2,3\n3,4,7\n"


def test_presigned_urls_with_plain_http(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "bkt", "Key": "pre/signed"}, ExpiresIn=300)
    request = urllib.request.Request(put_url, data=b"via presigned put", method="PUT")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "pre/signed"}, ExpiresIn=300)
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"via presigned put"
        assert response.headers["ETag"] == f'"{md5(b"via presigned put")}"'


def test_listing_with_url_encoding_round_trips_awkward_keys(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    keys = ["a+b", "a b", "100%", "k=v/x", "é/ü", "tab\tkey"]
    for key in keys:
        s3.put_object(Bucket="bkt", Key=key, Body=key.encode())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    versions = s3.list_object_versions(Bucket="bkt")["Versions"]
    assert {v["VersionId"] for v in versions} == {"null"}


def test_delete_objects_with_crc32_instead_of_md5(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    for i in range(5):
        s3.put_object(Bucket="bkt", Key=f"k{i}", Body=b"x")
    result = s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": f"k{i}"} for i in range(5)]})
    assert sorted(d["Key"] for d in result["Deleted"]) == [f"k{i}" for i in range(5)]
    assert s3.list_objects_v2(Bucket="bkt")["KeyCount"] == 0
    s3.delete_bucket(Bucket="bkt")
    assert not (firelake.data_dir / "bkt").exists()


def test_cors_preflight_and_response_headers(firelake, s3):
    s3.create_bucket(Bucket="web")
    s3.put_bucket_cors(Bucket="web", CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["http://app.example"], "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
    assert s3.get_bucket_cors(Bucket="web")["CORSRules"][0]["AllowedMethods"] == ["GET", "PUT"]
    s3.put_object(Bucket="web", Key="page.json", Body=b"{}")
    preflight = urllib.request.Request(f"{firelake.endpoint}/web/page.json", method="OPTIONS", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-amz-checksum-crc32"})
    with urllib.request.urlopen(preflight) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
        assert "PUT" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Max-Age"] == "600"
    with urllib.request.urlopen(urllib.request.Request(f"{firelake.endpoint}/web/page.json", headers={"Origin": "http://app.example"})) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
        assert response.headers["Access-Control-Expose-Headers"] == "ETag"
    denied = urllib.request.Request(f"{firelake.endpoint}/web/page.json", method="OPTIONS", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(denied)
    assert err.value.code == 403
    assert b"<Code>CORSResponse</Code>" in err.value.read()


def test_cors_values_that_cannot_be_headers_are_refused_when_put(firelake, s3):
    s3.create_bucket(Bucket="web")
    rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "ExposeHeaders": ["x-ok", "x-bad\nheader"]}
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.put_bucket_cors(Bucket="web", CORSConfiguration={"CORSRules": [rule]})
    assert err.value.response["Error"]["Code"] == "InvalidRequest"
    # Nothing was stored, and the preflight answers (before, the connection dropped).
    request = urllib.request.Request(f"{firelake.endpoint}/web/k", method="OPTIONS",
                                     headers={"Origin": "http://a.example", "Access-Control-Request-Method": "GET"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_bucket_subresources_for_infrastructure_tools(firelake, s3):
    s3.create_bucket(Bucket="infra")
    assert "Status" not in s3.get_bucket_versioning(Bucket="infra")
    assert s3.get_bucket_acl(Bucket="infra")["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert s3.get_bucket_encryption(Bucket="infra")["ServerSideEncryptionConfiguration"]["Rules"]
    assert s3.get_bucket_request_payment(Bucket="infra")["Payer"] == "BucketOwner"
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket="infra")
    for call, code in [
        (s3.get_bucket_policy, "NoSuchBucketPolicy"),
        (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
        (s3.get_bucket_website, "NoSuchWebsiteConfiguration"),
        (s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
        (s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError"),
        (s3.get_bucket_tagging, "NoSuchTagSet"),
        (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
    ]:
        with pytest.raises(s3.exceptions.ClientError) as err:
            call(Bucket="infra")
        assert err.value.response["Error"]["Code"] == code
    s3.put_bucket_tagging(Bucket="infra", Tagging={"TagSet": [{"Key": "team", "Value": "data"}]})
    assert s3.get_bucket_tagging(Bucket="infra")["TagSet"] == [{"Key": "team", "Value": "data"}]


def test_create_bucket_regions(firelake):
    import boto3

    eu = boto3.client("s3", endpoint_url=firelake.endpoint, region_name="eu-west-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    eu.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert eu.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"
    with pytest.raises(eu.exceptions.BucketAlreadyOwnedByYou):
        eu.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(eu.exceptions.ClientError) as err:
        eu.create_bucket(Bucket="no-constraint")
    assert err.value.response["Error"]["Code"] == "IllegalLocationConstraintException"
    # A 12-digit access key acts for that account: another account's bucket name is taken.
    other = boto3.client("s3", endpoint_url=firelake.endpoint, region_name="eu-west-1",
                         aws_access_key_id="111122223333", aws_secret_access_key="test")
    with pytest.raises(other.exceptions.BucketAlreadyExists):
        other.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})


def run_aws(env, *args, **kwargs):
    return subprocess.run([AWS, *args], env=env, check=True, capture_output=True, text=True, **kwargs)


def test_aws_cli_high_level_commands(firelake, aws_env, tmp_path):
    src = tmp_path / "site"
    (src / "css").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>")
    (src / "css" / "main.css").write_text("h1{}")
    run_aws(aws_env, "s3", "mb", "s3://cli-bucket")
    run_aws(aws_env, "s3", "cp", str(src / "index.html"), "s3://cli-bucket/index.html")
    run_aws(aws_env, "s3", "sync", str(src), "s3://cli-bucket/site")
    listing = run_aws(aws_env, "s3", "ls", "s3://cli-bucket", "--recursive").stdout
    assert "site/css/main.css" in listing and "index.html" in listing
    assert (firelake.data_dir / "cli-bucket" / "site" / "css" / "main.css").read_text() == "h1{}"
    # A second sync finds nothing to copy: sizes, times and ETags agree.
    again = run_aws(aws_env, "s3", "sync", str(src), "s3://cli-bucket/site").stdout
    assert again.strip() == ""
    back = tmp_path / "back"
    run_aws(aws_env, "s3", "sync", "s3://cli-bucket/site", str(back))
    assert (back / "css" / "main.css").read_text() == "h1{}"
    run_aws(aws_env, "s3", "rm", "s3://cli-bucket", "--recursive")
    assert run_aws(aws_env, "s3", "ls", "s3://cli-bucket").stdout.strip() == ""
    run_aws(aws_env, "s3", "rb", "s3://cli-bucket")


def test_aws_cli_s3api(firelake, aws_env, tmp_path):
    run_aws(aws_env, "s3api", "create-bucket", "--bucket", "api-bucket")
    body = tmp_path / "b.txt"
    body.write_text("s3api body")
    out = run_aws(aws_env, "s3api", "put-object", "--bucket", "api-bucket", "--key", "x/y", "--body", str(body), "--endpoint-url", firelake.endpoint).stdout
    assert md5(b"s3api body") in out
    head = run_aws(aws_env, "s3api", "head-object", "--bucket", "api-bucket", "--key", "x/y").stdout
    assert '"ContentLength": 10' in head
    err = subprocess.run([AWS, "s3api", "get-object", "--bucket", "api-bucket", "--key", "missing", str(tmp_path / "o")],
                         env=aws_env, capture_output=True, text=True)
    assert err.returncode != 0 and "NoSuchKey" in err.stderr
