"""S3 versioning with boto3 and the AWS CLI: the bucket states, version ids on writes,
reads, deletes and copies by version, delete markers, the null version of a suspended
bucket, ListObjectVersions and its paging, conditional writes, and persistence across a
restart. The expected answers follow ../shared/spec/s3.md §7a."""
import json
import os
import pathlib
import sys
import subprocess

import botocore.exceptions
import pytest



def error_of(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def versioned(s3, name="vbkt", status="Enabled"):
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
    return name


def body(s3, bucket, key, **kwargs):
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def versions(s3, bucket, **kwargs):
    """(key, id, is latest, kind) of every entry of one ListObjectVersions page, in order."""
    page = s3.list_object_versions(Bucket=bucket, **kwargs)
    entries = [(v["Key"], v["VersionId"], v["IsLatest"], "v", v["LastModified"]) for v in page.get("Versions", [])]
    entries += [(m["Key"], m["VersionId"], m["IsLatest"], "m", m["LastModified"]) for m in page.get("DeleteMarkers", [])]
    # The XML interleaves them in one order (key, then newest first); boto3 splits them.
    entries.sort(key=lambda e: (e[0], -e[4].timestamp()))
    return [e[:4] for e in entries], page


def test_bucket_states_and_their_errors(s3):
    s3.create_bucket(Bucket="states")
    config = s3.get_bucket_versioning(Bucket="states")
    assert "Status" not in config and "MFADelete" not in config
    for bad in ["Disabled", "enabled", ""]:
        err = error_of(s3.put_bucket_versioning, Bucket="states", VersioningConfiguration={"Status": bad})
        assert err["Error"]["Code"] == "MalformedXML", bad
    # Suspended on a never-versioned bucket is accepted, as AWS does.
    s3.put_bucket_versioning(Bucket="states", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="states")["Status"] == "Suspended"
    s3.put_bucket_versioning(Bucket="states", VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"})
    config = s3.get_bucket_versioning(Bucket="states")
    assert (config["Status"], config["MFADelete"]) == ("Enabled", "Disabled")
    err = error_of(s3.put_bucket_versioning, Bucket="states", VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}, MFA="serial 123456")
    assert err["Error"]["Code"] == "NotImplemented" and "MFA delete" in err["Error"]["Message"]
    assert error_of(s3.get_bucket_versioning, Bucket="nope")["Error"]["Code"] == "NoSuchBucket"


def test_puts_make_versions_that_read_back_by_id(s3, firelake):
    bucket = versioned(s3)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert body(s3, bucket, "k") == b"v2"
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["VersionId"] == ids[2]
    for i, version in enumerate(ids):
        got = s3.get_object(Bucket=bucket, Key="k", VersionId=version)
        assert (got["Body"].read(), got["VersionId"]) == (f"v{i}".encode(), version)
    # The current version is the plain file; the others are firelake's own.
    with open(os.path.join(firelake.data_dir, bucket, "k"), "rb") as f:
        assert f.read() == b"v2"
    listed, _ = versions(s3, bucket)
    assert listed == [("k", ids[2], True, "v"), ("k", ids[1], False, "v"), ("k", ids[0], False, "v")]
    # A plain listing shows only the current version.
    assert [(o["Key"], o["Size"]) for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [("k", 2)]


def test_version_id_errors(s3):
    bucket = versioned(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    unknown = "0" * 32
    err = error_of(s3.get_object, Bucket=bucket, Key="k", VersionId=unknown)
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("NoSuchVersion", 404)
    assert err["Error"]["VersionId"] == unknown and err["Error"]["Key"] == "k"
    err = error_of(s3.get_object, Bucket=bucket, Key="k", VersionId="not-a-version")
    assert (err["Error"]["Code"], err["Error"]["ArgumentName"]) == ("InvalidArgument", "versionId")
    assert err["Error"]["Message"] == "Invalid version id specified"
    # Unversioned buckets: only the null version exists, and another id deletes nothing.
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="k", Body=b"kept")
    assert "VersionId" not in s3.put_object(Bucket="plain", Key="k", Body=b"kept")
    assert "VersionId" not in s3.head_object(Bucket="plain", Key="k")
    for call in [s3.get_object, s3.delete_object, s3.head_object]:
        err = error_of(call, Bucket="plain", Key="k", VersionId=unknown)
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert body(s3, "plain", "k") == b"kept"
    assert body(s3, "plain", "k", VersionId="null") == b"kept"


def test_delete_markers(s3):
    bucket = versioned(s3)
    first = s3.put_object(Bucket=bucket, Key="a/b", Body=b"one")["VersionId"]
    deleted = s3.delete_object(Bucket=bucket, Key="a/b")
    assert deleted["DeleteMarker"] is True and len(deleted["VersionId"]) == 32
    marker = deleted["VersionId"]
    err = error_of(s3.get_object, Bucket=bucket, Key="a/b")
    assert err["Error"]["Code"] == "NoSuchKey"
    headers = err["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["x-amz-delete-marker"], headers["x-amz-version-id"]) == ("true", marker)
    # Naming the marker by id: 405 with its headers.
    err = error_of(s3.get_object, Bucket=bucket, Key="a/b", VersionId=marker)
    assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (405, "MethodNotAllowed")
    assert err["ResponseMetadata"]["HTTPHeaders"]["allow"] == "DELETE"
    err = error_of(s3.head_object, Bucket=bucket, Key="a/b", VersionId=marker)
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 405
    # The old version is still there, and listings agree on what is current.
    assert body(s3, bucket, "a/b", VersionId=first) == b"one"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    second = s3.delete_object(Bucket=bucket, Key="a/b")["VersionId"]
    listed, _ = versions(s3, bucket)
    assert listed == [("a/b", second, True, "m"), ("a/b", marker, False, "m"), ("a/b", first, False, "v")]
    # Deleting the markers by id makes the old version current again.
    for m in [second, marker]:
        out = s3.delete_object(Bucket=bucket, Key="a/b", VersionId=m)
        assert (out["VersionId"], out["DeleteMarker"]) == (m, True)
    assert body(s3, bucket, "a/b") == b"one"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b"]


def test_deleting_versions_promotes_the_next_newest_and_empties_the_bucket(s3):
    bucket = versioned(s3)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    out = s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[2])
    assert out["VersionId"] == ids[2] and "DeleteMarker" not in out
    assert body(s3, bucket, "k") == b"v1"
    # An id already gone still answers 204, echoing it.
    assert s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[2])["VersionId"] == ids[2]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[0])
    assert [v[1] for v in versions(s3, bucket)[0]] == [ids[1]]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    # Versions and markers keep the bucket from being deleted, though it lists empty.
    err = error_of(s3.delete_bucket, Bucket=bucket)
    assert err["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": ids[1]}, {"Key": "k", "VersionId": marker}]})
    assert versions(s3, bucket)[0] == []
    s3.delete_bucket(Bucket=bucket)


def test_suspended_bucket_replaces_the_null_version(s3):
    s3.create_bucket(Bucket="early")
    s3.put_object(Bucket="early", Key="k", Body=b"before versioning")
    s3.put_bucket_versioning(Bucket="early", VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket="early", Key="k", Body=b"enabled")["VersionId"]
    # The object from before versioning is the null version.
    assert body(s3, "early", "k", VersionId="null") == b"before versioning"
    s3.put_bucket_versioning(Bucket="early", VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket="early", Key="k", Body=b"suspended 1")
    assert "VersionId" not in put
    assert s3.head_object(Bucket="early", Key="k")["VersionId"] == "null"
    s3.put_object(Bucket="early", Key="k", Body=b"suspended 2")
    listed, _ = versions(s3, "early")
    assert listed == [("k", "null", True, "v"), ("k", kept, False, "v")]
    assert body(s3, "early", "k", VersionId="null") == b"suspended 2"
    # A delete replaces the null version with a null marker and keeps the others.
    out = s3.delete_object(Bucket="early", Key="k")
    assert (out["DeleteMarker"], out["VersionId"]) == (True, "null")
    listed, _ = versions(s3, "early")
    assert listed == [("k", "null", True, "m"), ("k", kept, False, "v")]


def test_copy_from_a_version(s3):
    bucket = versioned(s3)
    old = s3.put_object(Bucket=bucket, Key="src", Body=b"old bytes")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new bytes")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and len(copied["VersionId"]) == 32
    assert body(s3, bucket, "dst") == b"old bytes"
    assert body(s3, bucket, "dst", VersionId=copied["VersionId"]) == b"old bytes"
    err = error_of(s3.copy_object, Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "0" * 32})
    assert err["Error"]["Code"] == "NoSuchVersion"
    marker = s3.delete_object(Bucket=bucket, Key="src")["VersionId"]
    assert error_of(s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src"})["Error"]["Code"] == "NoSuchKey"
    err = error_of(s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src", "VersionId": marker})
    assert err["Error"]["Code"] == "InvalidRequest"
    # A multipart upload's completion makes a version too, and a part copies from a version.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert part["CopySourceVersionId"] == old
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]}
    )
    assert len(done["VersionId"]) == 32
    assert body(s3, bucket, "mp", VersionId=done["VersionId"]) == b"old bytes"


def test_delete_objects_with_versions(s3):
    bucket = versioned(s3)
    a = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["VersionId"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a", "VersionId": a}, {"Key": "b"}, {"Key": "c", "VersionId": "bogus"}, {"Key": "gone", "VersionId": "1" * 32}]},
    )
    deleted = {d["Key"]: d for d in out["Deleted"]}
    assert deleted["a"]["VersionId"] == a and "DeleteMarker" not in deleted["a"]
    assert deleted["b"]["DeleteMarker"] is True and len(deleted["b"]["DeleteMarkerVersionId"]) == 32
    assert "gone" in deleted
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("c", "NoSuchVersion")]
    marker = deleted["b"]["DeleteMarkerVersionId"]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b", "VersionId": marker}]})
    assert out["Deleted"][0]["DeleteMarker"] is True and out["Deleted"][0]["DeleteMarkerVersionId"] == marker
    assert body(s3, bucket, "b") == b"b"


def test_list_object_versions_pages_and_prefixes(s3):
    bucket = versioned(s3)
    expected = []
    for key in ["a", "b/1", "b/2", "c"]:
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{i}".encode())["VersionId"] for i in range(2)]
        expected += [(key, ids[1], True, "v"), (key, ids[0], False, "v")]
    marker = s3.delete_object(Bucket=bucket, Key="c")["VersionId"]
    expected.insert(6, ("c", marker, True, "m"))
    expected[7] = ("c", expected[7][1], False, "v")
    assert versions(s3, bucket)[0] == expected
    # Page by page, one entry at a time, resuming after the last returned key and id.
    walked, kwargs = [], {}
    while True:
        entries, page = versions(s3, bucket, MaxKeys=2, **kwargs)
        walked += entries
        assert len(entries) <= 2
        if not page["IsTruncated"]:
            break
        assert (page["NextKeyMarker"], page["NextVersionIdMarker"]) == entries[-1][:2]
        kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert walked == expected
    entries, page = versions(s3, bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    assert [e[0] for e in entries] == ["a", "a", "c", "c", "c"]
    entries, _ = versions(s3, bucket, Prefix="b/", KeyMarker="b/1")
    assert [e[0] for e in entries] == ["b/2", "b/2"]
    err = error_of(s3.list_object_versions, Bucket=bucket, VersionIdMarker=marker)
    assert (err["Error"]["Code"], err["Error"]["ArgumentName"]) == ("InvalidArgument", "version-id-marker")
    # A key only deleted (its versions all behind a marker) is listed, not just files.
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="p", Body=b"p")
    assert versions(s3, "plain")[0] == [("p", "null", True, "v")]


def test_conditional_writes_on_a_versioned_bucket(s3):
    bucket = versioned(s3)
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"1", IfNoneMatch="*")
    err = error_of(s3.put_object, Bucket=bucket, Key="lock", Body=b"2", IfNoneMatch="*")
    assert err["Error"]["Code"] == "PreconditionFailed"
    second = s3.put_object(Bucket=bucket, Key="lock", Body=b"2", IfMatch=first["ETag"])
    assert second["VersionId"] != first["VersionId"]
    # Behind a delete marker the key has no current object: If-None-Match succeeds.
    s3.delete_object(Bucket=bucket, Key="lock")
    assert error_of(s3.put_object, Bucket=bucket, Key="lock", Body=b"3", IfMatch=second["ETag"])["Error"]["Code"] == "NoSuchKey"
    s3.put_object(Bucket=bucket, Key="lock", Body=b"3", IfNoneMatch="*")
    assert len(versions(s3, bucket)[0]) == 4


def test_tagging_and_attributes_by_version(s3):
    bucket = versioned(s3)
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old", Tagging="v=old")["VersionId"]
    new = s3.put_object(Bucket=bucket, Key="k", Body=b"newer")["VersionId"]
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=old)["TagSet"] == [{"Key": "v", "Value": "old"}]
    out = s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=old, Tagging={"TagSet": [{"Key": "v", "Value": "changed"}]})
    assert out["VersionId"] == old
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=old)["TagSet"] == [{"Key": "v", "Value": "changed"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    attrs = s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=old, ObjectAttributes=["ObjectSize", "ETag"])
    assert (attrs["ObjectSize"], attrs["VersionId"]) == (3, old)
    assert s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])["VersionId"] == new
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    err = error_of(s3.put_object_tagging, Bucket=bucket, Key="k", VersionId=marker, Tagging={"TagSet": []})
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 405


def test_versions_survive_a_restart(start_firelake, tmp_path):
    server = start_firelake()
    s3 = server.client("s3")
    bucket = versioned(s3)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(2)]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    before, _ = versions(s3, bucket)
    server.stop()
    server = start_firelake()
    s3 = server.client("s3")
    assert versions(s3, bucket)[0] == before == [("k", marker, True, "m"), ("k", ids[1], False, "v"), ("k", ids[0], False, "v")]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert body(s3, bucket, "k", VersionId=ids[0]) == b"v0"
    # Ids minted after the restart still sort after the earlier ones.
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"v2")["VersionId"] > ids[1]


def test_a_current_version_moved_aside_by_a_cut_short_put_comes_back(start_firelake, tmp_path):
    """The state a kill between the two renames of a versioned PUT leaves (the current
    file moved into the versions folder, the new one not yet published) is repaired at
    the next start: the moved version is current again."""
    data = tmp_path / "data"
    server = start_firelake(data_dir=data)
    s3 = server.client("s3")
    bucket = versioned(s3)
    ids = [s3.put_object(Bucket=bucket, Key="dir/k", Body=f"v{i}".encode())["VersionId"] for i in range(2)]
    server.stop()
    folders = list((data / ".firelake" / "versions" / bucket).iterdir())
    assert len(folders) == 1
    newest = max(p for p in folders[0].iterdir() if p.name != "key")
    plain = data / bucket / "dir" / "k"
    # What the PUT's first rename does: the current file becomes the newest entry.
    os.rename(plain, folders[0] / f"{int(newest.name.split('.')[0]) + 1:020}.{ids[1]}")
    assert not plain.exists()
    server = start_firelake(data_dir=data)
    s3 = server.client("s3")
    assert plain.read_bytes() == b"v1"
    listed, _ = versions(s3, bucket)
    assert listed == [("dir/k", ids[1], True, "v"), ("dir/k", ids[0], False, "v")]


def test_the_aws_cli_lists_versions(firelake, s3):
    bucket = versioned(s3, "cli-versions")
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"] for _ in range(2)]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    aws = [str(pathlib.Path(sys.executable).with_name("aws")), "--endpoint-url", firelake.endpoint, "s3api"]
    out = subprocess.run(aws + ["list-object-versions", "--bucket", bucket], env=env, check=True, capture_output=True, text=True)
    assert [v["VersionId"] for v in json.loads(out.stdout)["Versions"]] == ids[::-1]
    out = subprocess.run(aws + ["get-bucket-versioning", "--bucket", bucket], env=env, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["Status"] == "Enabled"
