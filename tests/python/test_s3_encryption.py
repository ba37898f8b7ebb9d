"""Bucket default encryption through boto3 against a real firelake: Put/Get/DeleteBucketEncryption
validated, stored and answered as AWS does, and the x-amz-server-side-encryption headers objects
are written and read with. Nothing is encrypted; these are the answers, not the cipher."""
import pytest
from botocore.exceptions import ClientError


def refused(call, **kwargs):
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    err = excinfo.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]}
KMS = {
    "Rules": [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:000000000000:key/k1"},
            "BucketKeyEnabled": True,
        }
    ]
}


def encryption(s3, bucket):
    return s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]


def test_a_new_bucket_is_sse_s3_and_delete_returns_to_it(s3):
    s3.create_bucket(Bucket="bkt")
    assert encryption(s3, "bkt") == SSE_S3
    s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration=KMS)
    assert encryption(s3, "bkt") == KMS
    dsse = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}, "BucketKeyEnabled": False}]}
    s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration=dsse)
    assert encryption(s3, "bkt") == dsse
    assert s3.delete_bucket_encryption(Bucket="bkt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert encryption(s3, "bkt") == SSE_S3


def test_bad_configurations_are_refused_and_change_nothing(s3):
    s3.create_bucket(Bucket="bkt")
    s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration=KMS)
    bad = [
        ({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "DES"}}]}, (400, "MalformedXML")),
        (
            {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "k"}}]},
            (400, "InvalidArgument"),
        ),
        ({"Rules": [{"BucketKeyEnabled": True}]}, (400, "MalformedXML")),
        ({"Rules": []}, (400, "MalformedXML")),
    ]
    for config, expected in bad:
        assert refused(s3.put_bucket_encryption, Bucket="bkt", ServerSideEncryptionConfiguration=config) == expected, config
    assert encryption(s3, "bkt") == KMS
    assert refused(s3.get_bucket_encryption, Bucket="nobucket") == (404, "NoSuchBucket")
    assert refused(s3.put_bucket_encryption, Bucket="nobucket", ServerSideEncryptionConfiguration=SSE_S3) == (404, "NoSuchBucket")
    assert refused(s3.delete_bucket_encryption, Bucket="nobucket") == (404, "NoSuchBucket")


def sse(response):
    return (response.get("ServerSideEncryption"), response.get("SSEKMSKeyId"), response.get("BucketKeyEnabled"))


def test_objects_follow_the_bucket_default_at_write_time(s3):
    s3.create_bucket(Bucket="bkt")
    assert sse(s3.put_object(Bucket="bkt", Key="before", Body=b"x")) == ("AES256", None, None)
    s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration=KMS)
    kms = ("aws:kms", "arn:aws:kms:us-east-1:000000000000:key/k1", True)
    assert sse(s3.put_object(Bucket="bkt", Key="after", Body=b"x")) == kms
    assert sse(s3.head_object(Bucket="bkt", Key="after")) == kms
    assert sse(s3.get_object(Bucket="bkt", Key="after")) == kms
    # An object keeps the encryption it was written with.
    assert sse(s3.head_object(Bucket="bkt", Key="before")) == ("AES256", None, None)
    # The request's own header wins over the default; a copy takes the destination's.
    assert sse(s3.put_object(Bucket="bkt", Key="own", Body=b"x", ServerSideEncryption="AES256")) == ("AES256", None, None)
    assert sse(s3.head_object(Bucket="bkt", Key="own")) == ("AES256", None, None)
    copied = s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "before"})
    assert sse(copied) == kms
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")
    assert sse(upload) == kms
    part = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket="bkt", Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )
    assert sse(done) == kms
    assert sse(s3.head_object(Bucket="bkt", Key="mp")) == kms
    s3.delete_bucket_encryption(Bucket="bkt")
    assert sse(s3.put_object(Bucket="bkt", Key="reset", Body=b"x")) == ("AES256", None, None)


def test_bad_object_encryption_headers_are_refused(s3):
    s3.create_bucket(Bucket="bkt")
    assert refused(s3.put_object, Bucket="bkt", Key="k", Body=b"x", ServerSideEncryption="DES") == (400, "InvalidArgument")
    assert refused(s3.put_object, Bucket="bkt", Key="k", Body=b"x", ServerSideEncryption="AES256", SSEKMSKeyId="k") == (
        400,
        "InvalidArgument",
    )
    assert refused(s3.head_object, Bucket="bkt", Key="k") == (404, "404")
