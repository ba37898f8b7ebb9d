#!/usr/bin/env python3
"""Runs firelake's benchmarks against firelake and moto_server in the same run, and prints
medians, ratios and the disk baselines as Markdown (the figures in BENCHMARKS.md).

    .venv/bin/python bench/run.py [--rounds 3] [--seconds 5] [--only s3|versioning|firehose|durability|partitioning|lambda|listing]
                                  [--profile release|profiling] [--baseline GIT-REV]

It builds the release binaries, starts each server on a fresh data directory under
bench/.data (the disk the repository is on), and drives it with bench/loadgen over
loopback. Every load is bounded in time and count. The machine is shared and noisy, so
each figure is the median of --rounds runs, with firelake and moto interleaved.

--baseline builds the firelake of an older commit as well (from `git archive`, into
bench/.baseline) and runs it, interleaved, beside this one in the versioning section: the
small-object rates before a change and after it, in the same run.
"""
import argparse
import json
import os
import pathlib
import shutil
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The binaries of the cargo profile given by --profile (release unless told).
FIRELAKE = ROOT / "target" / "release" / "firelake"
LOADGEN = ROOT / "target" / "release" / "firelake-loadgen"
DATA = ROOT / "bench" / ".data"
BASELINE = ROOT / "bench" / ".baseline"
# The firelake built from --baseline's commit, if one was given.
BASELINE_FIRELAKE = None
# The --durability of the firelakes in the versioning section (--versioning-durability).
VERSIONING_DURABILITY = "fsync"
MOTO = pathlib.Path(sys.executable).with_name("moto_server")
# The durability of every firelake started here is passed on its command line: never taken
# from a FIRELAKE_DURABILITY (or any FIRELAKE_*) in the environment of this script.
DURABILITY = "fsync"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("FIRELAKE_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.001)
    raise RuntimeError(f"{url} not ready")


def start_firelake_timed(args, port, timeout=20.0):
    """Starts firelake; answers (process, ms from exec to the first 200 from its health
    endpoint). The health request goes out as soon as firelake prints its ready line (after
    binding and any journal replay), so no polling interval inflates the figure."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            proc.kill()
            raise RuntimeError(f"firelake printed no ready line within {timeout} s")
    line = proc.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError(f"firelake did not start: {line!r}")
    # stdout stays open (firelake writes nothing else to it), so it never meets a closed pipe.
    wait_ready(f"http://127.0.0.1:{port}/_firelake/health", timeout)
    return proc, (time.perf_counter() - t) * 1000


class Server:
    def __init__(self, kind, *extra, durability=DURABILITY, port=None, binary=None):
        self.kind = kind
        port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        data = self.data = DATA / f"{kind}-{port}"
        if kind == "firelake":
            cmd = [str(binary or FIRELAKE), "--port", str(port), "--data-dir", str(data), "--log", "warn", "--durability", durability, *extra]
            health = f"{self.endpoint}/_firelake/health"
        else:
            cmd = [str(MOTO), "-p", str(port)]
            health = f"{self.endpoint}/moto-api/"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        wait_ready(health)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # A Firehose round leaves gigabytes of objects: not kept for the rounds after it.
        shutil.rmtree(self.data, ignore_errors=True)


def loadgen(endpoint, scenario, *args):
    out = subprocess.run([str(LOADGEN), "--endpoint", endpoint, "--scenario", scenario, *args],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def startup_ms(rounds=10):
    """Time from exec to the first 200 from /_firelake/health, on an empty data directory."""
    times = []
    for _ in range(rounds):
        port = free_port()
        data = DATA / f"startup-{port}"
        proc, ms = start_firelake_timed([str(FIRELAKE), "--port", str(port), "--data-dir", str(data), "--log", "warn", "--durability", DURABILITY], port)
        times.append(ms)
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return statistics.median(times)


def idle_rss_mb(rounds=3):
    values = []
    for _ in range(rounds):
        server = Server("firelake")
        time.sleep(1.0)
        status = pathlib.Path(f"/proc/{server.proc.pid}/status").read_text()
        kb = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
        values.append(kb / 1024)
        server.stop()
    return statistics.median(values)


def disk_baselines(rounds=3):
    """dd with conv=fsync to the data disk, and md5sum's rate, for a 64 MiB file."""
    dd, md5 = [], []
    target = DATA / "dd.bin"
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=64", "conv=fsync"], check=True, capture_output=True)
        dd.append(64 * 1048576 / (time.perf_counter() - t) / 1e6)
        t = time.perf_counter()
        subprocess.run(["md5sum", str(target)], check=True, capture_output=True)
        md5.append(64 * 1048576 / (time.perf_counter() - t) / 1e6)
    target.unlink()
    return statistics.median(dd), statistics.median(md5)


S3_SCENARIOS = [
    ("put-small", ["--seconds", "{seconds}"], "ops_per_s"),
    ("get-small", ["--seconds", "{seconds}"], "ops_per_s"),
    ("put-large", ["--repeat", "3"], "mb_per_s_median"),
    ("get-large", ["--repeat", "3"], "mb_per_s_median"),
    ("list", ["--repeat", "3"], "ms_median"),
]


def s3_round(kind, seconds):
    server = Server(kind)
    try:
        return {name: loadgen(server.endpoint, name, *[a.format(seconds=seconds) for a in args])[key]
                for name, args, key in S3_SCENARIOS}
    finally:
        server.stop()


VERSIONING_KINDS = ("unversioned", "versioned")


def build_baseline(rev, profile):
    """Builds firelake as it was at commit `rev` with cargo profile `profile` (the one this run
    measures), in a tree of its own under bench/.baseline with its own target directory, so
    this checkout's binaries are not replaced. Answers (the commit id, the binary's path)."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = BASELINE / commit[:12]
    if not (tree / "Cargo.toml").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {commit} failed")
    subprocess.run(["cargo", "build", "--profile", profile, "--locked", "-p", "firelake", "--bin", "firelake"], cwd=tree, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(BASELINE / "target")})
    return commit, BASELINE / "target" / profile / "firelake"


def versioning_round(kind, seconds):
    """Small-object PUTs and GETs into a bucket never versioned, or one with versioning
    Enabled (every PUT then keeps the former object as a noncurrent version); "before" is
    the unversioned case on the --baseline binary."""
    server = Server("firelake", durability=VERSIONING_DURABILITY, binary=BASELINE_FIRELAKE if kind == "before" else None)
    try:
        s3 = client("s3", server.endpoint)
        s3.create_bucket(Bucket="bench-versions")
        if kind == "versioned":
            s3.put_bucket_versioning(Bucket="bench-versions", VersioningConfiguration={"Status": "Enabled"})
        return {name: loadgen(server.endpoint, name, "--bucket", "bench-versions", "--seconds", str(seconds))["ops_per_s"]
                for name in ("put-small", "get-small")}
    finally:
        server.stop()


def client(service, endpoint, **config):
    """A boto3 client of `service` for the server at `endpoint`, with dummy credentials."""
    import boto3
    from botocore.config import Config
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(**config) if config else None)


def medians(runs):
    """The median of each figure over rounds (a list of dicts with the same keys)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def setup_stream(endpoint, name, size_mb=64, interval=60):
    s3, fh = client("s3", endpoint), client("firehose", endpoint)
    s3.create_bucket(Bucket="bench-fh")
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::bench-fh",
        "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval}})
    return s3


def delivered_bytes(s3):
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench-fh"):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


FIREHOSE_KINDS = ("firelake-fsync", "firelake-none", "moto")


def firehose_round(kind, seconds):
    """The Firehose scenarios against moto, or firelake with the --durability in `kind`."""
    out = {}
    durability = kind.split("-")[1] if kind.startswith("firelake") else DURABILITY
    server = Server(kind.split("-")[0], durability=durability)
    try:
        setup_stream(server.endpoint, "small")
        peak = loadgen(server.endpoint, "put-record-batch", "--stream", "small", "--batch", "500", "--record-bytes", "100",
                       "--seconds", str(seconds), "--workers", "8")
        out["batch-100b-records-per-s"] = peak["records_per_s"]
        out["batch-100b-p99-ms-at-peak"] = peak["p99_ms"]
        out["batch-100b-throttled-records-at-peak"] = peak["failed_records"]
        out["batch-100b-throttled-calls-at-peak"] = peak["throttled_calls"]
        half = loadgen(server.endpoint, "put-record-batch", "--stream", "small", "--batch", "500", "--record-bytes", "100",
                       "--seconds", str(seconds), "--workers", "8", "--rate", str(peak["calls_per_s"] / 2))
        out["batch-100b-p50-ms-at-half"] = half["p50_ms"]
        out["batch-100b-p99-ms-at-half"] = half["p99_ms"]
        out["batch-100b-throttled-records-at-half"] = half["failed_records"]
        out["batch-100b-throttled-calls-at-half"] = half["throttled_calls"]
    finally:
        server.stop()
    if kind.startswith("firelake"):
        server = Server("firelake", durability=durability)
        try:
            s3 = setup_stream(server.endpoint, "big", size_mb=128, interval=900)
            t = time.perf_counter()
            run = loadgen(server.endpoint, "put-record-batch", "--stream", "big", "--batch", "500", "--record-bytes", "1024",
                          "--seconds", str(seconds), "--workers", "8")
            urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/_firelake/flush", data=b"", method="POST"), timeout=300).read()
            elapsed = time.perf_counter() - t
            out["batch-1kib-delivered-mb-per-s"] = delivered_bytes(s3) / elapsed / 1e6
            out["batch-1kib-accepted-mb-per-s"] = run["payload_mb_per_s"]
            out["batch-1kib-throttled-records"] = run["failed_records"]
        finally:
            server.stop()
    return out


def setup_partitioned(endpoint, name):
    s3, fh = client("s3", endpoint), client("firehose", endpoint)
    s3.create_bucket(Bucket="bench-fh")
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::bench-fh",
        "Prefix": "vin=!{partitionKeyFromQuery:vin}/", "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 900},
        "DynamicPartitioningConfiguration": {"Enabled": True},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{vin: .vin}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}})
    return s3


PARTITION_KINDS = ("unpartitioned", "partitioned")


def partition_round(kind, seconds):
    """500 JSON telematics records of 100 vehicles per PutRecordBatch, into a stream
    partitioned by `{vin: .vin}` or an unpartitioned one; then everything is flushed."""
    server = Server("firelake", durability=DURABILITY)
    try:
        s3 = setup_partitioned(server.endpoint, "load") if kind == "partitioned" else setup_stream(server.endpoint, "load", 64, 900)
        t = time.perf_counter()
        run = loadgen(server.endpoint, "put-record-batch", "--stream", "load", "--batch", "500", "--record-bytes", "120",
                      "--vehicles", "100", "--seconds", str(seconds), "--workers", "8")
        urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/_firelake/flush", data=b"", method="POST"), timeout=300).read()
        elapsed = time.perf_counter() - t
        objects = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bench-fh"))
        return {"ingest-records-per-s": run["records_per_s"], "p99-ms": run["p99_ms"],
                "delivered-records-per-s": run["accepted_records"] / elapsed, "objects": objects,
                "throttled-records": run["failed_records"]}
    finally:
        server.stop()


IDENTITY = """
def handler(event, context):
    return event
"""

FIREHOSE_IDENTITY = """
def handler(event, context):
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in event["records"]]}
"""


def lambda_zip(source):
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


LAMBDA_FIREHOSE_KINDS = ("firehose", "firehose-one-at-a-time")


def lambda_round(kind, seconds):
    """Warm invocations of an identity Python handler (and, as the baseline, the same
    handler called in a plain Python loop); or a Firehose stream of 1 KiB records
    through the identity transform, delivered: with the default --lambda-workers-max (4
    batches of the stream invoked at once), or with 1 (one batch at a time, the baseline)."""
    workers = ["--lambda-workers-max", "1"] if kind == "firehose-one-at-a-time" else []
    server = Server("firelake", "--lambda-python", sys.executable, *workers, durability=DURABILITY)
    try:
        lam = client("lambda", server.endpoint, retries={"max_attempts": 1})
        out = {}
        if kind == "invoke":
            lam.create_function(FunctionName="id", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/l",
                                Handler="app.handler", Code={"ZipFile": lambda_zip(IDENTITY)})
            payload = json.dumps({"n": 1}).encode()
            lam.invoke(FunctionName="id", Payload=payload)["Payload"].read()  # warm
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                lam.invoke(FunctionName="id", Payload=payload)["Payload"].read()
                n += 1
            invoke_ms = (time.perf_counter() - t) / n * 1000
            # The same client's round trip for a call that runs no function: what is the
            # SDK's and HTTP's, not the invocation's.
            m, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                lam.get_function_configuration(FunctionName="id")
                m += 1
            control_ms = (time.perf_counter() - t) / m * 1000
            namespace = {}
            exec(IDENTITY, namespace)
            k, t = 0, time.perf_counter()
            while k < 100000:
                json.dumps(namespace["handler"](json.loads(payload), None))
                k += 1
            loop_ms = (time.perf_counter() - t) / k * 1000
            out = {"invocations-per-s": n / seconds, "invoke-ms": invoke_ms, "control-call-ms": control_ms,
                   "plain-loop-ms": loop_ms, "overhead-ms": invoke_ms - control_ms - loop_ms}
        else:
            arn = lam.create_function(FunctionName="fid", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/l",
                                      Handler="app.handler", Code={"ZipFile": lambda_zip(FIREHOSE_IDENTITY)})["FunctionArn"]
            s3, fh = client("s3", server.endpoint), client("firehose", server.endpoint)
            s3.create_bucket(Bucket="bench-fh")
            fh.create_delivery_stream(DeliveryStreamName="lam", ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::bench-fh",
                "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900},
                "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": arn}, {"ParameterName": "BufferSizeInMBs", "ParameterValue": "3"},
                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}})
            t = time.perf_counter()
            run = loadgen(server.endpoint, "put-record-batch", "--stream", "lam", "--batch", "500", "--record-bytes", "1024",
                          "--seconds", str(seconds), "--workers", "8")
            urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/_firelake/flush", data=b"", method="POST"), timeout=600).read()
            elapsed = time.perf_counter() - t
            out = {"delivered-mb-per-s": delivered_bytes(s3) / elapsed / 1e6, "accepted-mb-per-s": run["payload_mb_per_s"],
                   "throttled-records": run["failed_records"]}
        return out
    finally:
        server.stop()


JOURNAL_CAP_MB = 1024


def replay_startup(rounds=3):
    """Fills a stream whose bucket is missing until its journal holds ~1 GiB (the buffer
    caps stop it there), kills firelake, then times restarts that replay it: exec to the
    first 200 from /_firelake/health. Answers (journal bytes, bytes held after replay, start ms)."""
    caps = ["--stream-buffer-max-mb", str(JOURNAL_CAP_MB), "--total-buffer-max-mb", str(JOURNAL_CAP_MB)]
    port = free_port()
    data = DATA / f"replay-{port}"
    args = [str(FIRELAKE), "--port", str(port), "--data-dir", str(data), "--log", "error", "--durability", DURABILITY, *caps]
    endpoint = f"http://127.0.0.1:{port}"
    proc, _ = start_firelake_timed(args, port)
    client("firehose", endpoint).create_delivery_stream(DeliveryStreamName="stuck", ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::no-such-bucket",
        "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900}})
    accepted = 0
    deadline = time.monotonic() + 120
    while accepted < JOURNAL_CAP_MB * 1048576 * 0.97 and time.monotonic() < deadline:
        run = loadgen(endpoint, "put-record-batch", "--stream", "stuck", "--batch", "500", "--record-bytes", "1024",
                      "--seconds", "2", "--workers", "4")
        accepted += run["payload_mb_per_s"] * 1e6 * 2
    proc.kill()
    proc.wait()
    journal = sum(f.stat().st_size for f in (data / ".firelake").rglob("*") if f.is_file() and "journal" in str(f))
    times, held = [], 0
    for _ in range(rounds):
        proc, ms = start_firelake_timed(args, port, timeout=300)
        times.append(ms)
        with urllib.request.urlopen(f"{endpoint}/_firelake/streams", timeout=30) as response:
            held = json.loads(response.read())["held_bytes_total"]
        proc.kill()  # no graceful shutdown: the next start replays the same journal
        proc.wait()
    return journal, held, statistics.median(times)


# ---- listings: the cost of one page against the size of the bucket ----

LISTING_SIZES = (10_000, 100_000, 1_000_000)
LISTING_MOTO_MAX = 100_000
PER_FOLDER = 1000


def listing_key(i):
    """Keys in folders of PER_FOLDER, as a stream's hourly folders are: d0000/k0000000."""
    return f"d{i // PER_FOLDER:04d}/k{i:07d}"


def place_keys(bucket_dir, n):
    """Hand-places n empty objects straight into a bucket's folder (README: listed as objects)."""
    for folder in range(0, n, PER_FOLDER):
        (bucket_dir / listing_key(folder)).parent.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        os.close(os.open(bucket_dir / listing_key(i), os.O_CREAT | os.O_WRONLY, 0o644))


def put_keys(endpoint, bucket, n, threads=8):
    """PUTs n empty objects through HTTP (moto has no folder to place them in)."""
    import concurrent.futures
    import http.client
    host = endpoint.removeprefix("http://")

    def worker(start):
        conn = http.client.HTTPConnection(host, timeout=60)
        for i in range(start, n, threads):
            conn.request("PUT", f"/{bucket}/{listing_key(i)}", body=b"")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))


def list_page(conn, bucket, **query):
    """One ListObjectsV2 page over a kept-alive connection: (seconds, body)."""
    import urllib.parse
    path = f"/{bucket}?list-type=2&" + urllib.parse.urlencode(query)
    t = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - t
    assert response.status == 200, (response.status, body[:300])
    return elapsed, body


def walk_all(conn, bucket):
    """Lists every key page by page: (seconds, keys seen)."""
    import re
    t, keys, token = time.perf_counter(), 0, None
    while True:
        _, body = list_page(conn, bucket, **({"continuation-token": token} if token else {}))
        keys += body.count(b"<Key>")
        found = re.search(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if not found:
            return time.perf_counter() - t, keys
        token = found.group(1).decode()


def listing_round(kind, n, repeats):
    """Page and walk times for a bucket of n keys on a fresh `kind` server."""
    import http.client
    port = free_port()
    bucket = "listing"
    data = DATA / f"{kind}-{port}"
    if kind == "firelake":
        t = time.perf_counter()
        place_keys(data / bucket, n)
        fill = time.perf_counter() - t
        server = Server(kind, port=port)
    else:
        server = Server(kind, port=port)
        urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/{bucket}", method="PUT"), timeout=30).read()
        t = time.perf_counter()
        put_keys(server.endpoint, bucket, n)
        fill = time.perf_counter() - t
    try:
        conn = http.client.HTTPConnection(server.endpoint.removeprefix("http://"), timeout=600)
        out = {"fill-s": fill}
        # firelake derives and remembers hand-placed files' metadata the first time it lists them.
        out["walk-first-s"], keys = walk_all(conn, bucket)
        assert keys == n, (kind, n, keys)
        out["walk-second-s"], _ = walk_all(conn, bucket)
        middle = listing_key(n // 2)
        pages = {"first-page": {}, "middle-page": {"start-after": middle}, "prefix-page": {"prefix": "d0005/"}}
        for name, query in pages.items():
            times = []
            for _ in range(repeats):
                elapsed, body = list_page(conn, bucket, **query)
                assert body.count(b"<Key>") == 1000, (name, body.count(b"<Key>"))
                times.append(elapsed)
            out[f"{name}-ms"] = statistics.median(times) * 1000
        conn.close()
        return out
    finally:
        server.stop()


def listing_section(rounds, sizes=LISTING_SIZES, moto_max=LISTING_MOTO_MAX):
    results = {}
    for n in sizes:
        kinds = ("firelake", "moto") if n <= moto_max else ("firelake",)
        for kind in kinds:
            results[(kind, n)] = listing_round(kind, n, repeats=max(5, rounds * 3))
            # Each bucket's figures as soon as they are measured: the large fills take minutes.
            print(f"{kind} {n}:", json.dumps(results[(kind, n)]), flush=True)
    print("\n| ListObjectsV2, 1,000-key page (median) | " + " | ".join(f"{k} {n:,}" for k, n in results) + " |")
    print("|---|" + "---|" * len(results))
    rows = (("first-page-ms", "first page (ms)"), ("middle-page-ms", "page from the middle, start-after (ms)"),
            ("prefix-page-ms", "prefix d0005/ (ms)"), ("walk-first-s", "walk of all keys, first (s)"),
            ("walk-second-s", "walk of all keys, second (s)"), ("fill-s", "fill (s)"))
    for key, label in rows:
        print(f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in results.values()) + " |")
    small, big = results[("firelake", sizes[0])], results[("firelake", sizes[-1])]
    for key in ("first-page-ms", "middle-page-ms", "prefix-page-ms"):
        print(f"\nfirelake {key}, {sizes[-1]:,} / {sizes[0]:,} keys: {big[key] / small[key]:.2f}x", end="")
    print("\n\nraw:", json.dumps({f"{k} {n}": r for (k, n), r in results.items()}))


def interleaved(kinds, round_fn, rounds, seconds):
    """round_fn(kind, seconds) for each kind in turn, `rounds` times: {kind: [result, ...]}.
    Interleaving spreads the machine's noise over every kind alike."""
    results = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            results[kind].append(round_fn(kind, seconds))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--only", choices=["s3", "versioning", "firehose", "durability", "partitioning", "lambda", "listing"], default=None)
    ap.add_argument("--profile", default="release", help="the cargo profile to build and run (release, profiling)")
    ap.add_argument("--baseline", metavar="GIT-REV", default=None,
                    help="also build the firelake of this commit and run it beside this one in the versioning section")
    ap.add_argument("--versioning-durability", choices=["fsync", "none"], default="fsync",
                    help="the --durability of the versioning section's firelakes (none takes the disk's fsync time out of the comparison)")
    ap.add_argument("--listing-sizes", type=lambda v: tuple(int(n) for n in v.split(",")), default=LISTING_SIZES,
                    help="bucket sizes of the listing section, comma-separated")
    ap.add_argument("--listing-moto-max", type=int, default=LISTING_MOTO_MAX,
                    help="the largest bucket filled in moto too (moto takes its PUTs at about 100/s on a busy machine)")
    args = ap.parse_args()
    global FIRELAKE, LOADGEN, BASELINE_FIRELAKE, VERSIONING_DURABILITY
    VERSIONING_DURABILITY = args.versioning_durability
    FIRELAKE = ROOT / "target" / args.profile / "firelake"
    LOADGEN = ROOT / "target" / args.profile / "firelake-loadgen"
    subprocess.run(["cargo", "build", "--profile", args.profile, "--locked", "-p", "firelake", "-p", "firelake-loadgen"], cwd=ROOT, check=True)
    baseline = None
    if args.baseline:
        baseline, BASELINE_FIRELAKE = build_baseline(args.baseline, args.profile)
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"# firelake benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"profile {args.profile}, commit {head[:12]}" + (f", baseline {baseline[:12]}" if baseline else "") + "\n")
    if args.only in (None, "s3"):
        start = startup_ms()
        rss = idle_rss_mb()
        dd, md5 = disk_baselines()
        results = interleaved(("firelake", "moto"), s3_round, args.rounds, args.seconds)
        med = {kind: {name: statistics.median(r[name] for r in runs) for name, _, _ in S3_SCENARIOS} for kind, runs in results.items()}
        print("| S3 scenario | firelake (fsync) | moto_server | firelake / moto |")
        print("|---|---|---|---|")
        units = {"put-small": "ops/s", "get-small": "ops/s", "put-large": "MB/s", "get-large": "MB/s", "list": "ms"}
        for name, _, _ in S3_SCENARIOS:
            f, m = med["firelake"][name], med["moto"][name]
            ratio = (m / f) if name == "list" else (f / m)
            print(f"| {name} ({units[name]}) | {f:.1f} | {m:.1f} | {ratio:.1f}x |")
        floor = min(dd, md5)
        print(f"\n| baseline | value |\n|---|---|")
        print(f"| dd 64 MiB conv=fsync | {dd:.0f} MB/s |")
        print(f"| md5sum 64 MiB | {md5:.0f} MB/s |")
        print(f"| firelake durable 64 MiB PUT / min(dd, md5sum) | {med['firelake']['put-large'] / floor * 100:.0f}% |")
        print(f"| ready after start: exec to first health 200, empty data dir (median of 10) | {start:.1f} ms |")
        print(f"| idle RSS after start (median of 3) | {rss:.1f} MB |")
        print("\nraw rounds:", json.dumps(results))
    if args.only in (None, "versioning"):
        kinds = (("before",) if baseline else ()) + VERSIONING_KINDS
        results = interleaved(kinds, versioning_round, args.rounds, args.seconds)
        med = {kind: medians(runs) for kind, runs in results.items()}
        u, v = med["unversioned"], med["versioned"]
        b = med.get("before")
        before = [f"{baseline[:12]}, unversioned"] if b else []
        print(f"\n| small objects (4 KiB), 16 workers, --durability {VERSIONING_DURABILITY} | "
              + " | ".join(before + ["unversioned bucket", "versioning Enabled", "versioned / unversioned"]
                           + (["unversioned / before", "versioned / before"] if b else [])) + " |")
        print("|---|" + "---|" * (3 + 3 * bool(b)))
        for key in ("put-small", "get-small"):
            cells = ([f"{b[key]:,.0f}"] if b else []) + [f"{u[key]:,.0f}", f"{v[key]:,.0f}", f"{v[key] / u[key] * 100:.0f}%"]
            if b:
                cells += [f"{u[key] / b[key] * 100:.0f}%", f"{v[key] / b[key] * 100:.0f}%"]
            print(f"| {key} (ops/s) | " + " | ".join(cells) + " |")
        print("\nraw rounds:", json.dumps(results))
    if args.only in (None, "partitioning"):
        results = interleaved(PARTITION_KINDS, partition_round, args.rounds, args.seconds)
        med = {kind: medians(runs) for kind, runs in results.items()}
        u, p = med["unpartitioned"], med["partitioned"]
        print(f"\n| 500 telematics records (100 vehicles) per PutRecordBatch, --durability {DURABILITY} | unpartitioned | partitioned by `{{vin: .vin}}` | partitioned / unpartitioned |")
        print("|---|---|---|---|")
        for key in ("ingest-records-per-s", "delivered-records-per-s"):
            print(f"| {key} | {u[key]:,.0f} | {p[key]:,.0f} | {p[key] / u[key] * 100:.0f}% |")
        print(f"| p99 ms at peak | {u['p99-ms']:.1f} | {p['p99-ms']:.1f} | |")
        print(f"| objects delivered | {u['objects']:.0f} | {p['objects']:.0f} | |")
        print(f"| throttled records | {u['throttled-records']:.0f} | {p['throttled-records']:.0f} | |")
        print("\nraw rounds:", json.dumps(results))
    if args.only in (None, "lambda"):
        results = {"invoke": [lambda_round("invoke", args.seconds) for _ in range(args.rounds)]}
        # The two Firehose kinds interleaved, so the machine's noise falls on both alike.
        results.update(interleaved(LAMBDA_FIREHOSE_KINDS, lambda_round, args.rounds, args.seconds))
        for kind, runs in results.items():
            med = medians(runs)
            print(f"\n| Lambda, {kind} (median of {args.rounds}) | value |\n|---|---|")
            for k, v in med.items():
                print(f"| {k} | {v:,.3f} |")
            print("\nraw rounds:", json.dumps(runs))
        at_once, one = (medians(results[kind])["delivered-mb-per-s"] for kind in LAMBDA_FIREHOSE_KINDS)
        print(f"\n| delivered through the Lambda, batches at once / one at a time | {at_once / one:.2f}x |")
    if args.only in (None, "firehose"):
        results = interleaved(FIREHOSE_KINDS, firehose_round, args.rounds, args.seconds)
        med = {kind: medians(runs) for kind, runs in results.items()}
        f, n, m = med["firelake-fsync"], med["firelake-none"], med["moto"]
        print("\n| Firehose scenario | firelake, fsync | firelake, none | moto_server | fsync / moto | none / moto |")
        print("|---|---|---|---|---|---|")
        rate = "batch-100b-records-per-s"
        print(f"| PutRecordBatch 500 x 100 B, 8 workers (records/s) | {f[rate]:.0f} | {n[rate]:.0f} | {m[rate]:.0f} "
              f"| {f[rate] / m[rate]:.1f}x | {n[rate] / m[rate]:.1f}x |")
        for key, label in (("batch-100b-p99-ms-at-peak", "p99 at peak"), ("batch-100b-p50-ms-at-half", "p50 at half of peak"),
                           ("batch-100b-p99-ms-at-half", "p99 at half of peak")):
            print(f"| PutRecordBatch {label} (ms) | {f[key]:.2f} | {n[key]:.2f} | {m[key]:.2f} | | |")
        # Throttled records ("Slow down.") are not counted as accepted, and calls with any are
        # left out of the percentiles above (they answer at once); here is how many there were.
        for key, label in (("batch-100b-throttled-records-at-peak", "records throttled at peak"),
                           ("batch-100b-throttled-calls-at-peak", "calls throttled at peak (not in p99)"),
                           ("batch-100b-throttled-records-at-half", "records throttled at half of peak"),
                           ("batch-100b-throttled-calls-at-half", "calls throttled at half of peak (not in p50/p99)")):
            print(f"| PutRecordBatch {label} | {f[key]:.0f} | {n[key]:.0f} | {m[key]:.0f} | | |")
        for key, label in (("batch-1kib-accepted-mb-per-s", "accepted payload"),
                           ("batch-1kib-delivered-mb-per-s", "delivered payload, puts then flush")):
            print(f"| 1 KiB records: {label} (MB/s) | {f[key]:.1f} | {n[key]:.1f} | | | |")
        key = "batch-1kib-throttled-records"
        print(f"| 1 KiB records: records throttled | {f[key]:.0f} | {n[key]:.0f} | | | |")
        print(f"\nnone / fsync, PutRecordBatch records/s: {n[rate] / f[rate]:.2f}x")
        print("\nraw rounds:", json.dumps(results))
    if args.only in (None, "durability"):
        journal, held, ms = replay_startup()
        print(f"\n| start-up with a journal to replay | value |\n|---|---|")
        print(f"| journal size | {journal / 1e9:.2f} GB |")
        print(f"| record bytes held again after replay | {held / 1e9:.2f} GB |")
        print(f"| exec to ready (median of 3) | {ms:.0f} ms |")
    if args.only in (None, "listing"):
        listing_section(args.rounds, args.listing_sizes, args.listing_moto_max)
    shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
