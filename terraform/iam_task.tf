# The controller's roles.
#
# The task role grants exactly the AWS actions the code calls, on exactly this module's
# resources (plus the Glue databases, data locations and Bedrock model given as variables), and
# what Athena needs to read the data and write results as the caller. tests/iam/check_policy.py
# derives the actions from the Rust sources and fails on any missing or extra grant, and on any
# `*` action or resource. Actions only `sqlctl aws bootstrap` calls (CreateTable, CreateQueue,
# CreateBucket, CreateWorkGroup, Glue CreateDatabase/CreateTable/UpdateTable, ...) are not here:
# Terraform creates those resources.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:*"]
    }
  }
}

# --- task role: what `sqlctl controller` calls ------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${var.name}-controller-task"
  description        = "sqlctl controller: exactly the AWS calls the controller makes"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "task" {
  name   = "sqlctl-controller"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

data "aws_iam_policy_document" "task" {
  # src/store/dynamodb.rs: GetItem (requests, lease, policy, a decision after a lost create),
  # PutItem (every conditional write), UpdateItem (lease renewal), BatchGetItem (list bodies),
  # and the items of its TransactWriteItems: ConditionCheck on the lease (fencing), Put, and
  # Delete (a finalized request, with its tombstone Put).
  statement {
    sid = "StoreItems"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DeleteItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.this.arn]
  }

  # Query: decisions of a uid (base table), and the active, list and changes indexes.
  statement {
    sid     = "StoreQueries"
    actions = ["dynamodb:Query"]
    resources = [
      aws_dynamodb_table.this.arn,
      "${aws_dynamodb_table.this.arn}/index/active",
      "${aws_dynamodb_table.this.arn}/index/list",
      "${aws_dynamodb_table.this.arn}/index/changes",
    ]
  }

  # src/approval/sqs.rs: approval requests and Finished notices out; refused decisions moved
  # to the response queue's dead-letter queue.
  statement {
    sid       = "SendApprovalRequests"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.requests.arn, aws_sqs_queue.responses_dlq.arn]
  }

  # Decisions in: long-poll, delete after the decision record is written, and read the
  # redrive policy to find the dead-letter queue.
  statement {
    sid = "ConsumeDecisions"
    actions = [
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ReceiveMessage",
    ]
    resources = [aws_sqs_queue.responses.arn]
  }

  statement {
    sid       = "FindDeadLetterQueue"
    actions   = ["sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.responses_dlq.arn]
  }

  # src/engine/athena.rs: run (and EXPLAIN), poll, preview, count rows from the runtime
  # statistics, cancel — in this workgroup only.
  statement {
    sid = "RunApprovedQueries"
    actions = [
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetQueryRuntimeStatistics",
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
    ]
    resources = [aws_athena_workgroup.this.arn]
  }

  # src/catalog/glue.rs reads schemas (GetDatabases, GetTables); Athena reads databases, tables
  # and partitions as the caller. Exactly the listed databases.
  statement {
    sid = "ReadCatalog"
    actions = [
      "glue:BatchGetPartition",
      "glue:GetDatabase",
      "glue:GetDatabases",
      "glue:GetPartition",
      "glue:GetPartitions",
      "glue:GetTable",
      "glue:GetTables",
    ]
    resources = local.glue_resources
  }

  # Results: Athena writes them as the caller (multipart for large ones); src/engine/athena.rs
  # reads them (GetObject); the local engine's S3 results (src/engine/datafusion.rs) upload and
  # read under the same prefix.
  statement {
    sid = "ResultObjects"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${aws_s3_bucket.results.arn}/${var.results_prefix}/*"]
  }

  statement {
    sid = "ResultsBucket"
    actions = [
      "s3:GetBucketLocation",
      "s3:ListBucket",
      "s3:ListBucketMultipartUploads",
    ]
    resources = [aws_s3_bucket.results.arn]
  }

  # The tables' data, read by Athena as the caller: read-only, exactly data_locations.
  statement {
    sid       = "ReadData"
    actions   = ["s3:GetObject"]
    resources = local.data_object_arns
  }

  statement {
    sid       = "LocateDataBuckets"
    actions   = ["s3:GetBucketLocation"]
    resources = local.data_bucket_arns
  }

  dynamic "statement" {
    for_each = local.data_locations

    content {
      sid       = "ListData${index(var.data_locations, statement.key)}"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${statement.value.bucket}"]

      dynamic "condition" {
        for_each = statement.value.prefix == "" ? [] : [statement.value.prefix]

        content {
          test     = "StringLike"
          variable = "s3:prefix"
          values   = [condition.value, "${condition.value}/*"]
        }
      }
    }
  }

  # src/generate/bedrock.rs: Converse, which IAM authorizes as bedrock:InvokeModel, on the
  # configured model (or inference profile) only.
  statement {
    sid       = "GenerateSql"
    actions   = ["bedrock:InvokeModel"]
    resources = local.bedrock_model_arns
  }

  dynamic "statement" {
    for_each = local.bedrock_is_profile ? ["profile"] : []

    content {
      sid       = "GenerateSqlThroughProfile"
      actions   = ["bedrock:InvokeModel"]
      resources = local.bedrock_routed_model_arns

      condition {
        test     = "StringEquals"
        variable = "bedrock:InferenceProfileArn"
        values   = [local.bedrock_profile_arn]
      }
    }
  }

  # The Google Chat webhook URL (SQLCTL_GCHAT_WEBHOOK_SECRET_ARN).
  dynamic "statement" {
    for_each = local.webhook_enabled ? ["webhook"] : []

    content {
      sid       = "ReadWebhookSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [local.webhook_secret_arn]
    }
  }
}

# --- execution role: what ECS itself needs to start the task ----------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-controller-execution"
  description        = "ECS pulls the sqlctl image and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "execution" {
  name   = "sqlctl-controller-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

data "aws_iam_policy_document" "execution" {
  # AWS authorizes GetAuthorizationToken only on "*".
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PullImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid = "WriteLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = ["${aws_cloudwatch_log_group.controller.arn}:log-stream:*"]
  }
}
