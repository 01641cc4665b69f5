output "ecr_repository_url" {
  description = "Push the sqlctl image here, tagged with image_tag."
  value       = aws_ecr_repository.this.repository_url
}

output "image" {
  description = "The image the controller runs."
  value       = local.image
}

output "cluster_name" {
  description = "ECS cluster of the controller."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service running `sqlctl controller`."
  value       = aws_ecs_service.controller.name
}

output "log_group_name" {
  description = "CloudWatch log group of the controller (JSON logs and EMF metric lines)."
  value       = aws_cloudwatch_log_group.controller.name
}

output "table_name" {
  description = "DynamoDB table (SQLCTL_TABLE)."
  value       = aws_dynamodb_table.this.name
}

output "request_queue_url" {
  description = "SQS queue approval requests are sent to (SQLCTL_REQUEST_QUEUE_URL): chat bots and other approval front ends read it."
  value       = aws_sqs_queue.requests.url
}

output "response_queue_url" {
  description = "SQS queue decisions are sent to (SQLCTL_RESPONSE_QUEUE_URL)."
  value       = aws_sqs_queue.responses.url
}

output "request_dlq_url" {
  description = "Dead-letter queue of the request queue."
  value       = aws_sqs_queue.requests_dlq.url
}

output "response_dlq_url" {
  description = "Dead-letter queue of the response queue (refused decisions, with the reason as the sqlctl-dlq-reason attribute)."
  value       = aws_sqs_queue.responses_dlq.url
}

output "athena_workgroup" {
  description = "Athena workgroup (SQLCTL_ATHENA_WORKGROUP)."
  value       = aws_athena_workgroup.this.name
}

output "results_bucket" {
  description = "S3 bucket of query results."
  value       = aws_s3_bucket.results.bucket
}

output "results_s3" {
  description = "Results location (SQLCTL_RESULTS_S3)."
  value       = local.results_s3
}

output "webhook_secret_arn" {
  description = "Secrets Manager secret of the Google Chat webhook URL (set its value with `aws secretsmanager put-secret-value`); null without chat notifications."
  value       = local.webhook_enabled ? local.webhook_secret_arn : null
}

output "task_role_arn" {
  description = "The controller's task role."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "The controller's task execution role (image pull, logs)."
  value       = aws_iam_role.execution.arn
}

output "requester_role_arn" {
  description = "Role for people and CI that create and read requests."
  value       = aws_iam_role.requester.arn
}

output "approver_role_arn" {
  description = "Role for approvers."
  value       = aws_iam_role.approver.arn
}

output "cli_environment" {
  description = "Environment that points the sqlctl CLI at this deployment (use with credentials for the requester or approver role)."
  value       = local.cli_environment
}

output "cli_exports" {
  description = "The same as shell export lines: eval \"$(terraform output -raw cli_exports)\"."
  value       = join("\n", [for k in sort(keys(local.cli_environment)) : "export ${k}=${local.cli_environment[k]}"])
}
