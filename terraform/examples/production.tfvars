# A production deployment: private subnets in two zones, a hot standby, chat notifications and
# alarms to an SNS topic.
#
#   terraform -chdir=terraform apply -var-file=examples/production.tfvars

region    = "eu-west-1"
name      = "sqlctl"
image_tag = "0.1.0"

vpc_id     = "vpc-0123456789abcdef0"
subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

# Prometheus in the VPC scrapes /metrics on port 9090.
metrics_ingress_cidr_blocks = ["10.0.0.0/16"]

hot_standby      = true
task_cpu         = 512
task_memory      = 1024
four_eyes        = true
approval_timeout = "24h"
retention        = "90d"

# What requests may query: these Glue databases, stored under these S3 locations.
glue_databases = ["sales", "finance"]
data_locations = [
  "s3://example-data-lake/warehouse/sales/",
  "s3://example-data-lake/warehouse/finance/",
]

# A cross-region inference profile: the task role may invoke it, and the foundation model it
# routes to only through it.
bedrock_model_id = "eu.anthropic.claude-3-5-sonnet-20240620-v1:0"

bytes_scanned_cutoff    = 107374182400 # 100 GiB per query, whatever a request asks for
results_expiration_days = 30
log_retention_days      = 90

# Approvers are IAM users assuming the approver role with their own user name as session name.
requester_principal_arns = ["arn:aws:iam::123456789012:root"]
approver_principal_arns = [
  "arn:aws:iam::123456789012:user/alice",
  "arn:aws:iam::123456789012:user/bob",
]
requester_namespaces = ["growth", "finance"]

# A chat bot that authenticates people itself and posts their decisions to the response queue.
sqs_trusted_relays = ["AROAEXAMPLEBOTROLEID:approval-bot"]

alarm_actions = ["arn:aws:sns:eu-west-1:123456789012:sqlctl-alarms"]

tags = {
  team = "data-platform"
}
