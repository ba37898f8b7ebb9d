"""Listings page by page through boto3: the orderings a lazy walk of the folder tree can get
wrong, and a differential test against the order computed here from the key set."""
import os
import random

import pytest


def order(key):
    return key.encode()


def expected(keys, prefix="", delimiter=None, after=""):
    """The whole listing as S3 answers it: (kind, text) in order, kind "K" or "P"."""
    out = []
    for key in sorted(set(keys), key=order):
        if order(key) <= order(after) or not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = key[:len(prefix) + rest.index(delimiter) + len(delimiter)]
            # A prefix at or before the start was on an earlier page.
            if order(common) <= order(after) or (out and out[-1] == ("P", common)):
                continue
            out.append(("P", common))
        else:
            out.append(("K", key))
    return out


def page_entries(page):
    """A page's entries in key order (boto3 gives objects and prefixes apart)."""
    entries = [("K", o["Key"]) for o in page.get("Contents", page.get("Versions", []))]
    entries += [("P", p["Prefix"]) for p in page.get("CommonPrefixes", [])]
    return sorted(entries, key=lambda e: order(e[1]))


def walk(call, args, max_keys, next_args, check=lambda page, entries: None):
    """Every entry of a listing, page by page: call(**args), then next_args(page, entries)
    for the next page's markers, until a page is not truncated."""
    got, pages = [], 0
    while True:
        page = call(**args)
        entries = page_entries(page)
        check(page, entries)
        assert len(entries) <= max_keys
        got += entries
        pages += 1
        assert pages < 10_000
        if not page["IsTruncated"]:
            return got
        assert len(entries) == max_keys, "a truncated page is full"
        args.update(next_args(page, entries))


def list_args(bucket, max_keys, prefix, delimiter):
    args = {"Bucket": bucket, "MaxKeys": max_keys, "Prefix": prefix}
    if delimiter:
        args["Delimiter"] = delimiter
    return args


def list_v2(s3, bucket, max_keys, prefix="", delimiter=None, start_after=None):
    args = list_args(bucket, max_keys, prefix, delimiter)
    if start_after is not None:
        args["StartAfter"] = start_after

    def key_count(page, entries):
        assert page["KeyCount"] == len(entries)

    return walk(s3.list_objects_v2, args, max_keys, lambda page, _: {"ContinuationToken": page["NextContinuationToken"]}, key_count)


def list_v1(s3, bucket, max_keys, prefix="", delimiter=None):
    args = list_args(bucket, max_keys, prefix, delimiter)
    return walk(s3.list_objects, args, max_keys, lambda page, entries: {"Marker": page.get("NextMarker", entries[-1][1])})


def list_versions(s3, bucket, max_keys, prefix="", delimiter=None):
    args = list_args(bucket, max_keys, prefix, delimiter)
    return walk(s3.list_object_versions, args, max_keys, lambda page, _: {"KeyMarker": page["NextKeyMarker"]})


def put_all(s3, bucket, keys):
    s3.create_bucket(Bucket=bucket)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


AWKWARD = [
    "a", "a/b", "a-b", "a.b", "a0", "a/", "a//x", "a/%", "a/b/c", "a/b-c", "a/b.c", "ab",
    "é", "é/x", "日本/語", "z", "%", "%%x", "/lead", "b/c/d/e", "b/c/d-e", "b/c-d",
]


def test_orderings_a_walk_of_folders_gets_wrong(firelake, s3):
    put_all(s3, "bkt", AWKWARD)
    want = expected(AWKWARD)
    assert [k for _, k in want][:6] == ["%", "%%x", "/lead", "a", "a-b", "a.b"]
    for max_keys in (1, 2, 3, 7, 1000):
        assert list_v2(s3, "bkt", max_keys) == want, max_keys
        assert list_v1(s3, "bkt", max_keys) == want, max_keys
        assert list_versions(s3, "bkt", max_keys) == want, max_keys


def test_a_key_that_moved_into_its_folder_keeps_its_place(firelake, s3):
    # `a` is written first as a file, then moves to `a/%%` when `a/b` is written.
    put_all(s3, "bkt", ["a", "a-b", "a.txt"])
    s3.put_object(Bucket="bkt", Key="a/b", Body=b"x")
    assert (firelake.data_dir / "bkt" / "a" / "%%").is_file()
    keys = ["a", "a-b", "a.txt", "a/b"]
    for max_keys in (1, 2, 1000):
        assert list_v2(s3, "bkt", max_keys) == expected(keys)
        assert list_v2(s3, "bkt", max_keys, delimiter="/") == expected(keys, delimiter="/")
        assert list_v2(s3, "bkt", max_keys, prefix="a") == expected(keys, prefix="a")
    assert [("K", "a"), ("K", "a-b"), ("K", "a.txt"), ("P", "a/")] == list_v2(s3, "bkt", 1, delimiter="/")


def test_delimiter_with_nested_folders_and_start_after_inside_a_folder(firelake, s3):
    keys = [f"logs/{d}/{h:02}/part-{i}" for d in ("2026-01", "2026-02") for h in range(3) for i in range(3)]
    keys += ["logs/2026-01-summary", "logs/2026-01.txt", "logs/readme", "top"]
    put_all(s3, "bkt", keys)
    for prefix, delimiter in [("", "/"), ("logs/", "/"), ("logs/2026-01/", "/"), ("logs/", "-"), ("logs/2026", "/")]:
        for max_keys in (1, 2, 5, 1000):
            assert list_v2(s3, "bkt", max_keys, prefix, delimiter) == expected(keys, prefix, delimiter), (prefix, delimiter)
    # Start-after in the middle of a folder, with and without a delimiter.
    for after in ["logs/2026-01/01/part-1", "logs/2026-01/01/part-1x", "logs/2026-01/", "logs/2026-01", "logs/2026-01/99", "a", "zz"]:
        for delimiter in (None, "/"):
            for max_keys in (1, 4, 1000):
                got = list_v2(s3, "bkt", max_keys, delimiter=delimiter, start_after=after)
                assert got == expected(keys, delimiter=delimiter, after=after), (after, delimiter, max_keys)


def test_continuation_across_folder_boundaries_and_a_prefix_that_ends_mid_name(firelake, s3):
    keys = [f"d{i}/k{j}" for i in range(4) for j in range(3)] + ["d1", "d1-x", "d10/k", "d1/k1/deeper"]
    put_all(s3, "bkt", keys)
    for max_keys in (1, 2, 3, 4):
        assert list_v2(s3, "bkt", max_keys) == expected(keys)
    for prefix in ["d1", "d1/k", "d1/k1", "d1/k1/", "d", "d1-", "e"]:
        for delimiter in (None, "/"):
            for max_keys in (1, 3, 1000):
                assert list_v2(s3, "bkt", max_keys, prefix, delimiter) == expected(keys, prefix, delimiter), (prefix, delimiter)


def test_max_keys_zero_and_an_empty_bucket(firelake, s3):
    s3.create_bucket(Bucket="empty")
    page = s3.list_objects_v2(Bucket="empty", MaxKeys=0)
    assert (page["KeyCount"], page["IsTruncated"]) == (0, False)
    put_all(s3, "bkt", ["a", "b"])
    page = s3.list_objects_v2(Bucket="bkt", MaxKeys=0)
    assert (page["KeyCount"], page["IsTruncated"], "Contents" in page) == (0, True, False)
    page = s3.list_objects_v2(Bucket="bkt", MaxKeys=0, StartAfter="b")
    assert (page["KeyCount"], page["IsTruncated"]) == (0, False)


def test_hand_placed_files_are_listed_in_order_and_firelake_files_never(firelake, s3):
    put_all(s3, "bkt", ["m/1", "m-1"])
    bucket = firelake.data_dir / "bkt"
    (bucket / "m" / "0").write_bytes(b"hand")
    (bucket / "m.0").write_bytes(b"hand")
    (bucket / "deep" / "er").mkdir(parents=True)
    (bucket / "deep" / "er" / "x").write_bytes(b"hand")
    (bucket / "empty" / "folder").mkdir(parents=True)
    (bucket / "%zz").write_bytes(b"not a canonical name")
    keys = ["m/1", "m-1", "m/0", "m.0", "deep/er/x"]
    for max_keys in (1, 2, 1000):
        assert list_v2(s3, "bkt", max_keys) == expected(keys)
        # An empty folder is no common prefix.
        assert list_v2(s3, "bkt", max_keys, delimiter="/") == expected(keys, delimiter="/")
    listed = s3.list_objects_v2(Bucket="bkt", Prefix="m/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("m/0", 4), ("m/1", 3)]
    assert not any(".firelake" in k for _, k in list_v2(s3, "bkt", 1000))


@pytest.mark.parametrize("seed", range(int(os.environ.get("LISTING_SEEDS", "6"))))
def test_random_keys_list_as_their_sorted_set(firelake, s3, seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", "/", "/", "-", ".", "é", "%"]
    keys = set()
    while len(keys) < 120:
        keys.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))))
    keys = sorted(keys)
    put_all(s3, "bkt", keys)
    assert list_v2(s3, "bkt", 1000) == expected(keys)
    for _ in range(25):
        prefix = rng.choice(["", "", "a", "a/", "b/", "a/b", "/", "a-", "é", rng.choice(keys)[:3]])
        delimiter = rng.choice([None, None, "/", "-", "b/", "."])
        max_keys = rng.choice([1, 2, 3, 5, 8, 50])
        case = (prefix, delimiter, max_keys)
        assert list_v2(s3, "bkt", max_keys, prefix, delimiter) == expected(keys, prefix, delimiter), case
        after = rng.choice(keys)[: rng.randint(0, 7)]
        got = list_v2(s3, "bkt", max_keys, prefix, delimiter, start_after=after)
        assert got == expected(keys, prefix, delimiter, after), (*case, after)
        if rng.random() < 0.3:
            assert list_v1(s3, "bkt", max_keys, prefix, delimiter) == expected(keys, prefix, delimiter), case
            assert list_versions(s3, "bkt", max_keys, prefix, delimiter) == expected(keys, prefix, delimiter), case
