# sqlctl on AWS: the controller on ECS Fargate and everything `--backend aws` uses.
#
#   ecr.tf        image repository
#   ecs.tf        cluster, task definition, service, log group, security group
#   store.tf      DynamoDB table (requests, decisions, policy, leader lease)
#   queues.tf     SQS approval request/response queues with dead-letter queues
#   athena.tf     Athena workgroup and the results bucket
#   secrets.tf    the Google Chat webhook secret
#   iam_task.tf   the controller's task role (exactly what the code calls) and execution role
#   iam_people.tf the requester and approver roles
#   alarms.tf     CloudWatch alarms
#
# tests/iam/check_policy.py (run by scripts/test) fails when the code calls an AWS action that
# iam_task.tf does not grant, or when iam_task.tf grants more.

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Names `sqlctl aws bootstrap --prefix NAME` uses for the same things.
  request_queue_name  = "${var.name}-approval-requests"
  response_queue_name = "${var.name}-approval-responses"
  results_bucket      = coalesce(var.results_bucket_name, "${var.name}-results-${local.account_id}-${var.region}")
  results_s3          = "s3://${local.results_bucket}/${var.results_prefix}"

  # The leader lease record the CLI reads to see whether a controller runs (store::CONTROLLER_LEASE).
  controller_lease = "sqlctl-controller"

  # Glue Data Catalog: the catalog, the allowed databases and their tables.
  glue_catalog_id = coalesce(var.glue_catalog_id, local.account_id)
  glue_arn_prefix = "arn:${local.partition}:glue:${var.region}:${local.glue_catalog_id}"
  glue_resources = concat(
    ["${local.glue_arn_prefix}:catalog"],
    [for d in var.glue_databases : "${local.glue_arn_prefix}:database/${d}"],
    [for d in var.glue_databases : "${local.glue_arn_prefix}:table/${d}/*"],
  )

  # Data locations: s3://bucket[/prefix/] -> bucket and prefix (without slashes at either end).
  data_locations = {
    for l in var.data_locations : l => {
      bucket = regex("^s3://([^/]+)", l)[0]
      prefix = trim(regex("^s3://[^/]+(.*)$", l)[0], "/")
    }
  }
  data_bucket_arns = distinct([for l in values(local.data_locations) : "arn:${local.partition}:s3:::${l.bucket}"])
  data_object_arns = distinct([
    for l in values(local.data_locations) :
    l.prefix == "" ? "arn:${local.partition}:s3:::${l.bucket}/*" : "arn:${local.partition}:s3:::${l.bucket}/${l.prefix}/*"
  ])

  # Bedrock: a foundation model id, a cross-region inference profile id (us./eu./apac./global.
  # prefix) or an ARN. A profile is granted with the foundation models it routes to in any
  # region, and those only through that profile (a condition in iam_task.tf).
  bedrock_region      = coalesce(var.bedrock_region, var.region)
  bedrock_is_arn      = startswith(var.bedrock_model_id, "arn:")
  bedrock_is_profile  = !local.bedrock_is_arn && can(regex("^(us|us-gov|eu|apac|ca|jp|au|global)\\.", var.bedrock_model_id))
  bedrock_base_model  = local.bedrock_is_profile ? regex("^[a-z-]+\\.(.+)$", var.bedrock_model_id)[0] : var.bedrock_model_id
  bedrock_profile_arn = "arn:${local.partition}:bedrock:${local.bedrock_region}:${local.account_id}:inference-profile/${var.bedrock_model_id}"
  bedrock_model_arns = (
    local.bedrock_is_arn ? [var.bedrock_model_id] :
    local.bedrock_is_profile ? [local.bedrock_profile_arn] :
    ["arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${var.bedrock_model_id}"]
  )
  bedrock_routed_model_arns = local.bedrock_is_profile ? ["arn:${local.partition}:bedrock:*::foundation-model/${local.bedrock_base_model}"] : []

  # The chat webhook secret (known at plan time whether there is one: for_each needs that).
  webhook_enabled    = var.create_webhook_secret || var.webhook_secret_arn != null
  webhook_secret_arn = var.create_webhook_secret ? aws_secretsmanager_secret.webhook[0].arn : var.webhook_secret_arn

  image = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"

  # What `sqlctl controller` reads (src/config/mod.rs, src/config/generator.rs). The same
  # values point a CLI at this deployment: see the `cli_environment` output.
  cli_environment = {
    SQLCTL_BACKEND            = "aws"
    AWS_REGION                = var.region
    SQLCTL_TABLE              = aws_dynamodb_table.this.name
    SQLCTL_REQUEST_QUEUE_URL  = aws_sqs_queue.requests.url
    SQLCTL_RESPONSE_QUEUE_URL = aws_sqs_queue.responses.url
    SQLCTL_ATHENA_WORKGROUP   = aws_athena_workgroup.this.name
    SQLCTL_RESULTS_S3         = local.results_s3
  }
  controller_environment = merge(
    local.cli_environment,
    {
      SQLCTL_GENERATOR     = "bedrock"
      SQLCTL_BEDROCK_MODEL = var.bedrock_model_id
      SQLCTL_RETENTION     = var.retention
      SQLCTL_LOG_FORMAT    = "json"
      SQLCTL_METRICS_ADDR  = "0.0.0.0:${var.metrics_port}"
    },
    var.glue_catalog_id == null ? {} : { SQLCTL_GLUE_CATALOG_ID = var.glue_catalog_id },
    var.bedrock_region == null ? {} : { SQLCTL_BEDROCK_REGION = var.bedrock_region },
    local.webhook_enabled ? { SQLCTL_GCHAT_WEBHOOK_SECRET_ARN = local.webhook_secret_arn } : {},
    # Decision senders: sessions of the approver role (its unique id AROA... to its ARN; any
    # other role's sessions are refused), plus the IAM users mapped in var.sqs_senders.
    { SQLCTL_SQS_SENDERS = join(",", concat(["${aws_iam_role.approver.unique_id}=${aws_iam_role.approver.arn}"], [for id, who in var.sqs_senders : "${id}=${who}"])) },
    length(var.sqs_trusted_relays) == 0 ? {} : { SQLCTL_SQS_TRUSTED_RELAYS = join(",", var.sqs_trusted_relays) },
    var.controller_extra_environment,
  )
  controller_command = concat(
    ["controller", "--metrics-emf"],
    var.four_eyes ? ["--four-eyes"] : [],
    var.approval_timeout == null ? [] : ["--approval-timeout", var.approval_timeout],
    var.controller_extra_args,
  )
}
