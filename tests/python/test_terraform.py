"""Real Terraform with the real AWS provider against a real firelake: `terraform apply` of
a bucket with the common `aws_s3_bucket_*` resources, then `terraform plan` must find no
drift (every setting reads back as applied), boto3 reads what Terraform wrote, and
`terraform destroy` removes it all.

Terraform cannot be installed from the registries this project may use, so this test
runs where the machine has it: `terraform` on PATH and the hashicorp/aws provider in a
filesystem mirror (`$FIRELAKE_TF_PLUGINS`, default `/opt/tf-plugins`, as on the machines
this project is built on). Elsewhere it is skipped, saying why; the provider version is
whichever the mirror holds (5.100.0 here)."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

PLUGINS = pathlib.Path(os.environ.get("FIRELAKE_TF_PLUGINS", "/opt/tf-plugins"))
PROVIDER = PLUGINS / "registry.terraform.io" / "hashicorp" / "aws"

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::tf-bucket", "arn:aws:s3:::tf-bucket/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }],
}

CONFIG = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "%(version)s" }
  }
}
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  endpoints {
    s3 = "%(endpoint)s"
  }
}
resource "aws_s3_bucket" "b" {
  bucket        = "tf-bucket"
  force_destroy = true
  tags          = { team = "data", env = "test" }
}
resource "aws_s3_bucket_versioning" "v" {
  bucket = aws_s3_bucket.b.id
  versioning_configuration { status = "Enabled" }
}
resource "aws_s3_bucket_lifecycle_configuration" "l" {
  bucket     = aws_s3_bucket.b.id
  depends_on = [aws_s3_bucket_versioning.v]
  rule {
    id     = "logs"
    status = "Enabled"
    filter { prefix = "logs/" }
    expiration { days = 30 }
    noncurrent_version_expiration { noncurrent_days = 7 }
    transition {
      days          = 10
      storage_class = "STANDARD_IA"
    }
  }
  rule {
    id     = "uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload { days_after_initiation = 2 }
  }
  rule {
    id     = "tagged"
    status = "Disabled"
    filter {
      and {
        prefix = "tmp/"
        tags   = { kind = "scratch" }
      }
    }
    expiration { days = 1 }
  }
}
resource "aws_s3_bucket_ownership_controls" "o" {
  bucket = aws_s3_bucket.b.id
  rule { object_ownership = "BucketOwnerPreferred" }
}
resource "aws_s3_bucket_public_access_block" "p" {
  bucket                  = aws_s3_bucket.b.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = false
}
resource "aws_s3_bucket_acl" "a" {
  bucket     = aws_s3_bucket.b.id
  acl        = "private"
  depends_on = [aws_s3_bucket_ownership_controls.o]
}
resource "aws_s3_bucket_policy" "pol" {
  bucket     = aws_s3_bucket.b.id
  policy     = jsonencode(%(policy)s)
  depends_on = [aws_s3_bucket_public_access_block.p]
}
resource "aws_s3_bucket_cors_configuration" "c" {
  bucket = aws_s3_bucket.b.id
  cors_rule {
    allowed_methods = ["GET", "PUT"]
    allowed_origins = ["https://example.com"]
    allowed_headers = ["*"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3000
  }
}
resource "aws_s3_bucket_server_side_encryption_configuration" "e" {
  bucket = aws_s3_bucket.b.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = "alias/firelake-test"
    }
    bucket_key_enabled = true
  }
}
resource "aws_s3_object" "obj" {
  bucket       = aws_s3_bucket.b.id
  key          = "logs/hello.txt"
  content      = "hello from terraform"
  content_type = "text/plain"
  tags         = { source = "tf" }
  depends_on   = [aws_s3_bucket_versioning.v, aws_s3_bucket_server_side_encryption_configuration.e]
}
"""


def provider_version():
    versions = sorted(p.name for p in PROVIDER.iterdir() if p.is_dir()) if PROVIDER.is_dir() else []
    return versions[-1] if versions else None


@pytest.fixture
def terraform(tmp_path, firelake):
    """Runs terraform in a folder holding the configuration for `firelake`."""
    version = provider_version()
    if shutil.which("terraform") is None or version is None:
        pytest.skip(f"needs terraform on PATH and the hashicorp/aws provider under {PLUGINS}")
    cli_config = tmp_path / "cli.tfrc"
    cli_config.write_text(
        'provider_installation {\n  filesystem_mirror {\n'
        f'    path    = "{PLUGINS}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n}}\n'
    )
    work = tmp_path / "tf"
    work.mkdir()
    (work / "main.tf").write_text(CONFIG % {"version": version, "endpoint": firelake.endpoint, "policy": json.dumps(POLICY)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(TF_CLI_CONFIG_FILE=str(cli_config), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1",
               TF_DATA_DIR=str(tmp_path / "tf-data"))

    def run(*args, check=True):
        done = subprocess.run(["terraform", *args, "-no-color", "-input=false"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            pytest.fail(f"terraform {args[0]} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    run("init")
    return run


def test_terraform_apply_then_plan_shows_no_drift(terraform, s3):
    terraform("apply", "-auto-approve")
    plan = terraform("plan", "-detailed-exitcode", check=False)
    # 0: no changes; 2: a difference (what was applied did not read back).
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-2000:]
    # What Terraform wrote, read with boto3.
    assert s3.get_bucket_versioning(Bucket="tf-bucket")["Status"] == "Enabled"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="tf-bucket")["Rules"]}
    assert sorted(rules) == ["logs", "tagged", "uploads"]
    assert rules["logs"]["Expiration"] == {"Days": 30} and rules["logs"]["Filter"] == {"Prefix": "logs/"}
    assert rules["tagged"]["Status"] == "Disabled"
    assert s3.get_bucket_ownership_controls(Bucket="tf-bucket")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerPreferred"}]
    block = s3.get_public_access_block(Bucket="tf-bucket")["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": False}
    assert json.loads(s3.get_bucket_policy(Bucket="tf-bucket")["Policy"]) == POLICY
    (cors,) = s3.get_bucket_cors(Bucket="tf-bucket")["CORSRules"]
    assert cors["AllowedOrigins"] == ["https://example.com"] and cors["MaxAgeSeconds"] == 3000
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="tf-bucket")["TagSet"]}
    assert tags == {"team": "data", "env": "test"}
    (sse,) = s3.get_bucket_encryption(Bucket="tf-bucket")["ServerSideEncryptionConfiguration"]["Rules"]
    assert sse == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/firelake-test"},
                   "BucketKeyEnabled": True}
    obj = s3.get_object(Bucket="tf-bucket", Key="logs/hello.txt")
    assert obj["ServerSideEncryption"] == "aws:kms" and obj["SSEKMSKeyId"] == "alias/firelake-test"
    assert obj["Body"].read() == b"hello from terraform" and obj["ContentType"] == "text/plain"
    assert 'rule-id="logs"' in obj["Expiration"]
    # Destroy removes the bucket with its versions (force_destroy).
    terraform("destroy", "-auto-approve")
    assert "tf-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
