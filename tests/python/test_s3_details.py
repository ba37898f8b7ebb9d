"""The smaller S3 behaviours real clients were seen to reach (spec s3.md §7f), through boto3 and a
raw socket against a real firelake: ListBuckets paging, Content-Encoding kept byte for byte,
x-amz-tagging on PUT, UploadPartCopy's range rules, and non-ASCII user metadata."""
import http.client
import time
import urllib.parse

from conftest import refused


def test_list_buckets_pages_by_max_buckets_and_filters_by_prefix(s3):
    names = ["logs-a", "logs-b", "logs-c", "raw-a", "raw-b"]
    for name in reversed(names):
        s3.create_bucket(Bucket=name)
    plain = s3.list_buckets()
    assert [b["Name"] for b in plain["Buckets"]] == names
    assert "ContinuationToken" not in plain and "BucketRegion" not in plain["Buckets"][0]
    seen, token, pages = [], None, 0
    while True:
        page = s3.list_buckets(MaxBuckets=2, **({"ContinuationToken": token} if token else {}))
        pages += 1
        seen += [b["Name"] for b in page["Buckets"]]
        assert all(b["BucketRegion"] == "us-east-1" for b in page["Buckets"])
        token = page.get("ContinuationToken")
        if not token:
            break
    assert (seen, pages) == (names, 3)
    # Exactly max-buckets left: no token.
    last = s3.list_buckets(MaxBuckets=2, Prefix="raw-")
    assert ([b["Name"] for b in last["Buckets"]], last.get("ContinuationToken"), last["Prefix"]) == (["raw-a", "raw-b"], None, "raw-")
    assert [b["Name"] for b in s3.list_buckets(BucketRegion="us-east-1", Prefix="logs-")["Buckets"]] == names[:3]
    assert s3.list_buckets(BucketRegion="eu-west-1")["Buckets"] == []
    assert refused(s3.list_buckets, MaxBuckets=10001)[:2] == (400, "InvalidArgument")
    assert refused(s3.list_buckets, ContinuationToken="%%%")[:2] == (400, "InvalidArgument")


def test_content_encoding_and_tagging_are_kept_as_sent(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ContentEncoding="gzip, br", Tagging="foo=bar&bar")
    head = s3.head_object(Bucket="bkt", Key="k")
    assert head["ContentEncoding"] == "gzip, br"
    assert sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket="bkt", Key="k")["TagSet"]) == [("bar", ""), ("foo", "bar")]


def test_upload_part_copy_takes_only_a_range_inside_the_source(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="src", Body=b"0123456789")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    copy = dict(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, CopySource="bkt/src")
    assert refused(s3.upload_part_copy, **copy, CopySourceRange="bytes=5-10") == (
        400, "InvalidArgument", "Range specified is not valid for source object of size: 10")
    for malformed in ["bytes=5-", "bytes=-3", "bytes=7-2", "5-6"]:
        assert refused(s3.upload_part_copy, **copy, CopySourceRange=malformed)[:2] == (400, "InvalidArgument"), malformed
    part = s3.upload_part_copy(**copy, CopySourceRange="bytes=3-9")["CopyPartResult"]
    done = s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["ETag"].endswith('-1"')
    assert s3.get_object(Bucket="bkt", Key="mp")["Body"].read() == b"3456789"


def raw_request(endpoint, method, path, headers, body=b""):
    """A request boto3 would refuse to send (it rejects non-ASCII metadata client-side)."""
    connection = http.client.HTTPConnection(urllib.parse.urlparse(endpoint).netloc, timeout=30)
    connection.putrequest(method, path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name, value in {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=test/{stamp[:8]}/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        "x-amz-date": stamp, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(len(body)), **headers,
    }.items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(body)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, response.headers


def test_non_ascii_metadata_comes_back_byte_for_byte(s3, firelake):
    s3.create_bucket(Bucket="bkt")
    raw = "caf\u00e9 \u2603".encode()
    status, _ = raw_request(firelake.endpoint, "PUT", "/bkt/raw", {"x-amz-meta-name": raw}, b"x")
    assert status == 200
    _, headers = raw_request(firelake.endpoint, "HEAD", "/bkt/raw", {})
    # http.client decodes header bytes as Latin-1: encode back to see the bytes sent.
    assert headers["x-amz-meta-name"].encode("latin-1") == raw
    # An RFC 2047 encoded word, as S3 answers non-ASCII, round-trips through boto3 unchanged.
    s3.put_object(Bucket="bkt", Key="encoded", Body=b"x", Metadata={"name": "=?UTF-8?B?Y2Fmw6k=?="})
    assert s3.head_object(Bucket="bkt", Key="encoded")["Metadata"] == {"name": "=?UTF-8?B?Y2Fmw6k=?="}
