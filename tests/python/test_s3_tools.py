"""Real S3 tools against a real firelake, every result read back with boto3: rclone
(Debian's, configured only by environment variables) and s3cmd (Debian's, a temporary
config file). `.ci/run` installs both."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from xml.etree import ElementTree

import pytest

from conftest import require

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
MIB = 1024 * 1024
# rclone uploads in parts above this, in parts of this size (the flags below).
PART = 5 * MIB
# A key with spaces, accents, a non-Latin script and a symbol, three folders deep.
ODD_KEY = "a/b/c/spa ce é ü 文字 €.txt"


def tree(root):
    """A local tree: nested folders, a file of three parts, an empty file, an odd name.
    Answers {key: bytes}."""
    files = {
        "top.txt": b"top\n",
        "empty": b"",
        "a/one.txt": b"one\n",
        "a/big.bin": os.urandom(2 * PART + 123_457),
        ODD_KEY: "tiếng việt\n".encode(),
    }
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def objects(s3, bucket, prefix=""):
    """{key: bytes} of every object under `prefix`, read with boto3."""
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {key.removeprefix(prefix): s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def tool_env(**extra):
    """The environment of a tool: the machine's without its AWS_* variables (an
    AWS_CA_BUNDLE makes rclone's SDK refuse a plain-HTTP endpoint), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}, **extra}


def rclone_on(server, tmp_path):
    """`run(*args, ok=True)`: runs rclone with the remote `fl:` = `server`, configured by
    environment variables only (the config file named does not exist)."""
    require(shutil.which("rclone"), "rclone (apt-get install rclone)")
    env = tool_env(
        RCLONE_CONFIG=str(tmp_path / "absent-rclone.conf"),
        RCLONE_CONFIG_FL_TYPE="s3",
        RCLONE_CONFIG_FL_PROVIDER="Other",
        RCLONE_CONFIG_FL_ENDPOINT=server.endpoint,
        RCLONE_CONFIG_FL_ACCESS_KEY_ID="test",
        RCLONE_CONFIG_FL_SECRET_ACCESS_KEY="test",
        RCLONE_CONFIG_FL_REGION="us-east-1",
        RCLONE_CONFIG_FL_FORCE_PATH_STYLE="true",
        RCLONE_CONFIG_FL_UPLOAD_CUTOFF="5M",  # rclone reads a bare number as KiB
        RCLONE_CONFIG_FL_CHUNK_SIZE="5M",
    )

    def run(*args, ok=True):
        result = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=120)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.fixture
def rclone(firelake, tmp_path):
    return rclone_on(firelake, tmp_path)


def test_rclone_copy_then_check(rclone, s3, tmp_path):
    src = tmp_path / "src"
    files = tree(src)
    s3.create_bucket(Bucket="bkt")
    rclone("copy", str(src), "fl:bkt")
    assert objects(s3, "bkt") == files
    # The big file went up in three parts, the rest in one PUT each.
    assert s3.head_object(Bucket="bkt", Key="a/big.bin")["ETag"].endswith('-3"')
    assert s3.head_object(Bucket="bkt", Key="top.txt")["ETag"] == f'"{hashlib.md5(files["top.txt"]).hexdigest()}"'
    clean = rclone("check", str(src), "fl:bkt")
    assert "0 differences found" in clean.stderr and "5 matching files" in clean.stderr, clean.stderr
    # Same size, other bytes, written behind rclone's back: check must notice by hash.
    s3.put_object(Bucket="bkt", Key="top.txt", Body=b"TOP\n")
    changed = rclone("check", str(src), "fl:bkt", ok=False)
    assert changed.returncode != 0
    assert "1 differences found" in changed.stderr and "top.txt" in changed.stderr, changed.stderr
    s3.delete_object(Bucket="bkt", Key=ODD_KEY)
    missing = rclone("check", str(src), "fl:bkt", ok=False)
    assert "2 differences found" in missing.stderr and ODD_KEY in missing.stderr, missing.stderr


def test_rclone_sync_deletes_and_replaces(rclone, s3, tmp_path):
    src = tmp_path / "src"
    files = tree(src)
    s3.create_bucket(Bucket="bkt")
    rclone("sync", str(src), "fl:bkt")
    assert objects(s3, "bkt") == files
    s3.put_object(Bucket="bkt", Key="a/one.txt", Body=b"ONE\n")
    s3.put_object(Bucket="bkt", Key="remote-only", Body=b"r")
    (src / ODD_KEY).unlink()
    (src / "empty").unlink()
    (src / "new.txt").write_bytes(b"new")
    del files[ODD_KEY], files["empty"]
    files["new.txt"] = b"new"
    rclone("sync", str(src), "fl:bkt")
    # Local deletions removed the remote objects, the remote-only one went too, the
    # changed one holds the local bytes again.
    assert objects(s3, "bkt") == files


def test_rclone_server_side_copy(start_firelake, tmp_path):
    log = tmp_path / "firelake.log"
    with open(log, "w") as stderr:
        server = start_firelake(env={"RUST_LOG": "firelake::s3=debug"}, stderr=stderr)
    s3 = server.client("s3")
    src = tmp_path / "src"
    files = tree(src)
    s3.create_bucket(Bucket="source")
    s3.create_bucket(Bucket="target")
    run = rclone_on(server, tmp_path)
    run("copy", str(src), "fl:source")
    copied = run("copy", "fl:source", "fl:target", "-vv")
    assert copied.stderr.count("Copied (server-side copy)") == len(files), copied.stderr
    assert objects(s3, "target") == files
    # firelake saw one CopyObject per key into `target`, and no upload into it.
    requests = [line for line in log.read_text().splitlines() if " request endpoint=" in line]
    into_target = [re.search(r"endpoint=(\w+) \{ bucket: \"target\"(?:, key: \"(.*?)\")?", line) for line in requests]
    into_target = [(m[1], m[2]) for m in into_target if m]
    assert sorted(key for op, key in into_target if op == "CopyObject") == sorted(files)
    assert not [op for op, _ in into_target if op in ("PutObject", "CreateMultipartUpload", "UploadPart")], into_target


def test_rclone_lsjson_and_size(rclone, s3, tmp_path):
    src = tmp_path / "src"
    files = tree(src)
    s3.create_bucket(Bucket="bkt")
    rclone("copy", str(src), "fl:bkt")
    listed = json.loads(rclone("lsjson", "-R", "--files-only", "--hash", "fl:bkt").stdout)
    assert {e["Path"]: e["Size"] for e in listed} == {k: len(v) for k, v in files.items()}
    # Single-PUT objects carry their MD5 as ETag; rclone reads the multipart one's from
    # the metadata it stored at upload.
    assert {e["Path"]: e["Hashes"]["md5"] for e in listed} == {k: hashlib.md5(v).hexdigest() for k, v in files.items()}
    dirs = json.loads(rclone("lsjson", "--dirs-only", "fl:bkt/a").stdout)
    assert [d["Path"] for d in dirs] == ["b"]
    size = json.loads(rclone("size", "--json", "fl:bkt").stdout)
    boto_listed = s3.list_objects_v2(Bucket="bkt")["Contents"]
    assert size["count"] == len(boto_listed) == len(files)
    assert size["bytes"] == sum(o["Size"] for o in boto_listed) == sum(map(len, files.values()))


# s3cmd


@pytest.fixture
def s3cmd(firelake, tmp_path):
    """`s3cmd(*args, ok=True)`: runs s3cmd against this firelake, path style, SigV4."""
    require(shutil.which("s3cmd"), "s3cmd (apt-get install s3cmd)")
    host = firelake.endpoint.removeprefix("http://")
    config = tmp_path / "s3cfg"
    config.write_text(f"[default]\naccess_key = test\nsecret_key = test\nhost_base = {host}\nhost_bucket = {host}\n"
                      "use_https = False\nsignature_v2 = False\n")

    def run(*args, ok=True):
        result = subprocess.run(["s3cmd", "-c", str(config), *args], env=tool_env(), capture_output=True, text=True, timeout=120)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_s3cmd_mb_put_get_info(s3cmd, s3, tmp_path):
    # s3cmd signs `mb` for the region "US" (its default bucket_location) and, as
    # against AWS, retries in the region the AuthorizationHeaderMalformed answer names.
    s3cmd("mb", "s3://bkt")
    assert s3.get_bucket_location(Bucket="bkt")["LocationConstraint"] is None
    data = os.urandom(100_000)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    s3cmd("put", str(source), f"s3://bkt/{ODD_KEY}")
    assert s3.get_object(Bucket="bkt", Key=ODD_KEY)["Body"].read() == data
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://bkt/{ODD_KEY}", str(back))
    assert back.read_bytes() == data
    info = s3cmd("info", f"s3://bkt/{ODD_KEY}").stdout
    head = s3.head_object(Bucket="bkt", Key=ODD_KEY)
    assert re.search(r"File size:\s+(\d+)", info)[1] == str(head["ContentLength"]) == str(len(data)), info
    assert re.search(r"MD5 sum:\s+(\w+)", info)[1] == head["ETag"].strip('"') == hashlib.md5(data).hexdigest(), info
    assert re.search(r"SSE:\s+(\S+)", info)[1] == head["ServerSideEncryption"] == "AES256", info
    bucket_info = s3cmd("info", "s3://bkt").stdout
    assert re.search(r"Location:\s+(\S+)", bucket_info)[1] == "us-east-1", bucket_info


def test_a_signature_for_a_location_constraint_names_the_region(firelake, s3):
    # What s3cmd's `mb` relies on: AWS refuses a scope region such as `US` and says which to use.
    request = urllib.request.Request(firelake.endpoint + "/bkt", method="PUT", headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/US/s3/aws4_request, SignedHeaders=host, Signature=00"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    body = ElementTree.fromstring(refused.value.read())
    assert refused.value.code == 400
    assert (body.findtext("Code"), body.findtext("Region")) == ("AuthorizationHeaderMalformed", "us-east-1")
    assert body.findtext("Message") == "The authorization header is malformed; the region 'US' is wrong; expecting 'us-east-1'"
    assert s3.list_buckets()["Buckets"] == []


def test_s3cmd_sync_delete_removed(s3cmd, s3, tmp_path):
    src = tmp_path / "src"
    files = tree(src)
    s3.create_bucket(Bucket="bkt")
    s3cmd("sync", f"{src}/", "s3://bkt/tree/")
    assert objects(s3, "bkt", "tree/") == files
    (src / "a" / "one.txt").unlink()
    (src / ODD_KEY).write_bytes(b"changed")
    del files["a/one.txt"]
    files[ODD_KEY] = b"changed"
    # Without --delete-removed a sync only adds and replaces.
    s3cmd("sync", f"{src}/", "s3://bkt/tree/")
    assert objects(s3, "bkt", "tree/") == {**files, "a/one.txt": b"one\n"}
    s3cmd("sync", "--delete-removed", f"{src}/", "s3://bkt/tree/")
    assert objects(s3, "bkt", "tree/") == files


def grantees(acl):
    return {(g["Grantee"].get("URI") or g["Grantee"]["Type"], g["Permission"]) for g in acl["Grants"]}


def test_s3cmd_setacl_and_info(s3cmd, s3, tmp_path):
    # As on AWS today: a new bucket has ACLs disabled, so ownership controls that allow
    # them and no public access block come first.
    s3.create_bucket(Bucket="bkt")
    s3.put_bucket_ownership_controls(Bucket="bkt", OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    s3.delete_public_access_block(Bucket="bkt")
    source = tmp_path / "file.txt"
    source.write_text("shared")
    s3cmd("put", str(source), "s3://bkt/file.txt")
    s3cmd("setacl", "--acl-public", "s3://bkt/file.txt")
    assert "*anon*: READ" in s3cmd("info", "s3://bkt/file.txt").stdout
    assert grantees(s3.get_object_acl(Bucket="bkt", Key="file.txt")) == {("CanonicalUser", "FULL_CONTROL"), (ALL_USERS, "READ")}
    s3cmd("setacl", "--acl-private", "s3://bkt/file.txt")
    assert "*anon*" not in s3cmd("info", "s3://bkt/file.txt").stdout
    assert grantees(s3.get_object_acl(Bucket="bkt", Key="file.txt")) == {("CanonicalUser", "FULL_CONTROL")}
    # The bucket's own ACL.
    s3cmd("setacl", "--acl-public", "s3://bkt")
    assert grantees(s3.get_bucket_acl(Bucket="bkt")) == {("CanonicalUser", "FULL_CONTROL"), (ALL_USERS, "READ")}
    s3cmd("setacl", "--acl-private", "s3://bkt")
    assert grantees(s3.get_bucket_acl(Bucket="bkt")) == {("CanonicalUser", "FULL_CONTROL")}
    # On a bucket with ACLs disabled (the default), s3cmd gets AWS's refusal, and nothing changes.
    s3.create_bucket(Bucket="enforced")
    s3.put_object(Bucket="enforced", Key="f", Body=b"x")
    refused = s3cmd("setacl", "--acl-public", "s3://enforced/f", ok=False)
    assert refused.returncode != 0 and "AccessControlListNotSupported" in refused.stderr, refused.stderr
    assert grantees(s3.get_object_acl(Bucket="enforced", Key="f")) == {("CanonicalUser", "FULL_CONTROL")}
