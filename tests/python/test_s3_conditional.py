"""Conditional writes and deletes (If-None-Match: *, If-Match) and the one set of
precondition rules for reads, copy sources and writes, through boto3, the AWS CLI and raw
HTTP against a real firelake."""
import datetime
import hashlib
import pathlib
import socket
import subprocess
import sys
import threading

import pytest
from botocore.exceptions import ClientError

AWS = str(pathlib.Path(sys.executable).with_name("aws"))


def error(excinfo):
    err = excinfo.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"].get("Condition")


def body_of(s3, key, bucket="bkt"):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_put_if_none_match_writes_only_a_new_key(s3):
    s3.create_bucket(Bucket="bkt")
    first = s3.put_object(Bucket="bkt", Key="lock", Body=b"first", IfNoneMatch="*")
    assert first["ETag"] == f'"{hashlib.md5(b"first").hexdigest()}"'
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="bkt", Key="lock", Body=b"second", IfNoneMatch="*")
    assert error(excinfo) == (412, "PreconditionFailed", "If-None-Match")
    assert body_of(s3, "lock") == b"first"
    # After a delete the key is new again.
    s3.delete_object(Bucket="bkt", Key="lock")
    s3.put_object(Bucket="bkt", Key="lock", Body=b"third", IfNoneMatch="*")
    assert body_of(s3, "lock") == b"third"


def test_put_if_match(s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error(excinfo) == (412, "PreconditionFailed", "If-Match")
    assert body_of(s3, "k") == b"v1"
    # Quoted, unquoted and half-quoted ETags all match, and so does `*`.
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v3", IfMatch=etag.strip('"'))["ETag"]
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v4", IfMatch=etag[:-1])["ETag"]
    s3.put_object(Bucket="bkt", Key="k", Body=b"v5", IfMatch="*")
    assert body_of(s3, "k") == b"v5"
    # No object: NoSuchKey, for `*` too.
    for value in ['"0123456789abcdef0123456789abcdef"', "*"]:
        with pytest.raises(ClientError) as excinfo:
            s3.put_object(Bucket="bkt", Key="absent", Body=b"x", IfMatch=value)
        assert error(excinfo)[:2] == (404, "NoSuchKey")
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt", Prefix="absent")


def test_if_none_match_with_an_etag_is_not_implemented_and_bucket_errors_come_first(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"v1")
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfNoneMatch='"abc"')
    assert error(excinfo)[:2] == (501, "NotImplemented")
    assert body_of(s3, "k") == b"v1"
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"v", IfMatch="*")
    assert error(excinfo)[:2] == (404, "NoSuchBucket")


def race(writers, write):
    """Runs write(i) for every writer at once (released together by a barrier); answers
    each writer's outcome: "won", or the error code it got."""
    barrier = threading.Barrier(writers)
    answers = [None] * writers

    def run(i):
        barrier.wait()
        try:
            write(i)
            answers[i] = "won"
        except ClientError as err:
            answers[i] = err.response["Error"]["Code"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_if_none_match_puts_have_exactly_one_winner(firelake):
    s3 = firelake.client("s3", max_pool_connections=32)
    s3.create_bucket(Bucket="bkt")
    writers = 16
    for round_ in range(5):
        key = f"race/{round_}"
        answers = race(writers, lambda i: s3.put_object(Bucket="bkt", Key=key, Body=f"writer {i}".encode() * 1000, IfNoneMatch="*"))
        assert answers.count("won") == 1, answers
        assert set(answers) == {"won", "PreconditionFailed"}, answers
        winner = answers.index("won")
        assert body_of(s3, key) == f"writer {winner}".encode() * 1000


def test_concurrent_if_match_puts_of_one_etag_have_exactly_one_winner(firelake):
    # Read-modify-write: every writer read the same ETag; only one may replace it.
    s3 = firelake.client("s3", max_pool_connections=32)
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="counter", Body=b"0")["ETag"]
    answers = race(12, lambda i: s3.put_object(Bucket="bkt", Key="counter", Body=f"{i + 1}".encode(), IfMatch=etag))
    assert answers.count("won") == 1 and set(answers) == {"won", "PreconditionFailed"}, answers
    assert body_of(s3, "counter") == f"{answers.index('won') + 1}".encode()


def test_complete_multipart_upload_conditions(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="taken", Body=b"put first")

    def upload(key, data):
        upload_id = s3.create_multipart_upload(Bucket="bkt", Key=key)["UploadId"]
        part = s3.upload_part(Bucket="bkt", Key=key, UploadId=upload_id, PartNumber=1, Body=data)
        return upload_id, {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}

    upload_id, parts = upload("taken", b"multipart")
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="bkt", Key="taken", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*")
    assert error(excinfo) == (412, "PreconditionFailed", "If-None-Match")
    assert body_of(s3, "taken") == b"put first"
    # After a 412 the upload is still there, and completes without the condition.
    assert len(s3.list_parts(Bucket="bkt", Key="taken", UploadId=upload_id)["Parts"]) == 1
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="bkt", Key="taken", UploadId=upload_id, MultipartUpload=parts, IfMatch='"ffff"')
    assert error(excinfo) == (412, "PreconditionFailed", "If-Match")
    etag = s3.head_object(Bucket="bkt", Key="taken")["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="taken", UploadId=upload_id, MultipartUpload=parts, IfMatch=etag)
    assert body_of(s3, "taken") == b"multipart"

    upload_id, parts = upload("fresh", b"new")
    done = s3.complete_multipart_upload(Bucket="bkt", Key="fresh", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*")
    assert body_of(s3, "fresh") == b"new"
    # A retry of the completion that succeeded is answered as it was, not with a 412 for
    # the object it wrote itself.
    again = s3.complete_multipart_upload(Bucket="bkt", Key="fresh", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*")
    assert again["ETag"] == done["ETag"]
    # NoSuchUpload wins over the condition.
    upload_id, parts = upload("fresh", b"newer")
    s3.abort_multipart_upload(Bucket="bkt", Key="fresh", UploadId=upload_id)
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="bkt", Key="fresh", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*")
    assert error(excinfo)[:2] == (404, "NoSuchUpload")


def test_copy_object_destination_conditions(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="src", Body=b"source")
    dest_etag = s3.put_object(Bucket="bkt", Key="dest", Body=b"dest")["ETag"]
    source = {"Bucket": "bkt", "Key": "src"}
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket="bkt", Key="dest", CopySource=source, IfNoneMatch="*")
    assert error(excinfo) == (412, "PreconditionFailed", "If-None-Match")
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket="bkt", Key="dest", CopySource=source, IfMatch='"ffff"')
    assert error(excinfo) == (412, "PreconditionFailed", "If-Match")
    assert body_of(s3, "dest") == b"dest"
    s3.copy_object(Bucket="bkt", Key="dest", CopySource=source, IfMatch=dest_etag)
    assert body_of(s3, "dest") == b"source"
    s3.copy_object(Bucket="bkt", Key="new", CopySource=source, IfNoneMatch="*")
    assert body_of(s3, "new") == b"source"


def test_copy_source_conditions_follow_the_read_precedence(s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="src", Body=b"source")["ETag"]
    source = {"Bucket": "bkt", "Key": "src"}
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    # AWS copies when if-match holds although if-unmodified-since does not.
    s3.copy_object(Bucket="bkt", Key="a", CopySource=source, CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=long_ago)
    assert body_of(s3, "a") == b"source"
    cases = [
        ({"CopySourceIfMatch": '"ffff"'}, "x-amz-copy-source-If-Match"),
        ({"CopySourceIfUnmodifiedSince": long_ago}, "x-amz-copy-source-If-Unmodified-Since"),
        ({"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": long_ago}, "x-amz-copy-source-If-None-Match"),
        ({"CopySourceIfModifiedSince": later}, "x-amz-copy-source-If-Modified-Since"),
    ]
    for conditions, condition in cases:
        with pytest.raises(ClientError) as excinfo:
            s3.copy_object(Bucket="bkt", Key="b", CopySource=source, **conditions)
        assert error(excinfo) == (412, "PreconditionFailed", condition), conditions
    # The same rules for UploadPartCopy.
    upload_id = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    s3.upload_part_copy(Bucket="bkt", Key="mp", UploadId=upload_id, PartNumber=1, CopySource=source,
                        CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=long_ago)
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket="bkt", Key="mp", UploadId=upload_id, PartNumber=2, CopySource=source, CopySourceIfNoneMatch=etag)
    assert error(excinfo) == (412, "PreconditionFailed", "x-amz-copy-source-If-None-Match")


def test_get_and_head_conditions(s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v")["ETag"]
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    assert s3.get_object(Bucket="bkt", Key="k", IfMatch=etag, IfUnmodifiedSince=long_ago)["Body"].read() == b"v"
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="bkt", Key="k", IfMatch='"ffff"')
    assert error(excinfo) == (412, "PreconditionFailed", "If-Match")
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket="bkt", Key="k", IfNoneMatch=etag)
    assert error(excinfo)[0] == 304


def test_conditional_deletes(s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v")["ETag"]
    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket="bkt", Key="k", IfMatch='"ffff"')
    assert error(excinfo) == (412, "PreconditionFailed", "If-Match")
    assert body_of(s3, "k") == b"v"
    s3.delete_object(Bucket="bkt", Key="k", IfMatch=etag)
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt")
    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket="bkt", Key="k", IfMatch=etag)
    assert error(excinfo)[:2] == (404, "NoSuchKey")

    a = s3.put_object(Bucket="bkt", Key="a", Body=b"a")["ETag"]
    s3.put_object(Bucket="bkt", Key="b", Body=b"b")
    result = s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a", "ETag": a}, {"Key": "b", "ETag": '"ffff"'}]})
    assert [d["Key"] for d in result["Deleted"]] == ["a"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("b", "PreconditionFailed")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == ["b"]


def test_a_version_id_on_an_unversioned_bucket_never_deletes_the_object(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"keep me")
    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket="bkt", Key="k", VersionId="v1")
    assert error(excinfo)[:2] == (400, "InvalidArgument")
    assert body_of(s3, "k") == b"keep me"
    s3.delete_object(Bucket="bkt", Key="k", VersionId="null")
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt")


def raw_request(port, head):
    """Sends a request head with `Expect: 100-continue`; answers the socket once the
    server has said 100 Continue (it has checked what it checks before the body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head.encode())
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = sock.recv(4096)
        assert chunk, interim
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return sock


def read_response(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            if len(rest) >= length:
                break
    sock.close()
    return data.decode(errors="replace")


def test_an_object_deleted_during_an_if_match_put_is_a_conflict(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v1")["ETag"]
    body = b"v2"
    sock = raw_request(firelake.port, f"PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Match: {etag}\r\n"
                                      f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n")
    # The early check found the object; it goes before the body arrives.
    s3.delete_object(Bucket="bkt", Key="k")
    sock.sendall(body)
    response = read_response(sock)
    assert response.startswith("HTTP/1.1 409"), response
    assert "<Code>ConditionalRequestConflict</Code>" in response
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt")


def test_a_conflict_during_complete_drops_the_upload(firelake, s3):
    s3.create_bucket(Bucket="bkt")
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v1")["ETag"]
    upload_id = s3.create_multipart_upload(Bucket="bkt", Key="k")["UploadId"]
    part = s3.upload_part(Bucket="bkt", Key="k", UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
    body = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part}</ETag></Part>"
            "</CompleteMultipartUpload>").encode()
    sock = raw_request(firelake.port, f"POST /bkt/k?uploadId={upload_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      f"If-Match: {etag}\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n")
    s3.delete_object(Bucket="bkt", Key="k")
    sock.sendall(body)
    response = read_response(sock)
    assert response.startswith("HTTP/1.1 409") and "ConditionalRequestConflict" in response, response
    with pytest.raises(ClientError) as excinfo:
        s3.list_parts(Bucket="bkt", Key="k", UploadId=upload_id)
    assert error(excinfo)[:2] == (404, "NoSuchUpload")


def test_aws_cli_put_object_if_none_match(firelake, aws_env, tmp_path):
    body = tmp_path / "state.json"
    body.write_text('{"serial": 1}')
    subprocess.run([AWS, "s3api", "create-bucket", "--bucket", "tfstate"], env=aws_env, check=True, capture_output=True)
    put = [AWS, "s3api", "put-object", "--bucket", "tfstate", "--key", "env/terraform.tflock", "--body", str(body), "--if-none-match", "*"]
    subprocess.run(put, env=aws_env, check=True, capture_output=True)
    again = subprocess.run(put, env=aws_env, capture_output=True, text=True)
    assert again.returncode != 0 and "PreconditionFailed" in again.stderr, again.stderr
