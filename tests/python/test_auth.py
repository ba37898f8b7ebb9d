"""`--auth strict` with boto3, the AWS CLI and presigned URLs: what is signed with a
configured key passes, anything else gets the AWS error, and secrets never reach the logs."""
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import botocore
import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, flush

# The pinned CLI of the test venv, not whichever `aws` is first on PATH.
AWS = str(pathlib.Path(sys.executable).with_name("aws"))
KEY, SECRET = "AKIDWORKSHOP01", "wJalrXUtnFEMI/firelake+strict"
KEYS = f"{KEY}:{SECRET},AKIDSECOND:second-secret"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def http(method, url, data=None):
    # urllib would add a form Content-Type to a body, which SigV2 signs; curl sends none.
    headers = {"Content-Type": ""} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def strict(start_firelake):
    return start_firelake("--auth", "strict", "--auth-keys", KEYS)


def test_signed_boto3_requests_pass(strict, tmp_path):
    s3 = strict.client("s3", KEY, SECRET)
    s3.create_bucket(Bucket="signed")
    s3.put_object(Bucket="signed", Key="a/b c.txt", Body=b"hello")  # checksum trailer, aws-chunked
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    s3.upload_file(str(source), "signed", "big.bin")  # multipart, Expect: 100-continue
    assert s3.get_object(Bucket="signed", Key="a/b c.txt")["Body"].read() == b"hello"
    assert s3.head_object(Bucket="signed", Key="big.bin")["ContentLength"] == source.stat().st_size
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="signed", Prefix="a/")["Contents"]] == ["a/b c.txt"]
    s3.delete_objects(Bucket="signed", Delete={"Objects": [{"Key": "big.bin"}]})

    firehose = strict.client("firehose", KEY, SECRET)
    firehose.create_delivery_stream(
        DeliveryStreamName="signed-stream",
        ExtendedS3DestinationConfiguration={"BucketARN": "arn:aws:s3:::signed", "RoleARN": "arn:aws:iam::000000000000:role/r"},
    )
    result = firehose.put_record_batch(DeliveryStreamName="signed-stream", Records=[{"Data": b"x\n"}] * 10)
    assert result["FailedPutCount"] == 0
    assert flush(strict, "signed-stream")[0] == 200
    delivered = [o["Key"] for o in s3.list_objects_v2(Bucket="signed")["Contents"] if o["Key"] != "a/b c.txt"]
    assert len(delivered) == 1
    assert s3.get_object(Bucket="signed", Key=delivered[0])["Body"].read() == b"x\n" * 10


def test_wrong_unknown_and_missing_credentials_are_refused(strict):
    strict.client("s3", KEY, SECRET).create_bucket(Bucket="guarded")
    with pytest.raises(ClientError) as excinfo:
        strict.client("s3", KEY, "wrong").put_object(Bucket="guarded", Key="forged", Body=b"x")
    assert error_code(excinfo) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as excinfo:
        strict.client("s3", "AKIDNOBODY", SECRET).list_buckets()
    assert error_code(excinfo) == ("InvalidAccessKeyId", 403)
    unsigned = strict.client("s3", signature_version=botocore.UNSIGNED)
    with pytest.raises(ClientError) as excinfo:
        unsigned.get_object(Bucket="guarded", Key="forged")
    assert error_code(excinfo) == ("AccessDenied", 403)
    assert not (strict.data_dir / "guarded" / "forged").exists()

    with pytest.raises(ClientError) as excinfo:
        strict.client("firehose", KEY, "wrong").list_delivery_streams()
    assert error_code(excinfo) == ("InvalidSignatureException", 400)
    assert "does not match the signature you provided" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        strict.client("firehose", "AKIDNOBODY", SECRET).list_delivery_streams()
    assert error_code(excinfo) == ("UnrecognizedClientException", 400)
    with pytest.raises(ClientError) as excinfo:
        strict.client("firehose", signature_version=botocore.UNSIGNED).list_delivery_streams()
    assert error_code(excinfo) == ("MissingAuthenticationTokenException", 403)


@pytest.mark.parametrize("signature", [None, "s3v4"], ids=["boto3-default-sigv2", "sigv4"])
def test_presigned_urls_expire_and_cannot_be_altered(strict, signature):
    # boto3 presigns S3 URLs with Signature Version 2 unless told s3v4; both must work.
    s3 = strict.client("s3", KEY, SECRET, **({"signature_version": signature} if signature else {}))
    strict.client("s3", KEY, SECRET).create_bucket(Bucket="shared")
    strict.client("s3", KEY, SECRET).put_object(Bucket="shared", Key="report.csv", Body=b"a,b\n1,2\n")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "report.csv"}, ExpiresIn=300)
    assert ("X-Amz-Signature=" in url) == (signature == "s3v4")
    assert http("GET", url) == (200, b"a,b\n1,2\n")
    status, body = http("GET", url.replace("report.csv", "other.csv"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    overridden = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "shared", "Key": "report.csv", "ResponseContentType": "text/csv"}, ExpiresIn=300)
    assert http("GET", overridden) == (200, b"a,b\n1,2\n")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "shared", "Key": "upload.txt"}, ExpiresIn=300)
    assert http("PUT", put_url, b"uploaded")[0] == 200
    assert (strict.data_dir / "shared" / "upload.txt").read_bytes() == b"uploaded"

    short = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "report.csv"}, ExpiresIn=1)
    time.sleep(2.2)
    status, body = http("GET", short)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"<Message>Request has expired</Message>" in body
    if signature == "s3v4":
        too_long = url.replace("X-Amz-Expires=300", "X-Amz-Expires=604801")
        status, body = http("GET", too_long)
        assert status == 400 and b"AuthorizationQueryParametersError" in body


def test_the_aws_cli_signs_with_the_configured_key(strict, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": strict.endpoint, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    source = tmp_path / "note.txt"
    source.write_text("from the cli\n")
    subprocess.run([AWS, "s3", "mb", "s3://cli-bucket"], env=env, check=True, capture_output=True)
    subprocess.run([AWS, "s3", "cp", str(source), "s3://cli-bucket/note.txt"], env=env, check=True, capture_output=True)
    assert (strict.data_dir / "cli-bucket" / "note.txt").read_text() == "from the cli\n"
    done = subprocess.run([AWS, "firehose", "list-delivery-streams"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    wrong = subprocess.run([AWS, "s3", "ls", "s3://cli-bucket"], env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"},
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "SignatureDoesNotMatch" in wrong.stderr


def test_keys_from_the_environment_and_a_file_never_reach_logs_or_help(start_firelake, tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# workshop keys\n{KEY}:{SECRET}\n")
    log = open(tmp_path / "firelake.log", "w")
    server = start_firelake("--auth", "strict", "--auth-keys-file", str(keys_file), stderr=log,
                            env={"FIRELAKE_AUTH_KEYS": "AKIDFROMENV:env-secret-value", "RUST_LOG": "debug"})
    server.client("s3", KEY, SECRET).create_bucket(Bucket="from-file")
    server.client("s3", "AKIDFROMENV", "env-secret-value").head_bucket(Bucket="from-file")
    with pytest.raises(ClientError):
        server.client("s3", KEY, "wrong-guess").head_bucket(Bucket="from-file")
    server.stop()
    log.close()
    text = (tmp_path / "firelake.log").read_text()
    assert "request refused" in text  # debug logging was on
    for secret in (SECRET, "env-secret-value"):
        assert secret not in text

    env = {**os.environ, "FIRELAKE_AUTH_KEYS": f"{KEY}:{SECRET}"}
    help_text = subprocess.run([BINARY, "--help"], env=env, capture_output=True, text=True).stdout
    assert "--auth-keys" in help_text and SECRET not in help_text


@pytest.mark.parametrize("args, message", [
    (["--auth", "strict"], "--auth strict needs at least one access key"),
    (["--auth", "strict", "--auth-keys", "AKIDONLY"], "--auth-keys: access key entry 1 is not ID:SECRET"),
    (["--auth-keys", f"{KEY}:{SECRET}"], "access keys were given but --auth is off"),
])
def test_bad_auth_settings_stop_the_start_with_one_line(tmp_path, args, message):
    done = subprocess.run([BINARY, "--port", "0", "--data-dir", str(tmp_path / "d"), *args], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"firelake: {message}" + done.stderr.strip().split(message, 1)[1]]
    assert SECRET not in done.stderr
