#!/usr/bin/env bash
# Creates the Python virtualenvs the AWS-client tests run in, under DIR:
#   DIR/current — today's boto3 and AWS CLI v1 (SQS over AWS JSON 1.0), from requirements.txt
#   DIR/query   — a boto3 of mid-2023 whose SQS model still speaks the Query protocol
#   DIR/moto    — moto's S3 server (moto_server), the object store Firehose tests deliver to
# Reuses them while the requirement files are unchanged (a stamp holds their checksum).
# Needs python3 with the venv module and access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:?usage: setup-venvs.sh DIR}"
stamp="$(cat "$here/requirements.txt" "$here/requirements-query.txt" "$here/requirements-moto.txt" "$0" | sha256sum | cut -c1-16)"
if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ]; then
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
for pair in "current:requirements.txt" "query:requirements-query.txt" "moto:requirements-moto.txt"; do
  name="${pair%%:*}"
  requirements="${pair#*:}"
  python3 -m venv "$dir/$name"
  "$dir/$name/bin/pip" install --quiet --disable-pip-version-check -r "$here/$requirements"
done
echo "$stamp" > "$dir/stamp"
