#!/usr/bin/env bash
# Applies terraform/ against moto and checks that sqlctl works with what it created:
#
#   1. `terraform apply` of the module (AWS provider pointed at a moto server) with a test
#      variables file, so every resource is really created by the provider, not only validated;
#   2. `sqlctl aws bootstrap` against the same account finds the table, queues, bucket and
#      workgroup by the names Terraform gave them (same URLs and names in its JSON output);
#   3. the DynamoDB table equals the one `DynamoStore::create_table` makes (`bootstrap --prefix
#      ref`): key schema, attribute definitions, indexes with their keys and projections, TTL;
#   4. `sqlctl apply` and `sqlctl get` work on the Terraform-created table;
#   5. `terraform destroy`.
#
# Needs terraform, the AWS provider in a local directory (TF_PLUGIN_DIR, default
# /opt/tf-plugins; nothing is downloaded), moto's virtualenv (target/moto-venv, as scripts/test
# makes it) and a sqlctl built with `--features aws` (SQLCTL_BIN, default target/debug/sqlctl). Takes about two
# minutes, most of it the provider waiting for moto's S3 and SQS to report settled attributes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

py=${MOTO_PY:-$root/target/moto-venv/bin/python}
sqlctl=${SQLCTL_BIN:-$root/target/debug/sqlctl}
plugins=${TF_PLUGIN_DIR:-/opt/tf-plugins}
fail() { echo "terraform_moto: $*" >&2; exit 1; }
command -v terraform >/dev/null || fail "terraform is not on PATH"
[ -d "$plugins/registry.terraform.io/hashicorp/aws" ] || fail "no AWS provider under $plugins (set TF_PLUGIN_DIR)"
[ -x "$py" ] && "$py" -c 'import moto.server, boto3' 2>/dev/null || fail "no moto in $py (run scripts/test once, or set MOTO_PY)"
[ -x "$sqlctl" ] || fail "no sqlctl binary at $sqlctl (cargo build --features aws, or set SQLCTL_BIN)"
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then export TF_CLI_CONFIG_FILE=/dev/null; fi

work=$(mktemp -d)
moto_pid=""
cleanup() {
    if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$py" -m moto.server -H 127.0.0.1 -p 0 >"$work/moto.log" 2>&1 &
moto_pid=$!
url=""
for _ in $(seq 1 200); do
    url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/moto.log" | head -n1 || true)
    [ -n "$url" ] && break
    kill -0 "$moto_pid" 2>/dev/null || { cat "$work/moto.log" >&2; fail "moto exited"; }
    sleep 0.1
done
[ -n "$url" ] || fail "moto did not start"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1

mkdir "$work/tf"
cp terraform/*.tf "$work/tf/"
cat >"$work/tf/moto_override.tf" <<EOF
provider "aws" {
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true

  endpoints {
    athena         = "$url"
    cloudwatch     = "$url"
    cloudwatchlogs = "$url"
    dynamodb       = "$url"
    ec2            = "$url"
    ecr            = "$url"
    ecs            = "$url"
    iam            = "$url"
    s3             = "$url"
    secretsmanager = "$url"
    sqs            = "$url"
    sts            = "$url"
  }
}
EOF
read -r vpc subnet1 subnet2 < <("$py" - "$url" <<'EOF'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1])
subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
print(ec2.describe_vpcs()["Vpcs"][0]["VpcId"], subnets[0], subnets[1])
EOF
)
cat >"$work/test.tfvars" <<EOF
region                      = "eu-west-1"
vpc_id                      = "$vpc"
subnet_ids                  = ["$subnet1", "$subnet2"]
image_tag                   = "v0.1.0"
glue_databases              = ["sales", "tpch"]
data_locations              = ["s3://example-lake/sales/", "s3://example-lake-2"]
bedrock_model_id            = "eu.anthropic.claude-3-5-sonnet-20240620-v1:0"
hot_standby                 = true
metrics_ingress_cidr_blocks = ["10.0.0.0/16"]
force_destroy               = true
deletion_protection         = false
restrict_dlq_sources        = false # moto does not report RedriveAllowPolicy back
EOF

tf() { terraform -chdir="$work/tf" "$@"; }
echo "terraform_moto: terraform apply against moto at $url" >&2
tf init -backend=false -input=false -no-color -plugin-dir="$(cd "$plugins" && pwd)" >/dev/null
tf apply -auto-approve -input=false -no-color -var-file="$work/test.tfvars" >"$work/apply.log" 2>&1 \
    || { tail -n 40 "$work/apply.log" >&2; fail "terraform apply failed"; }
grep -E '^Apply complete' "$work/apply.log" >&2
tf output -json >"$work/outputs.json"

eval "$(tf output -raw cli_exports)"
export AWS_ENDPOINT_URL=$url
echo "terraform_moto: sqlctl aws bootstrap finds what Terraform created" >&2
"$sqlctl" aws bootstrap -o json >"$work/bootstrap.json" 2>"$work/bootstrap.err" \
    || { cat "$work/bootstrap.err" >&2; fail "sqlctl aws bootstrap failed"; }
grep -q "dynamodb table sqlctl: exists" "$work/bootstrap.err" || { cat "$work/bootstrap.err" >&2; fail "bootstrap did not find the table"; }
"$sqlctl" aws bootstrap --prefix ref -o json >/dev/null 2>"$work/ref.err" \
    || { cat "$work/ref.err" >&2; fail "sqlctl aws bootstrap --prefix ref failed"; }

"$py" - "$url" "$work/outputs.json" "$work/bootstrap.json" <<'EOF'
import json, sys, boto3
url, outputs, boot = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
out = {k: v["value"] for k, v in outputs.items()}
problems = []
for tf_key, boot_key in [("table_name", "table"), ("request_queue_url", "requestQueueUrl"),
                         ("request_dlq_url", "requestDlqUrl"), ("response_queue_url", "responseQueueUrl"),
                         ("response_dlq_url", "responseDlqUrl"), ("results_bucket", "bucket"),
                         ("results_s3", "resultsS3"), ("athena_workgroup", "workgroup")]:
    if out[tf_key] != boot[boot_key]:
        problems.append(f"{tf_key}: terraform {out[tf_key]!r} but bootstrap {boot[boot_key]!r}")
ddb = boto3.client("dynamodb", endpoint_url=url)
def shape(name):
    t = ddb.describe_table(TableName=name)["Table"]
    return {
        "keys": t["KeySchema"],
        "attributes": sorted(t["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "indexes": sorted(
            (g["IndexName"], json.dumps(g["KeySchema"]), g["Projection"]["ProjectionType"],
             sorted(g["Projection"].get("NonKeyAttributes", [])))
            for g in t["GlobalSecondaryIndexes"]),
        "ttl": ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"].get("AttributeName"),
    }
tf_shape, ref_shape = shape(out["table_name"]), shape("ref")
for k in tf_shape:
    if tf_shape[k] != ref_shape[k]:
        problems.append(f"table {k}: terraform {tf_shape[k]} but DynamoStore::create_table {ref_shape[k]}")
pitr = ddb.describe_continuous_backups(TableName=out["table_name"])["ContinuousBackupsDescription"]
if pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] != "ENABLED":
    problems.append("point-in-time recovery is not enabled")
if problems:
    sys.exit("terraform_moto: FAILED:\n  " + "\n  ".join(problems))
print("terraform_moto: names and the table schema match sqlctl's", file=sys.stderr)
EOF

echo "terraform_moto: sqlctl apply and get on the Terraform-created table" >&2
"$sqlctl" apply -f specs/top-customers.yaml
"$sqlctl" get | tee "$work/get.txt"
grep -q '^top-customers ' "$work/get.txt" || fail "the applied request is not listed"

tf destroy -auto-approve -input=false -no-color -var-file="$work/test.tfvars" >"$work/destroy.log" 2>&1 \
    || { tail -n 40 "$work/destroy.log" >&2; fail "terraform destroy failed"; }
grep -E '^Destroy complete' "$work/destroy.log" >&2
echo "terraform_moto: passed" >&2
