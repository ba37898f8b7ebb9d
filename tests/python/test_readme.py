"""The README's examples, run as written (with the test server's endpoint), so the README
cannot drift from the code."""
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

from conftest import BINARY, flush, streams_status

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
ENDPOINT = "http://127.0.0.1:4573"


def blocks(lang, containing):
    found = [code for kind, code in BLOCKS if kind == lang and containing in code]
    assert found, f"no {lang} block with {containing!r} in the README"
    return found


def test_python_examples(firelake):
    namespace = {}
    # The pytest example (it defines tests) runs in test_pytest_example.
    for code in [code for kind, code in BLOCKS if kind == "python" and "def test_" not in code]:
        exec(code.replace(ENDPOINT, firelake.endpoint), namespace)
    assert flush(firelake)[0] == 200
    s3 = firelake.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sd-vehicle-data")["Contents"]]
    assert "2026/11/27/21/fleet.txt" in keys
    delivered = [k for k in keys if "gps-delivery-stream-1-" in k]
    assert len(delivered) == 1
    assert s3.get_object(Bucket="sd-vehicle-data", Key=delivered[0])["Body"].read().startswith(b"939ed1d1 ")


def test_rust_example_is_the_tested_file():
    # tests/readme_rust.rs runs examples/quickstart.rs; the README must quote it whole.
    assert blocks("rust", "cargo run --example quickstart") == [(ROOT / "examples" / "quickstart.rs").read_text()]


def run_shell_block(code, firelake, cwd, skip=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{pathlib.Path(BINARY).parent}:{env['PATH']}"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    for line in code.splitlines():
        line = line.split("  #")[0].strip().replace(ENDPOINT, firelake.endpoint)
        if not line or line.startswith(skip):
            continue
        if line.startswith("export "):
            for assignment in shlex.split(line[len("export "):]):
                name, value = assignment.split("=", 1)
                env[name] = value
            continue
        line = line.replace("firelake-data/", f"{firelake.data_dir}/")
        result = subprocess.run(line, shell=True, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"


def test_aws_cli_example(firelake, tmp_path):
    # The step uploads its CSV from stdin, so it leaves no file in the reader's checkout.
    run_shell_block(blocks("sh", "aws s3 mb")[0], firelake, tmp_path)
    assert (firelake.data_dir / "sd-vehicle-data" / "raw" / "data.csv").read_text() == "vin,speed\n4FTEX4944AK844294,25\n"
    assert not (tmp_path / "data.csv").exists()


def test_flush_and_produce_examples(start_firelake):
    server = start_firelake("--init", str(ROOT / "fixtures" / "workshop.json"))
    # `firelake --buffer-interval-cap 5` starts a server: that line is what this test's server does.
    run_shell_block(blocks("sh", "firelake produce")[0], server, ROOT, skip=("firelake produce --stream gps-delivery-stream --records",))
    run_shell_block(blocks("sh", "_firelake/flush")[0], server, ROOT, skip=("firelake --buffer-interval-cap",))
    s3 = server.client("s3")
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="sd-vehicle-data")["Contents"]]
    assert s3.get_object(Bucket="sd-vehicle-data", Key=key)["Body"].read() == (ROOT / "fixtures" / "telematics.txt").read_bytes()
    # The second produce example reads AWS_ENDPOINT_URL.
    env_block = f"export AWS_ENDPOINT_URL={ENDPOINT}\n" + [l for l in blocks("sh", "firelake produce")[0].splitlines() if "--records" in l][0]
    run_shell_block(env_block, server, ROOT)
    assert streams_status(server)["gps-delivery-stream"]["buffered_records"] == 5000


def test_strict_auth_example(start_firelake, tmp_path):
    [code] = blocks("sh", "--auth strict")
    serve = code.splitlines()[0]
    assert serve.startswith("firelake --auth strict")
    server = start_firelake(*shlex.split(serve)[1:])
    run_shell_block(code, server, tmp_path, skip=("firelake ",))
    assert (server.data_dir / "guarded").is_dir()
    wrong = code.replace("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-example-secret", "AWS_SECRET_ACCESS_KEY=wrong").replace("mb s3://guarded", "ls")
    try:
        run_shell_block(wrong, server, tmp_path, skip=("firelake ",))
    except AssertionError as err:
        assert "SignatureDoesNotMatch" in str(err)
    else:
        raise AssertionError("a wrong secret was accepted")


def test_course_walkthrough_steps(firelake):
    # The README's steps for a new user, against this test's server; the server and the
    # venv lines are what the test harness already did.
    [code] = blocks("sh", "seed_scenario.py")
    code = code.replace(".venv/bin/python", sys.executable)
    run_shell_block(code, firelake, ROOT, skip=("cargo run", "python3 -m venv"))
    delivered = list((firelake.data_dir / "sd-vehicle-data").rglob("walkthrough-stream-1-*"))
    assert len(delivered) == 1, delivered


def test_pytest_example(pytester):
    # The README's pytest example, in a pytest session of its own with the installed plugin.
    [code] = [code for kind, code in BLOCKS if kind == "python" and "def test_" in code]
    pytester.makepyfile(test_fleet=code)
    result = pytester.runpytest_subprocess(f"--firelake-bin={BINARY}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


CI_TESTS = """
import os

import boto3


def test_the_job_reaches_its_firelake():
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ci-bucket")
    s3.put_object(Bucket="ci-bucket", Key="a.txt", Body=b"from CI")
    assert s3.get_object(Bucket="ci-bucket", Key="a.txt")["Body"].read() == b"from CI"
    assert os.environ["AWS_ENDPOINT_URL"].endswith(os.environ["FIRELAKE_PORT"])
"""


def test_ci_recipe(tmp_path):
    # The README's GitHub Actions job, step by step as a runner would (`bash -e`), with
    # the binary under test on PATH instead of its install step, and a free port instead
    # of 4573 (FIRELAKE_PORT and FIRELAKE_URL, which firelake reads).
    import socket

    import yaml

    [code] = blocks("yaml", "firelake healthcheck")
    job = yaml.safe_load(code)["jobs"]["test"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FIRELAKE_"))}
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{pathlib.Path(BINARY).parent}:{env['PATH']}"
    env.update({**job["env"], "FIRELAKE_PORT": port, "FIRELAKE_URL": f"http://127.0.0.1:{port}"})
    (tmp_path / "test_ci.py").write_text(CI_TESTS)
    ran = []
    started = None
    try:
        for step in job["steps"]:
            if "run" not in step or step["name"] == "Install firelake":
                continue
            script = "\n".join(l for l in step["run"].splitlines() if not l.startswith("pip install "))
            step_env = {**env, **{k: str(v).replace("4573", port) for k, v in step.get("env", {}).items()}}
            # Its own session, so that what it leaves running (firelake) can be stopped after.
            proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=step_env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out = proc.communicate(timeout=120)[0] if step["name"] != "Start firelake" else None
            if step["name"] == "Start firelake":
                started = proc
                proc.wait(timeout=60)
            assert proc.returncode == 0, f"step {step['name']!r} failed:\n{script}\n{out}"
            ran.append(step["name"])
    finally:
        if started is not None:
            try:
                os.killpg(started.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    assert ran == ["Start firelake", "Test", "firelake's log"]
    assert "firelake listening on" in (tmp_path / "firelake.log").read_text()
