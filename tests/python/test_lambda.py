"""Lambda through boto3: functions created from zips and run by firelake itself (Python,
Node.js and a shell-script custom runtime), their errors, timeouts, crashes, logs,
concurrency, persistence, and the rules for accepting code."""
import base64
import hashlib
import io
import json
import os
import sys
import threading
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
# Every call is bounded: no retries, and a read timeout well past the longest handler here.
BOUNDED = {"read_timeout": 60, "connect_timeout": 10, "retries": {"max_attempts": 1, "mode": "standard"}}


def zip_of(files, modes=None):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return buffer.getvalue()


HANDLER = """
import json, os, time

def handler(event, context):
    print("event", json.dumps(event))
    if event.get("raise"):
        raise ValueError("bad value " + str(event["raise"]))
    if event.get("sleep"):
        import subprocess
        child = subprocess.Popen(["sleep", "300"])
        with open(event["pidfile"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        return len(bytearray(event["allocate_mb"] * 1024 * 1024))
    if event.get("environment"):
        return dict(os.environ)
    if event.get("exit"):
        os._exit(event["exit"])
    return {"echo": event, "pid": os.getpid(), "function": context.function_name,
            "stage": os.environ.get("STAGE"), "cwd": os.getcwd() == os.environ["LAMBDA_TASK_ROOT"]}
"""


@pytest.fixture
def lam(start_firelake):
    server = start_firelake("--lambda-python", sys.executable)
    return server.client("lambda", **BOUNDED)


def create(lam, name, source=HANDLER, **extra):
    return lam.create_function(
        FunctionName=name, Runtime=extra.pop("Runtime", "python3.12"), Role=ROLE,
        Handler=extra.pop("Handler", "app.handler"), Code={"ZipFile": zip_of({"app.py": source})}, **extra,
    )


def invoke(lam, name, event, **extra):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **extra)
    return response, json.loads(response["Payload"].read() or b"null")


def error_code(call):
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_create_invoke_update_delete(lam):
    code = zip_of({"app.py": HANDLER})
    created = lam.create_function(FunctionName="echo", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                                  Code={"ZipFile": code}, Environment={"Variables": {"STAGE": "one"}})
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:echo"
    assert created["State"] == "Active" and created["Version"] == "$LATEST"
    assert created["Timeout"] == 3 and created["MemorySize"] == 128
    assert created["CodeSize"] == len(code)
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    response, body = invoke(lam, "echo", {"a": 1})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["echo"] == {"a": 1} and body["function"] == "echo" and body["stage"] == "one" and body["cwd"]
    # Warm: the same worker answers the next invocation.
    assert invoke(lam, "echo", {"a": 2})[1]["pid"] == body["pid"]

    got = lam.get_function(FunctionName="echo")
    assert got["Configuration"]["CodeSha256"] == created["CodeSha256"]
    assert got["Configuration"]["Environment"] == {"Variables": {"STAGE": "one"}}
    assert got["Code"]["RepositoryType"] == "S3"
    import urllib.request
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as download:
        assert download.read() == code
    by_arn = lam.get_function_configuration(FunctionName=created["FunctionArn"])
    assert by_arn["FunctionName"] == "echo"

    lam.update_function_configuration(FunctionName="echo", Environment={"Variables": {"STAGE": "two"}}, Timeout=5)
    assert invoke(lam, "echo", {})[1]["stage"] == "two"
    lam.update_function_code(FunctionName="echo", ZipFile=zip_of({"app.py": "def handler(e, c):\n    return 'v2'\n"}))
    assert invoke(lam, "echo", {})[1] == "v2"
    assert lam.get_function_configuration(FunctionName="echo")["Timeout"] == 5

    assert error_code(lambda: create(lam, "echo")) == "ResourceConflictException"
    lam.delete_function(FunctionName="echo")
    assert error_code(lambda: invoke(lam, "echo", {})) == "ResourceNotFoundException"
    assert error_code(lambda: lam.get_function(FunctionName="echo")) == "ResourceNotFoundException"
    assert error_code(lambda: lam.delete_function(FunctionName="echo")) == "ResourceNotFoundException"


def test_list_functions_pages(lam):
    for name in ["f-a", "f-b", "f-c"]:
        create(lam, name)
    first = lam.list_functions(MaxItems=2)
    assert [f["FunctionName"] for f in first["Functions"]] == ["f-a", "f-b"]
    second = lam.list_functions(MaxItems=2, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == ["f-c"] and "NextMarker" not in second
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]]
    assert names == ["f-a", "f-b", "f-c"]


def test_handler_error_and_log_tail(lam):
    create(lam, "failing")
    response, body = invoke(lam, "failing", {"raise": 7}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad value 7"
    assert any("app.py" in line and "in handler" in line for line in body["stackTrace"]), body
    log = base64.b64decode(response["LogResult"]).decode()
    assert log.startswith("START RequestId: ") and "END RequestId: " in log and "REPORT RequestId: " in log
    assert 'event {"raise": 7}' in log
    # The worker survives a handler's exception.
    response, body = invoke(lam, "failing", {"ok": True}, LogType="Tail")
    assert "FunctionError" not in response and body["echo"] == {"ok": True}
    assert 'event {"ok": true}' in base64.b64decode(response["LogResult"]).decode()


def test_timeout_kills_the_worker(lam, tmp_path):
    create(lam, "sleepy", Timeout=1)
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    response, body = invoke(lam, "sleepy", {"sleep": 60, "pidfile": str(pidfile)})
    assert time.monotonic() - started < 15
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    # The worker and the process it started (its process group) are killed.
    for pid in map(int, pidfile.read_text().split()):
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:  # a killed child of the worker may linger as a zombie until reaped
                if open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z"):
                    break
            except (FileNotFoundError, ProcessLookupError, IndexError):  # gone meanwhile
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"process {pid} still runs after the timeout")
    # A new worker takes the next invocation.
    assert invoke(lam, "sleepy", {"after": 1})[1]["echo"] == {"after": 1}


def test_worker_crash_is_an_exit_error(lam):
    create(lam, "crashy")
    first = invoke(lam, "crashy", {})[1]["pid"]
    response, body = invoke(lam, "crashy", {"exit": 3})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError" and "exit status 3" in body["errorMessage"]
    assert invoke(lam, "crashy", {})[1]["pid"] != first


def test_import_error_is_reported(lam):
    create(lam, "missing", Handler="nothere.handler")
    response, body = invoke(lam, "missing", {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "nothere" in body["errorMessage"]


def test_event_and_dry_run(lam, tmp_path):
    source = "def handler(event, context):\n    open(event['path'], 'w').write('done')\n"
    create(lam, "async", source=source)
    target = tmp_path / "written"
    response = lam.invoke(FunctionName="async", InvocationType="Event", Payload=json.dumps({"path": str(target)}))
    assert response["StatusCode"] == 202
    for _ in range(200):
        if target.exists():
            break
        time.sleep(0.05)
    assert target.read_text() == "done"
    assert lam.invoke(FunctionName="async", InvocationType="DryRun")["StatusCode"] == 204
    assert error_code(lambda: lam.invoke(FunctionName="nope", InvocationType="DryRun")) == "ResourceNotFoundException"


def test_concurrent_invocations(start_firelake):
    server = start_firelake("--lambda-python", sys.executable, "--lambda-workers-max", "3")
    lam = server.client("lambda", **BOUNDED)
    create(lam, "parallel", source="import os, time\ndef handler(e, c):\n    time.sleep(0.3)\n    return [e['i'], os.getpid()]\n")
    results = {}

    def call(i):
        results[i] = invoke(server.client("lambda", **BOUNDED), "parallel", {"i": i})[1]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(9))
    assert all(results[i][0] == i for i in results)
    pids = {pid for _, pid in results.values()}
    assert 1 <= len(pids) <= 3


def test_functions_survive_a_restart(start_firelake, tmp_path):
    data = tmp_path / "persist"
    server = start_firelake("--lambda-python", sys.executable, data_dir=data)
    lam = server.client("lambda", **BOUNDED)
    created = create(lam, "durable", Environment={"Variables": {"STAGE": "kept"}})
    assert invoke(lam, "durable", {})[1]["stage"] == "kept"
    assert server.stop() == 0
    server = start_firelake("--lambda-python", sys.executable, data_dir=data)
    lam = server.client("lambda", **BOUNDED)
    again = lam.get_function_configuration(FunctionName="durable")
    assert again["CodeSha256"] == created["CodeSha256"] and again["RevisionId"] == created["RevisionId"]
    body = invoke(lam, "durable", {"x": 1})[1]
    assert body["echo"] == {"x": 1} and body["stage"] == "kept"


def test_python_handler_writes_to_s3_with_boto3(lam):
    source = """
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=event["bucket"])
    s3.put_object(Bucket=event["bucket"], Key="from-lambda.txt", Body=b"written by " + context.function_name.encode())
    return "ok"
"""
    create(lam, "writer", source=source, Timeout=30, MemorySize=256)
    response, body = invoke(lam, "writer", {"bucket": "lambda-out"})
    assert "FunctionError" not in response, body
    endpoint = lam.meta.endpoint_url
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    assert s3.get_object(Bucket="lambda-out", Key="from-lambda.txt")["Body"].read() == b"written by writer"


def test_node_function(lam):
    source = """
exports.handler = async (event, context) => {
  console.log("node saw", JSON.stringify(event));
  if (event.fail) throw new TypeError("node failed");
  return { sum: event.a + event.b, name: context.functionName, left: context.getRemainingTimeInMillis() > 0 };
};
"""
    lam.create_function(FunctionName="node-fn", Runtime="nodejs20.x", Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": zip_of({"index.js": source})})
    response, body = invoke(lam, "node-fn", {"a": 2, "b": 3}, LogType="Tail")
    assert "FunctionError" not in response, body
    assert body == {"sum": 5, "name": "node-fn", "left": True}
    assert 'node saw {"a":2,"b":3}' in base64.b64decode(response["LogResult"]).decode()
    response, body = invoke(lam, "node-fn", {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TypeError" and body["errorMessage"] == "node failed"


def test_provided_runtime_shell_bootstrap(lam):
    bootstrap = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  ID="$(grep -i '^lambda-runtime-aws-request-id:' "$HEADERS" | cut -d' ' -f2 | tr -d '\\r\\n')"
  echo "shell got $EVENT"
  curl -sS -X POST "$API/invocation/$ID/response" -d "{\\"handler\\": \\"$_HANDLER\\", \\"event\\": $EVENT}" > /dev/null
  rm -f "$HEADERS"
done
"""
    lam.create_function(FunctionName="shell", Runtime="provided.al2023", Role=ROLE, Handler="function.handler",
                        Code={"ZipFile": zip_of({"bootstrap": bootstrap}, {"bootstrap": 0o755})})
    response, body = invoke(lam, "shell", {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in response, body
    assert body == {"handler": "function.handler", "event": {"k": "v"}}
    assert 'shell got {"k": "v"}' in base64.b64decode(response["LogResult"]).decode()
    # A zip without a bootstrap: AWS's Runtime.InvalidEntrypoint.
    lam.create_function(FunctionName="no-bootstrap", Runtime="provided.al2023", Role=ROLE, Handler="x",
                        Code={"ZipFile": zip_of({"other": "x"})})
    response, body = invoke(lam, "no-bootstrap", {})
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"


def test_bad_requests_get_aws_errors(lam):
    assert error_code(lambda: create(lam, "r", Runtime="java21")) == "InvalidParameterValueException"
    assert error_code(lambda: create(lam, "r", Timeout=901)) == "ValidationException"
    assert error_code(lambda: create(lam, "r", Environment={"Variables": {"AWS_REGION": "x"}})) == "InvalidParameterValueException"
    assert error_code(lambda: lam.create_function(FunctionName="r", Runtime="python3.12", Role=ROLE, Handler="a.b",
                                                  Code={"ZipFile": b"not a zip"})) == "InvalidParameterValueException"
    escaping = zip_of({"../escape.py": "x = 1\n"})
    assert error_code(lambda: lam.create_function(FunctionName="r", Runtime="python3.12", Role=ROLE, Handler="a.b",
                                                  Code={"ZipFile": escaping})) == "InvalidParameterValueException"
    assert error_code(lambda: lam.create_function(FunctionName="r", Runtime="python3.12", Role=ROLE, Handler="a.b",
                                                  Code={"S3Bucket": "no-such-bucket", "S3Key": "k.zip"})) == "InvalidParameterValueException"
    assert error_code(lambda: lam.create_function(FunctionName="r", Runtime="python3.12", Role=ROLE, Handler="a.b",
                                                  Code={"ZipFile": zip_of({"a.py": ""})}, Layers=["arn:aws:lambda:us-east-1:000000000000:layer:l:1"])) == "InvalidParameterValueException"
    create(lam, "ok")
    big = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    assert error_code(lambda: lam.invoke(FunctionName="ok", Payload=big)) == "RequestTooLargeException"
    assert error_code(lambda: lam.invoke(FunctionName="ok", Payload=b"{not json")) == "InvalidRequestContentException"
    assert error_code(lambda: lam.invoke(FunctionName="ok", Qualifier="7")) == "ResourceNotFoundException"
    assert error_code(lambda: lam.create_alias(FunctionName="ok", Name="prod", FunctionVersion="1")) == "NotImplemented"
    assert error_code(lambda: lam.publish_version(FunctionName="ok")) == "NotImplemented"
    # Nothing half-made is left by the refused requests.
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["ok"]


def test_code_from_firelake_s3(lam):
    endpoint = lam.meta.endpoint_url
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="code")
    s3.put_object(Bucket="code", Key="fn.zip", Body=zip_of({"app.py": "def handler(e, c):\n    return 'from s3'\n"}))
    lam.create_function(FunctionName="s3code", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"S3Bucket": "code", "S3Key": "fn.zip"})
    assert invoke(lam, "s3code", {})[1] == "from s3"


def test_missing_runtime_names_what_to_install(start_firelake):
    server = start_firelake("--lambda-python", "/nonexistent/python3")
    lam = server.client("lambda", **BOUNDED)
    create(lam, "nopython")
    with pytest.raises(ClientError) as info:
        invoke(lam, "nopython", {})
    assert info.value.response["Error"]["Code"] == "InvalidRuntimeException"
    assert "apt-get install python3" in info.value.response["Error"]["Message"]


def test_code_is_refused_beyond_loopback_unless_allowed(start_firelake, tmp_path):
    server = start_firelake("--host", "0.0.0.0", data_dir=tmp_path / "a")
    lam = server.client("lambda", **BOUNDED)
    assert error_code(lambda: create(lam, "open")) == "AccessDeniedException"
    server = start_firelake("--host", "0.0.0.0", "--lambda-allow-code", "--lambda-python", sys.executable, data_dir=tmp_path / "b")
    lam = server.client("lambda", **BOUNDED)
    create(lam, "open")
    assert invoke(lam, "open", {"x": 1})[1]["echo"] == {"x": 1}


def test_strict_auth_verifies_lambda_requests(start_firelake):
    server = start_firelake("--auth", "strict", "--auth-keys", "AKIDLAMBDA:lambdasecret", "--lambda-python", sys.executable)
    assert error_code(lambda: server.client("lambda", "AKIDLAMBDA", "wrong", **BOUNDED).list_functions()) == "InvalidSignatureException"
    assert error_code(lambda: server.client("lambda", "NOBODY", "x", **BOUNDED).list_functions()) == "UnrecognizedClientException"
    lam = server.client("lambda", "AKIDLAMBDA", "lambdasecret", **BOUNDED)
    create(lam, "signed")
    assert invoke(lam, "signed", {"s": 1})[1]["echo"] == {"s": 1}
    # Function names that are ARNs are signed with their path encoded twice, as Lambda does.
    assert lam.get_function(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:signed")["Configuration"]["FunctionName"] == "signed"


def test_init_file_declares_functions(start_firelake, tmp_path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("import os\ndef handler(e, c):\n    return os.environ['GREETING']\n")
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"functions": [
        {"name": "greeter", "runtime": "python3.12", "handler": "app.handler", "code": "fn", "environment": {"GREETING": "hi"}},
    ]}))
    server = start_firelake("--init", str(init), "--lambda-python", sys.executable)
    lam = server.client("lambda", **BOUNDED)
    assert invoke(lam, "greeter", {})[1] == "hi"


def test_lambda_endpoint_forwards_unknown_functions(start_firelake, tmp_path):
    # Another firelake stands in for SAM local or LocalStack: it holds the function.
    remote = start_firelake("--lambda-python", sys.executable, data_dir=tmp_path / "remote")
    create(remote.client("lambda", **BOUNDED), "elsewhere")
    local = start_firelake("--lambda-endpoint", remote.endpoint, data_dir=tmp_path / "local")
    lam = local.client("lambda", **BOUNDED)
    response, body = invoke(lam, "elsewhere", {"via": "forward"})
    assert "FunctionError" not in response and body["echo"] == {"via": "forward"}
    response, body = invoke(lam, "elsewhere", {"raise": 1})
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "ValueError"
    assert error_code(lambda: invoke(lam, "nowhere", {})) == "ResourceNotFoundException"


def test_worker_environment_is_clean_and_memory_is_limited(start_firelake):
    server = start_firelake("--lambda-python", sys.executable, env={"FIRELAKE_SECRET_PROBE": "hidden", "SOME_TOKEN": "x"})
    lam = server.client("lambda", **BOUNDED)
    create(lam, "sandbox", Environment={"Variables": {"STAGE": "env"}})
    environment = invoke(lam, "sandbox", {"environment": True})[1]
    assert "FIRELAKE_SECRET_PROBE" not in environment and "SOME_TOKEN" not in environment
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "sandbox" and environment["STAGE"] == "env"
    assert environment["AWS_ENDPOINT_URL"] == server.endpoint
    assert environment["AWS_REGION"] == "us-east-1" and environment["_HANDLER"] == "app.handler"
    assert environment["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert environment["LAMBDA_TASK_ROOT"].startswith(str(server.data_dir))
    # 128 MB of MemorySize: a 2 GiB allocation fails inside the handler.
    response, body = invoke(lam, "sandbox", {"allocate_mb": 2048})
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "MemoryError"
    assert invoke(lam, "sandbox", {"allocate_mb": 16})[1] == 16 * 1024 * 1024
