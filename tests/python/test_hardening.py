"""Issue #12 seen through boto3: `--auth strict` refuses what AWS refuses (a body changed
after signing, headers a presigned URL does not sign) and still takes what boto3 makes."""
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

KEY, SECRET = "AKIDPYHARDENING", "py/hardening-secret"


@pytest.fixture
def strict(start_firelake):
    server = start_firelake("--auth", "strict", "--auth-keys", f"{KEY}:{SECRET}")
    s3 = server.client("s3", access_key=KEY, secret=SECRET)
    s3.create_bucket(Bucket="mine")
    s3.create_bucket(Bucket="other")
    s3.put_object(Bucket="other", Key="secret", Body=b"other's secret")
    return server, s3


def send(url, data=b"", headers=None, method="PUT"):
    # urllib would add a form Content-Type, which SigV2 signs; the presigned URLs sign none.
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_body_changed_after_signing_is_refused(strict):
    _, s3 = strict

    def tamper(request, **_):
        request.body = request.body.replace(b"<AllowedMethod>GET</AllowedMethod>", b"<AllowedMethod>PUT</AllowedMethod>")

    s3.meta.events.register("before-send.s3.PutBucketCors", tamper)
    rules = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]}
    with pytest.raises(ClientError) as err:
        s3.put_bucket_cors(Bucket="mine", CORSConfiguration=rules)
    assert err.value.response["Error"]["Code"] == "XAmzContentSHA256Mismatch"
    s3.meta.events.unregister("before-send.s3.PutBucketCors", tamper)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket="mine")
    assert err.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket="mine", CORSConfiguration=rules)
    assert s3.get_bucket_cors(Bucket="mine")["CORSRules"][0]["AllowedMethods"] == ["GET"]


def test_a_presigned_put_takes_no_unsigned_headers(strict):
    server, s3 = strict
    v4 = server.client("s3", access_key=KEY, secret=SECRET, signature_version="s3v4")
    url = v4.generate_presigned_url("put_object", Params={"Bucket": "mine", "Key": "upload"})
    for name, value in [("x-amz-copy-source", "/other/secret"), ("x-amz-meta-team", "red"), ("x-amz-tagging", "a=b")]:
        status, body = send(url, b"new", {name: value})
        assert status == 403, body
        assert f"<HeadersNotSigned>{name}</HeadersNotSigned>".encode() in body, body
    assert "Contents" not in s3.list_objects_v2(Bucket="mine")
    assert send(url, b"new")[0] == 200
    assert s3.get_object(Bucket="mine", Key="upload")["Body"].read() == b"new"


@pytest.mark.parametrize("version", ["s3", "s3v4"])
def test_presigned_puts_with_metadata_work(strict, version):
    """boto3 signs metadata as a header with SigV4 and moves it into the query with SigV2."""
    server, s3 = strict
    presigner = server.client("s3", access_key=KEY, secret=SECRET, signature_version=version)
    params = {"Bucket": "mine", "Key": f"meta-{version}", "Metadata": {"team": "red"}}
    url = presigner.generate_presigned_url("put_object", Params=params)
    headers = {"x-amz-meta-team": "red"} if version == "s3v4" else {}
    status, body = send(url, b"with metadata", headers)
    assert status == 200, body
    assert s3.head_object(Bucket="mine", Key=f"meta-{version}")["Metadata"] == {"team": "red"}
    # Changing the metadata the URL signed is refused.
    if version == "s3":
        status, _ = send(url.replace("x-amz-meta-team=red", "x-amz-meta-team=blue"), b"x")
        assert status == 403
