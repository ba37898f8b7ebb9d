"""S3 lifecycle with boto3 and the AWS CLI: Put/Get/DeleteBucketLifecycleConfiguration
and their errors, the round trip Terraform relies on, `x-amz-expiration` and the abort
date of uploads, and the background sweep that carries the rules out, driven by
`--lifecycle-day-seconds`. The expected answers follow ../shared/spec/s3.md §7b."""
import datetime
import json
import subprocess
import sys
import time
import os
import pathlib

import botocore.exceptions
import pytest

DAY = datetime.timedelta(days=1)


def error_of(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def rule(**fields):
    return {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, **fields}


def put_rules(s3, bucket, *rules, **kwargs):
    return s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)}, **kwargs)


def wait_until(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {seconds} s: {what}")


def keys(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def versions(s3, bucket, key):
    page = s3.list_object_versions(Bucket=bucket, Prefix=key)
    found = [("v", v["VersionId"]) for v in page.get("Versions", []) if v["Key"] == key]
    found += [("m", m["VersionId"]) for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    return sorted(found)


def test_configuration_reads_back_as_it_was_sent(s3, firelake, start_firelake):
    s3.create_bucket(Bucket="lcb")
    err = error_of(s3.get_bucket_lifecycle_configuration, Bucket="lcb")
    assert err["Error"]["Code"] == "NoSuchLifecycleConfiguration"
    assert err["Error"]["Message"] == "The lifecycle configuration does not exist"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 404
    rules = [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30},
         "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}, {"Days": 10, "StorageClass": "DEEP_ARCHIVE"}]},
        {"ID": "tagged", "Status": "Disabled",
         "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}],
                            "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
         "Expiration": {"Date": datetime.datetime(2031, 1, 1, tzinfo=datetime.timezone.utc)}},
        {"ID": "old-versions", "Status": "Enabled", "Filter": {},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 3},
         "NoncurrentVersionTransitions": [{"NoncurrentDays": 1, "StorageClass": "STANDARD_IA"}],
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "markers", "Status": "Enabled", "Prefix": "", "Expiration": {"ExpiredObjectDeleteMarker": True}},
        # What Terraform sends for a rule without actions of its own.
        {"ID": "tf", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
         "Expiration": {"ExpiredObjectDeleteMarker": False}},
    ]
    put = put_rules(s3, "lcb", *rules, TransitionDefaultMinimumObjectSize="varies_by_storage_class")
    assert put["TransitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    got = s3.get_bucket_lifecycle_configuration(Bucket="lcb")
    assert got["Rules"] == rules
    assert got["TransitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    # A rule sent without an ID gets one; the default minimum size is S3's.
    put = put_rules(s3, "lcb", {"Status": "Enabled", "Filter": {"Prefix": "x"}, "Expiration": {"Days": 1}})
    assert put["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    (only,) = s3.get_bucket_lifecycle_configuration(Bucket="lcb")["Rules"]
    assert only["ID"] and only["Filter"] == {"Prefix": "x"}
    # It persists across a restart.
    firelake.stop()
    s3 = start_firelake(data_dir=firelake.data_dir).client("s3")
    assert s3.get_bucket_lifecycle_configuration(Bucket="lcb")["Rules"] == [only]
    assert s3.delete_bucket_lifecycle(Bucket="lcb")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket="lcb")["Error"]["Code"] == "NoSuchLifecycleConfiguration"
    # DELETE answers 204 whether or not there was one.
    assert s3.delete_bucket_lifecycle(Bucket="lcb")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket="none")["Error"]["Code"] == "NoSuchBucket"
    assert error_of(s3.delete_bucket_lifecycle, Bucket="none")["Error"]["Code"] == "NoSuchBucket"


@pytest.mark.parametrize("rules, code, message", [
    ([rule(Expiration={"Days": 1}), rule(Expiration={"Days": 2})], "InvalidArgument",
     "Rule ID must be unique. Found same ID for more than one rule"),
    ([rule(ID="x" * 256, Expiration={"Days": 1})], "InvalidArgument", None),
    ([rule(Status="enabled", Expiration={"Days": 1})], "MalformedXML", None),
    ([rule(Status="", Expiration={"Days": 1})], "MalformedXML", None),
    ([rule(Expiration={"Date": datetime.datetime(2030, 1, 1, 10, tzinfo=datetime.timezone.utc)})], "InvalidArgument",
     "'Date' must be at midnight GMT"),
    ([rule(Expiration={"Days": 0})], "InvalidArgument", None),
    ([rule(Expiration={"Days": -3})], "InvalidArgument", None),
    ([{"ID": "r", "Status": "Enabled", "Expiration": {"Days": 1}}], "MalformedXML",
     "The XML you provided was not well-formed or did not validate against our published schema"),
    ([rule(Expiration={"Days": 1, "Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)})], "MalformedXML", None),
    ([rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})], "MalformedXML", None),
    ([rule()], "InvalidRequest", None),
    ([rule(Filter={"Tag": {"Key": "k", "Value": "v"}}, Expiration={"ExpiredObjectDeleteMarker": True})], "InvalidRequest", None),
    ([rule(Filter={"Tag": {"Key": "k", "Value": "v"}}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1})],
     "InvalidRequest", None),
    ([{"ID": "r", "Status": "Enabled", "Prefix": "",
       "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}}], "InvalidRequest", None),
    ([rule(NoncurrentVersionExpiration={"NoncurrentDays": 0})], "InvalidArgument", None),
    ([rule(Filter={"And": {"ObjectSizeGreaterThan": 100, "ObjectSizeLessThan": 10}}, Expiration={"Days": 1})],
     "InvalidArgument", None),
    ([rule(Transitions=[{"Days": 1, "StorageClass": "SOMEWHERE"}])], "MalformedXML", None),
    ([rule(Expiration={"Days": 1})] * 1001, "MalformedXML", None),
])
def test_invalid_configurations_are_refused(s3, rules, code, message):
    s3.create_bucket(Bucket="bad")
    if len(rules) > 1 and rules[0] is rules[1]:
        rules = [dict(r, ID=f"r{i}") for i, r in enumerate(rules)]
    err = error_of(put_rules, s3, "bad", *rules)
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Code"] == code, err["Error"]
    if message:
        assert err["Error"]["Message"] == message
    # Nothing was stored.
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket="bad")["Error"]["Code"] == "NoSuchLifecycleConfiguration"


def next_midnight_after(moment, days):
    """S3's due date: `days` days after `moment`, rounded up to the next 00:00 UTC."""
    later = moment + days * DAY
    midnight = datetime.datetime(later.year, later.month, later.day, tzinfo=datetime.timezone.utc)
    return midnight if midnight == later else midnight + DAY


def expiration_of(headers):
    return headers.get("x-amz-expiration")


def test_responses_say_when_a_rule_expires_the_object(s3):
    s3.create_bucket(Bucket="hdr")
    put_rules(
        s3, "hdr",
        rule(ID="logs rule", Filter={"Prefix": "logs/"}, Expiration={"Days": 3}),
        rule(ID="soon", Filter={"And": {"Prefix": "logs/", "Tags": [{"Key": "tmp", "Value": "yes"}]}}, Expiration={"Days": 1}),
        rule(ID="dated", Filter={"Prefix": "dated/"}, Expiration={"Date": datetime.datetime(2031, 3, 1, tzinfo=datetime.timezone.utc)}),
        rule(ID="off", Status="Disabled", Filter={"Prefix": "off/"}, Expiration={"Days": 1}),
        rule(ID="uploads", Filter={"Prefix": "big/"}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2}),
    )
    put = s3.put_object(Bucket="hdr", Key="logs/a", Body=b"x")
    modified = s3.head_object(Bucket="hdr", Key="logs/a")["LastModified"]
    expected = next_midnight_after(modified, 3).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert put["Expiration"] == f'expiry-date="{expected}", rule-id="logs%20rule"'
    assert s3.head_object(Bucket="hdr", Key="logs/a")["Expiration"] == put["Expiration"]
    assert s3.get_object(Bucket="hdr", Key="logs/a")["Expiration"] == put["Expiration"]
    # Of two rules that apply, the earlier expiry; a tag that differs does not apply.
    s3.put_object(Bucket="hdr", Key="logs/t", Body=b"x", Tagging="tmp=yes")
    modified = s3.head_object(Bucket="hdr", Key="logs/t")["LastModified"]
    soon = next_midnight_after(modified, 1).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert s3.head_object(Bucket="hdr", Key="logs/t")["Expiration"] == f'expiry-date="{soon}", rule-id="soon"'
    s3.put_object(Bucket="hdr", Key="logs/u", Body=b"x", Tagging="tmp=no")
    assert "rule-id=\"logs%20rule\"" in s3.head_object(Bucket="hdr", Key="logs/u")["Expiration"]
    copied = s3.copy_object(Bucket="hdr", Key="dated/c", CopySource={"Bucket": "hdr", "Key": "logs/a"})
    assert copied["Expiration"] == 'expiry-date="Sat, 01 Mar 2031 00:00:00 GMT", rule-id="dated"'
    for key in ["other", "off/x"]:
        response = s3.put_object(Bucket="hdr", Key=key, Body=b"x")
        assert "Expiration" not in response
        assert "Expiration" not in s3.head_object(Bucket="hdr", Key=key)
    upload = s3.create_multipart_upload(Bucket="hdr", Key="big/file")
    assert upload["AbortRuleId"] == "uploads"
    # The abort date counts from the initiation, which ListMultipartUploads reports.
    (listed,) = s3.list_multipart_uploads(Bucket="hdr")["Uploads"]
    assert upload["AbortDate"] == next_midnight_after(listed["Initiated"], 2)
    assert "AbortDate" not in s3.create_multipart_upload(Bucket="hdr", Key="small/file")
    part = s3.upload_part(Bucket="hdr", Key="logs/mp", UploadId=s3.create_multipart_upload(Bucket="hdr", Key="logs/mp")["UploadId"],
                          PartNumber=1, Body=b"p")
    uploads = {u["Key"]: u["UploadId"] for u in s3.list_multipart_uploads(Bucket="hdr")["Uploads"]}
    done = s3.complete_multipart_upload(Bucket="hdr", Key="logs/mp", UploadId=uploads["logs/mp"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert 'rule-id="logs%20rule"' in done["Expiration"]


@pytest.mark.firelake("--lifecycle-day-seconds", "2")
def test_the_sweep_expires_objects_when_their_day_comes(s3, firelake):
    s3.create_bucket(Bucket="sweep")
    put_rules(s3, "sweep",
              rule(ID="tmp", Filter={"Prefix": "tmp/"}, Expiration={"Days": 1}),
              rule(ID="big", Filter={"ObjectSizeGreaterThan": 100}, Expiration={"Days": 2}),
              rule(ID="off", Status="Disabled", Filter={"Prefix": "keep/"}, Expiration={"Days": 1}))
    put_at = time.monotonic()
    for key, size in [("tmp/a", 1), ("tmp/deep/b", 1), ("keep/c", 1), ("big", 200), ("small", 5)]:
        s3.put_object(Bucket="sweep", Key=key, Body=b"x" * size)
    # One "day" is 2 s and due dates round up to a day boundary: tmp/ goes 2 to 4 s after
    # its PUT, and not before.
    time.sleep(max(0.0, 1.5 - (time.monotonic() - put_at)))
    assert sorted(keys(s3, "sweep")) == ["big", "keep/c", "small", "tmp/a", "tmp/deep/b"]
    wait_until(lambda: not any(k.startswith("tmp/") for k in keys(s3, "sweep")), 8, "tmp/ expired")
    wait_until(lambda: "big" not in keys(s3, "sweep"), 8, "the large object expired")
    assert sorted(keys(s3, "sweep")) == ["keep/c", "small"]
    # Gone from the data directory too (its folders with it).
    bucket_dir = pathlib.Path(firelake.data_dir) / "sweep"
    assert sorted(p.name for p in bucket_dir.iterdir()) == ["keep", "small"]


@pytest.mark.firelake("--lifecycle-day-seconds", "1")
def test_the_sweep_on_versioned_buckets(s3):
    s3.create_bucket(Bucket="vsb")
    s3.put_bucket_versioning(Bucket="vsb", VersioningConfiguration={"Status": "Enabled"})
    put_rules(s3, "vsb",
              rule(ID="current", Filter={"Prefix": "e/"}, Expiration={"Days": 1}),
              rule(ID="noncurrent", Filter={"Prefix": "n/"}, NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}),
              rule(ID="markers", Filter={"Prefix": "m/"}, Expiration={"ExpiredObjectDeleteMarker": True}))
    # Expiration of a current version adds a delete marker; the version stays noncurrent.
    expired = s3.put_object(Bucket="vsb", Key="e/x", Body=b"1")["VersionId"]
    wait_until(lambda: [k for k, _ in versions(s3, "vsb", "e/x")] == ["m", "v"], 6, "a delete marker over e/x")
    assert versions(s3, "vsb", "e/x")[1] == ("v", expired)
    assert "Contents" not in s3.list_objects_v2(Bucket="vsb", Prefix="e/")
    # Noncurrent versions go a day after their successor came, but the newest one is kept.
    ids = [s3.put_object(Bucket="vsb", Key="n/y", Body=str(i).encode())["VersionId"] for i in range(4)]
    wait_until(lambda: len(versions(s3, "vsb", "n/y")) == 2, 6, "old noncurrent versions expired")
    assert versions(s3, "vsb", "n/y") == sorted([("v", ids[3]), ("v", ids[2])])
    time.sleep(2.5)
    assert len(versions(s3, "vsb", "n/y")) == 2
    assert s3.get_object(Bucket="vsb", Key="n/y")["Body"].read() == b"3"
    # A delete marker that is a key's only version is removed; one over a version is not.
    s3.put_object(Bucket="vsb", Key="m/alone", Body=b"a")
    s3.put_object(Bucket="vsb", Key="m/kept", Body=b"k")
    s3.delete_object(Bucket="vsb", Key="m/kept")
    gone = s3.list_object_versions(Bucket="vsb", Prefix="m/alone")["Versions"][0]["VersionId"]
    s3.delete_object(Bucket="vsb", Key="m/alone")
    s3.delete_object(Bucket="vsb", Key="m/alone", VersionId=gone)
    wait_until(lambda: versions(s3, "vsb", "m/alone") == [], 6, "the lone delete marker removed")
    assert [k for k, _ in versions(s3, "vsb", "m/kept")] == ["m", "v"]


@pytest.mark.firelake("--lifecycle-day-seconds", "1")
def test_the_sweep_aborts_incomplete_uploads(s3):
    s3.create_bucket(Bucket="mpb")
    put_rules(s3, "mpb", rule(ID="abort", Filter={"Prefix": "up/"}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1}))
    doomed = s3.create_multipart_upload(Bucket="mpb", Key="up/a")["UploadId"]
    s3.upload_part(Bucket="mpb", Key="up/a", UploadId=doomed, PartNumber=1, Body=b"part")
    kept = s3.create_multipart_upload(Bucket="mpb", Key="other/b")["UploadId"]
    wait_until(lambda: [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpb").get("Uploads", [])] == [kept], 6,
               "the upload under up/ aborted")
    err = error_of(s3.upload_part, Bucket="mpb", Key="up/a", UploadId=doomed, PartNumber=2, Body=b"late")
    assert err["Error"]["Code"] == "NoSuchUpload"


def test_the_aws_cli_puts_and_gets_a_configuration(s3, aws_env, tmp_path):
    s3.create_bucket(Bucket="cli")
    config = {"Rules": [{"ID": "cli-rule", "Status": "Enabled", "Filter": {"Prefix": "a/"},
                         "Expiration": {"Days": 5}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps(config))
    aws = [str(pathlib.Path(sys.executable).parent / "aws"), "s3api"]
    subprocess.run([*aws, "put-bucket-lifecycle-configuration", "--bucket", "cli", "--lifecycle-configuration", f"file://{path}"],
                   env=aws_env, check=True, capture_output=True)
    out = subprocess.run([*aws, "get-bucket-lifecycle-configuration", "--bucket", "cli"], env=aws_env, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out)["Rules"] == config["Rules"]
    bad = subprocess.run([*aws, "put-bucket-lifecycle-configuration", "--bucket", "cli", "--lifecycle-configuration",
                          json.dumps({"Rules": [{"ID": "x", "Status": "On", "Filter": {}, "Expiration": {"Days": 1}}]})],
                         env=aws_env, capture_output=True, text=True)
    assert bad.returncode != 0 and "MalformedXML" in bad.stderr
