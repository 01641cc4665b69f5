# Alarms: messages piling up in a dead-letter queue, reconcile errors, a missing heartbeat and
# no leader. The controller publishes its metrics as CloudWatch embedded-metric-format log lines
# on stdout (`sqlctl controller --metrics-emf`, src/controller/emf.rs): CloudWatch Logs turns them
# into metrics in var.metrics_namespace with the one dimension Service = sqlctl, so no
# cloudwatch:PutMetricData grant is needed. Every process (leader and standby) emits Heartbeat
# once a minute; IsLeader is 1 on the process holding the lease.

locals {
  emf_dimensions = { Service = "sqlctl" }

  dead_letter_queues = {
    "approval-requests"  = aws_sqs_queue.requests_dlq.name
    "approval-responses" = aws_sqs_queue.responses_dlq.name
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = local.dead_letter_queues

  alarm_name          = "${var.name}-${each.key}-dlq-not-empty"
  alarm_description   = "Messages in ${each.value}: approval messages that could not be delivered or were refused (the reason is the sqlctl-dlq-reason message attribute). Inspect them, fix the cause, and redrive or delete them."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "reconcile_errors" {
  alarm_name          = "${var.name}-controller-errors"
  alarm_description   = "The sqlctl controller failed ${var.reconcile_error_threshold} or more reconciles in 5 minutes: look for error lines in the ${aws_cloudwatch_log_group.controller.name} log group."
  namespace           = var.metrics_namespace
  metric_name         = "ReconcileErrors"
  dimensions          = local.emf_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.reconcile_error_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# Missing data is breaching: a controller that died, hangs or cannot start emits nothing, and
# silence is exactly what these alarms are for.
resource "aws_cloudwatch_metric_alarm" "heartbeat_missing" {
  alarm_name          = "${var.name}-controller-heartbeat-missing"
  alarm_description   = "No sqlctl controller heartbeat for ${var.heartbeat_missing_minutes} minute(s): no controller process is running (or its logs do not reach CloudWatch). Check the ${aws_ecs_service.controller.name} service's tasks and the ${aws_cloudwatch_log_group.controller.name} log group."
  namespace           = var.metrics_namespace
  metric_name         = "Heartbeat"
  dimensions          = local.emf_dimensions
  statistic           = "SampleCount"
  period              = 60
  evaluation_periods  = var.heartbeat_missing_minutes
  datapoints_to_alarm = var.heartbeat_missing_minutes
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# Processes alive but none holds the leader lease (e.g. DynamoDB unreachable or denied): no
# request advances although the heartbeat alarm stays quiet.
resource "aws_cloudwatch_metric_alarm" "no_leader" {
  alarm_name          = "${var.name}-controller-no-leader"
  alarm_description   = "No sqlctl controller has held the leader lease for ${var.heartbeat_missing_minutes} minute(s), so no request advances: look for lease errors in the ${aws_cloudwatch_log_group.controller.name} log group."
  namespace           = var.metrics_namespace
  metric_name         = "IsLeader"
  dimensions          = local.emf_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.heartbeat_missing_minutes
  datapoints_to_alarm = var.heartbeat_missing_minutes
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}
