"""Checksum types on multipart uploads through boto3 against a real firelake (spec s3.md §7e):
COMPOSITE and FULL_OBJECT with the algorithm rules at Create, the declared algorithm required of
every part, the per-part checksums Complete must name, the composite and full-object values
Complete, HEAD, GET ?partNumber and GetObjectAttributes answer, and a Complete repeated after
success. Every expected value is computed here from the bytes, with hashlib, zlib or the
CRC-64/NVME definition."""
import base64
import hashlib
import zlib

import pytest

from conftest import refused

MIB = 1024 * 1024


def b64(raw):
    return base64.b64encode(raw).decode()


def sha256(data):
    return hashlib.sha256(data).digest()


def crc32(data):
    return zlib.crc32(data).to_bytes(4, "big")


def _crc64nvme_table():
    poly = 0x9A6C9329AC4BC9B5  # reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC64_TABLE = _crc64nvme_table()


def crc64nvme(data):
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def test_the_crc64nvme_here_is_the_standard_one():
    assert crc64nvme(b"123456789").hex() == "ae8b14860a799888"


def parts_of(sizes):
    # Distinct bytes in every part: a part joined out of place changes every value.
    return [bytes((i * 7 + n) % 251 for i in range(size)) for n, size in enumerate(sizes)]


@pytest.fixture
def bare(firelake):
    """A client that sends a checksum only where the operation requires one."""
    return firelake.client("s3", request_checksum_calculation="when_required")


def test_create_checks_the_type_against_the_algorithm(s3):
    s3.create_bucket(Bucket="bkt")
    create = s3.create_multipart_upload
    assert refused(create, Bucket="bkt", Key="k", ChecksumType="FULL_OBJECT") == (
        400, "InvalidRequest", "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.")
    assert refused(create, Bucket="bkt", Key="k", ChecksumAlgorithm="CRC32", ChecksumType="PARTIAL") == (
        400, "InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    assert refused(create, Bucket="bkt", Key="k", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT") == (
        400, "InvalidRequest", "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm.")
    assert refused(create, Bucket="bkt", Key="k", ChecksumAlgorithm="CRC64NVME", ChecksumType="COMPOSITE") == (
        400, "InvalidRequest", "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.")
    defaults = {"CRC32": "COMPOSITE", "CRC32C": "COMPOSITE", "SHA1": "COMPOSITE", "SHA256": "COMPOSITE", "CRC64NVME": "FULL_OBJECT"}
    for algorithm, kind in defaults.items():
        made = create(Bucket="bkt", Key="k", ChecksumAlgorithm=algorithm)
        assert (made["ChecksumAlgorithm"], made["ChecksumType"]) == (algorithm, kind)
    made = create(Bucket="bkt", Key="k", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT")
    assert (made["ChecksumAlgorithm"], made["ChecksumType"]) == ("CRC32C", "FULL_OBJECT")
    listed = s3.list_multipart_uploads(Bucket="bkt")["Uploads"]
    assert sorted((u["ChecksumAlgorithm"], u["ChecksumType"]) for u in listed) == sorted(
        list(defaults.items()) + [("CRC32C", "FULL_OBJECT")])


def test_a_composite_sha256_upload_from_parts_to_reads(s3, bare):
    s3.create_bucket(Bucket="bkt")
    data = parts_of([5 * MIB, 5 * MIB, 1000])
    upload = s3.create_multipart_upload(Bucket="bkt", Key="obj", ChecksumAlgorithm="SHA256")["UploadId"]
    ids = dict(Bucket="bkt", Key="obj", UploadId=upload)
    # Every part carries the declared algorithm's checksum: boto3's default CRC32 does not do.
    assert refused(s3.upload_part, **ids, PartNumber=1, Body=data[0]) == (
        400, "InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: sha256, actual checksum Type: crc32")
    assert refused(bare.upload_part, **ids, PartNumber=1, Body=data[0]) == (
        400, "InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: sha256, actual checksum Type: null")
    etags = []
    for n, part in enumerate(data, start=1):
        sent = s3.upload_part(**ids, PartNumber=n, Body=part, ChecksumAlgorithm="SHA256")
        assert sent["ChecksumSHA256"] == b64(sha256(part))
        etags.append(sent["ETag"])
    listed = s3.list_parts(**ids)
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [b64(sha256(p)) for p in data]
    assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == ("SHA256", "COMPOSITE")

    def named(checksums):
        return {"Parts": [{"PartNumber": n, "ETag": e, **c} for n, (e, c) in enumerate(zip(etags, checksums), start=1)]}

    right = [{"ChecksumSHA256": b64(sha256(p))} for p in data]
    composite = b64(sha256(b"".join(sha256(p) for p in data))) + "-3"
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named([{}, {}, {}])) == (
        400, "InvalidRequest",
        "The upload was created using a sha256 checksum. The complete request must include the checksum for each part. "
        "It was missing for part 1 in the request.")
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named([right[0], right[0], right[2]]))[:2] == (400, "InvalidPart")
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named(right), ChecksumSHA256=b64(sha256(b"x")) + "-3")[:2] == (
        400, "BadDigest")
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named(right), ChecksumType="FULL_OBJECT") == (
        400, "InvalidRequest", "The upload was created using the COMPOSITE checksum mode. The complete request must use the same checksum mode.")
    done = s3.complete_multipart_upload(**ids, MultipartUpload=named(right), ChecksumSHA256=composite, ChecksumType="COMPOSITE")
    assert (done["ChecksumSHA256"], done["ChecksumType"]) == (composite, "COMPOSITE")

    head = s3.head_object(Bucket="bkt", Key="obj", ChecksumMode="ENABLED")
    assert (head["ChecksumSHA256"], head["ChecksumType"]) == (composite, "COMPOSITE")
    assert "ChecksumSHA256" not in s3.head_object(Bucket="bkt", Key="obj")
    # One part read back: its own checksum, which boto3 checks against the bytes it gets.
    second = s3.get_object(Bucket="bkt", Key="obj", PartNumber=2, ChecksumMode="ENABLED")
    assert second["Body"].read() == data[1]
    assert (second["ChecksumSHA256"], second["ChecksumType"], second["PartsCount"]) == (b64(sha256(data[1])), "COMPOSITE", 3)
    assert second["ContentRange"] == f"bytes {5 * MIB}-{10 * MIB - 1}/{10 * MIB + 1000}"
    assert refused(s3.get_object, Bucket="bkt", Key="obj", PartNumber=4)[:2] == (416, "InvalidPartNumber")

    attrs = s3.get_object_attributes(Bucket="bkt", Key="obj", ObjectAttributes=["Checksum", "ObjectParts"],
                                     MaxParts=1, PartNumberMarker=1)
    assert attrs["Checksum"] == {"ChecksumSHA256": composite[:-2], "ChecksumType": "COMPOSITE"}
    parts = attrs["ObjectParts"]
    assert (parts["TotalPartsCount"], parts["PartNumberMarker"], parts["NextPartNumberMarker"], parts["MaxParts"],
            parts["IsTruncated"]) == (3, 1, 2, 1, True)
    assert parts["Parts"] == [{"PartNumber": 2, "Size": 5 * MIB, "ChecksumSHA256": b64(sha256(data[1]))}]
    rest = s3.get_object_attributes(Bucket="bkt", Key="obj", ObjectAttributes=["ObjectParts"], PartNumberMarker=2)["ObjectParts"]
    assert ([p["PartNumber"] for p in rest["Parts"]], rest["IsTruncated"]) == ([3], False)

    # Completed again with the same parts: the same answer; with others: the upload is gone.
    again = s3.complete_multipart_upload(**ids, MultipartUpload=named(right))
    assert (again["ETag"], again["ChecksumSHA256"], again["ChecksumType"]) == (done["ETag"], composite, "COMPOSITE")
    fewer = {"Parts": named(right)["Parts"][:2]}
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=fewer)[:2] == (404, "NoSuchUpload")
    assert refused(s3.list_parts, **ids)[:2] == (404, "NoSuchUpload")
    assert refused(s3.abort_multipart_upload, **ids)[:2] == (404, "NoSuchUpload")
    assert s3.get_object(Bucket="bkt", Key="obj")["Body"].read() == b"".join(data)


def test_a_full_object_crc32_upload_computes_what_its_parts_leave_out(s3, bare):
    s3.create_bucket(Bucket="bkt")
    data = parts_of([5 * MIB, 5 * MIB, 333])
    whole = b"".join(data)
    upload = s3.create_multipart_upload(Bucket="bkt", Key="obj", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")["UploadId"]
    ids = dict(Bucket="bkt", Key="obj", UploadId=upload)
    # Parts may come without a checksum (firelake computes it) or with the declared one,
    # never with another.
    assert refused(s3.upload_part, **ids, PartNumber=1, Body=data[0], ChecksumAlgorithm="SHA1") == (
        400, "InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum Type: sha1")
    etags = [bare.upload_part(**ids, PartNumber=1, Body=data[0])["ETag"],
             s3.upload_part(**ids, PartNumber=2, Body=data[1])["ETag"],
             bare.upload_part(**ids, PartNumber=3, Body=data[2])["ETag"]]
    assert [p["ChecksumCRC32"] for p in s3.list_parts(**ids)["Parts"]] == [b64(crc32(p)) for p in data]
    named = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]}
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named, MpuObjectSize=len(whole) + 1) == (
        400, "InvalidRequest",
        f"The provided 'x-amz-mp-object-size' header value {len(whole) + 1} does not match what was computed: {len(whole)}")
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=named, ChecksumCRC32=b64(crc32(b"other")))[:2] == (
        400, "BadDigest")
    wrong_part = {"Parts": [dict(named["Parts"][0], ChecksumCRC32=b64(crc32(data[1]))), *named["Parts"][1:]]}
    assert refused(s3.complete_multipart_upload, **ids, MultipartUpload=wrong_part)[:2] == (400, "InvalidPart")
    done = s3.complete_multipart_upload(**ids, MultipartUpload=named, ChecksumCRC32=b64(crc32(whole)),
                                        ChecksumType="FULL_OBJECT", MpuObjectSize=len(whole))
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (b64(crc32(whole)), "FULL_OBJECT")
    got = s3.get_object(Bucket="bkt", Key="obj", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole
    assert (got["ChecksumCRC32"], got["ChecksumType"]) == (b64(crc32(whole)), "FULL_OBJECT")
    # A part of a full-object upload has no checksum of its own to show.
    part = s3.get_object(Bucket="bkt", Key="obj", PartNumber=3, ChecksumMode="ENABLED")
    assert part["Body"].read() == data[2] and "ChecksumCRC32" not in part
    attrs = s3.get_object_attributes(Bucket="bkt", Key="obj", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"] == {"ChecksumCRC32": b64(crc32(whole)), "ChecksumType": "FULL_OBJECT"}
    assert [p["ChecksumCRC32"] for p in attrs["ObjectParts"]["Parts"]] == [b64(crc32(p)) for p in data]


def test_an_upload_without_an_algorithm_gets_s3s_crc64nvme(s3, bare):
    s3.create_bucket(Bucket="bkt")
    data = parts_of([5 * MIB, 4321])
    upload = bare.create_multipart_upload(Bucket="bkt", Key="obj")
    assert "ChecksumAlgorithm" not in upload and "ChecksumType" not in upload
    ids = dict(Bucket="bkt", Key="obj", UploadId=upload["UploadId"])
    # Parts of an upload that declared nothing may carry any checksum (boto3 sends CRC32).
    etags = [s3.upload_part(**ids, PartNumber=1, Body=data[0])["ETag"], bare.upload_part(**ids, PartNumber=2, Body=data[1])["ETag"]]
    named = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]}
    assert refused(bare.complete_multipart_upload, **ids, MultipartUpload=named, ChecksumType="COMPOSITE")[:2] == (400, "InvalidRequest")
    done = bare.complete_multipart_upload(**ids, MultipartUpload=named)
    expected = b64(crc64nvme(b"".join(data)))
    assert (done["ChecksumCRC64NVME"], done["ChecksumType"]) == (expected, "FULL_OBJECT")
    head = s3.head_object(Bucket="bkt", Key="obj", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (expected, "FULL_OBJECT")
    # No algorithm was declared, so the parts are counted but not listed (as the model says).
    parts = s3.get_object_attributes(Bucket="bkt", Key="obj", ObjectAttributes=["ObjectParts"])["ObjectParts"]
    assert parts["TotalPartsCount"] == 2 and "Parts" not in parts


def test_a_completion_is_answered_again_after_a_restart(start_firelake):
    server = start_firelake()
    s3 = server.client("s3")
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="obj", ChecksumAlgorithm="CRC32C")["UploadId"]
    part = s3.upload_part(Bucket="bkt", Key="obj", UploadId=upload, PartNumber=1, Body=b"only part", ChecksumAlgorithm="CRC32C")
    named = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32C": part["ChecksumCRC32C"]}]}
    done = s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload, MultipartUpload=named)
    assert done["ChecksumCRC32C"].endswith("-1")
    server.stop()
    server = start_firelake(data_dir=server.data_dir)
    s3 = server.client("s3")
    again = s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload, MultipartUpload=named)
    assert (again["ETag"], again["ChecksumCRC32C"]) == (done["ETag"], done["ChecksumCRC32C"])
    # The answer is kept beside nothing else: the parts are gone.
    folder = server.data_dir / ".firelake" / "uploads" / upload
    assert sorted(p.name for p in folder.iterdir()) == ["completed.json"]
