"""ACLs, Object Ownership, bucket policies and Block Public Access through boto3 against a
real firelake: stored with the bucket, answered (and refused) as AWS answers them;
enforcement of grants and policies is not emulated. s3cmd's ACLs are in test_s3_tools.py."""
import json

import pytest
from botocore.exceptions import ClientError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def error(excinfo):
    err = excinfo.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def refused(call, **kwargs):
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return error(excinfo)


def acl_bucket(s3, name):
    """A bucket with ACLs enabled and public access allowed: what a user must set up on
    AWS today before public ACLs work."""
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerPreferred")
    s3.delete_public_access_block(Bucket=name)


def test_a_new_bucket_has_aws_defaults(s3):
    s3.create_bucket(Bucket="bkt")
    controls = s3.get_bucket_ownership_controls(Bucket="bkt")["OwnershipControls"]
    assert controls == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    block = s3.get_public_access_block(Bucket="bkt")["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    acl = s3.get_bucket_acl(Bucket="bkt")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"] == {"Type": "CanonicalUser", "ID": acl["Owner"]["ID"], "DisplayName": acl["Owner"]["DisplayName"]}
    assert s3.get_bucket_policy_status(Bucket="bkt")["PolicyStatus"] == {"IsPublic": False}
    assert refused(s3.get_bucket_policy, Bucket="bkt") == (404, "NoSuchBucketPolicy")
    for call in [s3.get_bucket_acl, s3.get_bucket_ownership_controls, s3.get_public_access_block, s3.get_bucket_policy_status]:
        assert refused(call, Bucket="no-such-bucket") == (404, "NoSuchBucket")


def test_bucket_owner_enforced_refuses_acls(s3):
    # Terraform sends x-amz-acl: private on create; that is no ACL to refuse.
    s3.create_bucket(Bucket="bkt", ACL="private")
    assert refused(s3.create_bucket, Bucket="other", ACL="public-read") == (400, "InvalidBucketAclWithObjectOwnership")
    assert refused(s3.put_object, Bucket="bkt", Key="k", Body=b"x", ACL="public-read") == (400, "AccessControlListNotSupported")
    assert refused(s3.put_object, Bucket="bkt", Key="k", Body=b"x", GrantRead=f'uri="{ALL_USERS}"') == (400, "AccessControlListNotSupported")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ACL="private")
    # Even `private` on PutBucketAcl (terraform-provider-aws #34079).
    assert refused(s3.put_bucket_acl, Bucket="bkt", ACL="private") == (400, "AccessControlListNotSupported")
    assert refused(s3.create_multipart_upload, Bucket="bkt", Key="m", ACL="authenticated-read") == (400, "AccessControlListNotSupported")
    assert refused(s3.copy_object, Bucket="bkt", Key="c", CopySource="bkt/k", ACL="public-read") == (400, "AccessControlListNotSupported")
    # Reading ACLs still works: the owner's FULL_CONTROL.
    assert [g["Permission"] for g in s3.get_object_acl(Bucket="bkt", Key="k")["Grants"]] == ["FULL_CONTROL"]
    assert "Contents" not in s3.list_objects_v2(Bucket="bkt", Prefix="c")


def test_ownership_controls_round_trip(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_bucket_ownership_controls(Bucket="bkt", OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert s3.get_bucket_ownership_controls(Bucket="bkt")["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}]
    s3.delete_bucket_ownership_controls(Bucket="bkt")
    s3.delete_bucket_ownership_controls(Bucket="bkt")
    assert refused(s3.get_bucket_ownership_controls, Bucket="bkt") == (404, "OwnershipControlsNotFoundError")
    assert refused(s3.put_bucket_ownership_controls, Bucket="bkt", OwnershipControls={"Rules": [{"ObjectOwnership": "Mine"}]}) == (400, "MalformedXML")
    s3.create_bucket(Bucket="writer", ObjectOwnership="ObjectWriter")
    assert s3.get_bucket_ownership_controls(Bucket="writer")["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}]


def test_block_public_acls_refuses_public_acls_on_an_acl_bucket(s3):
    s3.create_bucket(Bucket="bkt", ObjectOwnership="ObjectWriter")
    assert refused(s3.put_object, Bucket="bkt", Key="k", Body=b"x", ACL="public-read") == (403, "AccessDenied")
    assert refused(s3.put_bucket_acl, Bucket="bkt", ACL="public-read") == (403, "AccessDenied")
    assert refused(s3.create_bucket, Bucket="pub", ObjectOwnership="ObjectWriter", ACL="public-read") == (400, "InvalidBucketAclWithBlockPublicAccessError")
    # A non-public ACL is stored.
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", GrantReadACP='id="1234abcd"')
    grants = s3.get_object_acl(Bucket="bkt", Key="k")["Grants"]
    assert [(g["Grantee"].get("ID"), g["Permission"]) for g in grants] == [("1234abcd", "READ_ACP")]


def test_bucket_and_object_acls_round_trip(s3):
    acl_bucket(s3, "bkt")
    s3.put_bucket_acl(Bucket="bkt", ACL="public-read")
    grants = s3.get_bucket_acl(Bucket="bkt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants
    assert s3.get_bucket_policy_status(Bucket="bkt")["PolicyStatus"]["IsPublic"] is True
    # BucketOwnerEnforced cannot be set over a public ACL.
    assert refused(s3.put_bucket_ownership_controls, Bucket="bkt",
                   OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}) == (400, "InvalidBucketAclWithObjectOwnership")

    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ACL="public-read-write")
    perms = sorted(g["Permission"] for g in s3.get_object_acl(Bucket="bkt", Key="k")["Grants"])
    assert perms == ["FULL_CONTROL", "READ", "WRITE"]
    # An AccessControlPolicy body, with the Owner read back as Terraform does.
    owner = s3.get_bucket_acl(Bucket="bkt")["Owner"]
    policy = {"Owner": owner, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/s3/LogDelivery"}, "Permission": "WRITE"},
    ]}
    s3.put_object_acl(Bucket="bkt", Key="k", AccessControlPolicy=policy)
    got = s3.get_object_acl(Bucket="bkt", Key="k")
    assert got["Owner"] == owner
    assert [g["Permission"] for g in got["Grants"]] == ["FULL_CONTROL", "WRITE"]
    assert got["Grants"][1]["Grantee"]["URI"] == "http://acs.amazonaws.com/groups/s3/LogDelivery"
    # CopyObject never takes the source's ACL.
    s3.copy_object(Bucket="bkt", Key="copy", CopySource="bkt/k")
    assert [g["Permission"] for g in s3.get_object_acl(Bucket="bkt", Key="copy")["Grants"]] == ["FULL_CONTROL"]
    # A multipart upload's ACL lands on the completed object.
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp", ACL="authenticated-read")["UploadId"]
    part = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]})
    uris = [g["Grantee"].get("URI") for g in s3.get_object_acl(Bucket="bkt", Key="mp")["Grants"]]
    assert "http://acs.amazonaws.com/groups/global/AuthenticatedUsers" in uris


def test_acl_errors(s3):
    acl_bucket(s3, "bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x")
    assert refused(s3.put_object, Bucket="bkt", Key="k2", Body=b"x", ACL="private", GrantRead='id="a"') == (400, "InvalidRequest")
    assert refused(s3.put_object, Bucket="bkt", Key="k2", Body=b"x", GrantRead='emailAddress="a@example.com"') == (405, "MethodNotAllowed")
    assert refused(s3.put_object, Bucket="bkt", Key="k2", Body=b"x", GrantRead='uri="http://example.com/everyone"') == (400, "InvalidArgument")
    bad = {"Owner": {"ID": "x"}, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "x"}, "Permission": "EVERYTHING"}]}
    assert refused(s3.put_object_acl, Bucket="bkt", Key="k", AccessControlPolicy=bad) == (400, "MalformedACLError")
    assert refused(s3.get_object_acl, Bucket="bkt", Key="absent") == (404, "NoSuchKey")
    assert refused(s3.put_object_acl, Bucket="bkt", Key="absent", ACL="private") == (404, "NoSuchKey")
    assert refused(s3.get_object_acl, Bucket="bkt", Key="k", VersionId="v1") == (400, "InvalidArgument")


def test_bucket_policy(s3):
    s3.create_bucket(Bucket="bkt")
    account_only = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadForTheTeam", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
        "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::bkt/*"}]}, indent=2)
    s3.put_bucket_policy(Bucket="bkt", Policy=account_only)
    assert s3.get_bucket_policy(Bucket="bkt")["Policy"] == account_only
    assert s3.get_bucket_policy_status(Bucket="bkt")["PolicyStatus"]["IsPublic"] is False
    public = account_only.replace('{\n        "AWS": "arn:aws:iam::000000000000:root"\n      }', '"*"')
    assert '"Principal": "*"' in public
    # BlockPublicPolicy (on for every new bucket) refuses a public policy.
    assert refused(s3.put_bucket_policy, Bucket="bkt", Policy=public) == (403, "AccessDenied")
    s3.put_public_access_block(Bucket="bkt", PublicAccessBlockConfiguration={"BlockPublicPolicy": False})
    s3.put_bucket_policy(Bucket="bkt", Policy=public)
    assert s3.get_bucket_policy_status(Bucket="bkt")["PolicyStatus"]["IsPublic"] is True
    s3.delete_bucket_policy(Bucket="bkt")
    assert refused(s3.get_bucket_policy, Bucket="bkt") == (404, "NoSuchBucketPolicy")
    for text, message in [
        ("not json", "Policies must be valid JSON and the first byte must be '{'"),
        ("{not json", "This policy contains invalid Json"),
        ('{"Version": "2012-10-17"}', "Missing required field Statement"),
        (public.replace("arn:aws:s3:::bkt/*", "arn:aws:s3:::elsewhere/*"), "Policy has invalid resource"),
    ]:
        with pytest.raises(ClientError) as excinfo:
            s3.put_bucket_policy(Bucket="bkt", Policy=text)
        assert error(excinfo) == (400, "MalformedPolicy")
        assert excinfo.value.response["Error"]["Message"] == message


def test_public_access_block_round_trip(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_public_access_block(Bucket="bkt", PublicAccessBlockConfiguration={"BlockPublicAcls": True, "RestrictPublicBuckets": True})
    block = s3.get_public_access_block(Bucket="bkt")["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False, "RestrictPublicBuckets": True}
    s3.delete_public_access_block(Bucket="bkt")
    assert refused(s3.get_public_access_block, Bucket="bkt") == (404, "NoSuchPublicAccessBlockConfiguration")


def test_settings_survive_a_restart(start_firelake, tmp_path):
    # They live in the bucket's settings file and the object's metadata.
    server = start_firelake(data_dir=tmp_path / "data")
    s3 = server.client("s3")
    acl_bucket(s3, "bkt")
    s3.put_bucket_acl(Bucket="bkt", ACL="public-read")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ACL="public-read")
    server.stop()
    s3 = start_firelake(data_dir=tmp_path / "data").client("s3")
    assert s3.get_bucket_ownership_controls(Bucket="bkt")["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]
    assert refused(s3.get_public_access_block, Bucket="bkt") == (404, "NoSuchPublicAccessBlockConfiguration")
    assert any(g["Grantee"].get("URI") == ALL_USERS for g in s3.get_bucket_acl(Bucket="bkt")["Grants"])
    assert any(g["Grantee"].get("URI") == ALL_USERS for g in s3.get_object_acl(Bucket="bkt", Key="k")["Grants"])
