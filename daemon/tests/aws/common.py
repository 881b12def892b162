"""Shared by the AWS-client tests: clients pointed at the sluiced under test.

The Rust harness (daemon/tests/aws_clients.rs) starts sluiced and sets SLUICE_ENDPOINT.
"""
import json
import os
import subprocess
import sys
import uuid

import boto3
import botocore.exceptions

ENDPOINT = os.environ["SLUICE_ENDPOINT"]
AWS = os.path.join(os.path.dirname(sys.executable), "aws")


def aws(*args):
    """Runs the AWS CLI (v1, from this venv) against ENDPOINT; its JSON output, parsed."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    done = subprocess.run([AWS, "--endpoint-url", ENDPOINT, "--output", "json", *args], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def client(service, **options):
    """`options` go to boto3.client as well (`verify=`, `config=`)."""
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        **options,
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Expect:
    """`with Expect(self, "Code", status):` — the call fails with that error code and HTTP status."""

    def __init__(self, case, code, status=None):
        self.case, self.code, self.status = case, code, status
        self.error = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        self.case.assertIsNotNone(error, f"expected {self.code}, the call succeeded")
        self.case.assertIsInstance(error, botocore.exceptions.ClientError, f"expected {self.code}, got {error!r}")
        self.error = error
        response = error.response
        self.case.assertEqual(response["Error"]["Code"], self.code, response)
        if self.status is not None:
            self.case.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], self.status, response)
        self.case.assertTrue(response["ResponseMetadata"].get("RequestId"), f"no request id: {response}")
        return True
