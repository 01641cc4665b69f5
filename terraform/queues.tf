# Approvals over SQS (src/approval/sqs.rs), as `sqlctl aws bootstrap` creates them: the
# controller sends approval requests to NAME-approval-requests and reads decisions from
# NAME-approval-responses; each has a dead-letter queue NAME-...-dlq (a message moves there after
# max_receive_count receives; the controller also moves refused decisions there itself, with the
# reason as a message attribute). Encrypted with SQS-managed keys; TLS only.

locals {
  queues = {
    requests      = aws_sqs_queue.requests
    requests_dlq  = aws_sqs_queue.requests_dlq
    responses     = aws_sqs_queue.responses
    responses_dlq = aws_sqs_queue.responses_dlq
  }
}

resource "aws_sqs_queue" "requests_dlq" {
  name                      = "${local.request_queue_name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "requests" {
  name                       = local.request_queue_name
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.requests_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue" "responses_dlq" {
  name                      = "${local.response_queue_name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "responses" {
  name = local.response_queue_name
  # Long enough for the controller to write a decision record before the message reappears.
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.responses_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the matching source queue may use a dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "requests_dlq" {
  count = var.restrict_dlq_sources ? 1 : 0

  queue_url = aws_sqs_queue.requests_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.requests.arn]
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "responses_dlq" {
  count = var.restrict_dlq_sources ? 1 : 0

  queue_url = aws_sqs_queue.responses_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.responses.arn]
  })
}

data "aws_iam_policy_document" "queue_tls_only" {
  for_each = local.queues

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "tls_only" {
  for_each = local.queues

  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.queue_tls_only[each.key].json
}
