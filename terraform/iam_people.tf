# Roles for people (and CI) using the sqlctl CLI with `--backend aws`.
#
# requester: create requests and read them (apply, ask, get, describe, wait, results).
# approver:  read requests and send decisions (approve, refine, reject) as messages to the
#            response queue. Only the controller writes decision records: it takes the decider
#            from the message's SenderId, which AWS sets and nobody can forge, and re-checks every
#            decision against the request and the policy. No person's role can write a DEC# item,
#            so no record can claim a decider its writer is not.
#
# DynamoDB fine-grained access limits both as far as the key schema allows (README.md, "What the
# people's roles can and cannot do"): partition keys by prefix (dynamodb:LeadingKeys) and the
# attributes a write may carry (dynamodb:Attributes).

locals {
  requester_request_keys = [for ns in var.requester_namespaces : "REQ#${ns}/*"]
  approver_request_keys  = [for ns in var.approver_namespaces : "REQ#${ns}/*"]

  # The attributes of a request item as `DynamoStore::create` writes it (src/store/dynamodb.rs,
  # request_item_mut + change_attrs): never `st` (status, the controller's alone) and never
  # `ttl`. tests/iam/check_policy.py compares these lists with the code.
  request_create_attributes = ["ak", "act", "ck", "cp", "doc", "fin", "gen", "lbl", "lk", "lp", "mt", "phase", "pk", "rv", "sh", "sk", "uid"]

  people_principals = {
    requester = var.requester_principal_arns
    approver  = var.approver_principal_arns
  }
}

data "aws_iam_policy_document" "people_assume" {
  for_each = local.people_principals

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = length(each.value) > 0 ? each.value : ["arn:${local.partition}:iam::${local.account_id}:root"]
    }

    # sqlctl names a decider after the role session (CLI: STS GetCallerIdentity; SQS: SenderId
    # AROA...:session): the session name must be the caller's own user name.
    dynamic "condition" {
      for_each = var.require_session_name_is_username ? ["username"] : []

      content {
        test     = "StringEquals"
        variable = "sts:RoleSessionName"
        values   = ["$${aws:username}"]
      }
    }
  }
}

# --- requester --------------------------------------------------------------------------------

resource "aws_iam_role" "requester" {
  name               = "${var.name}-requester"
  description        = "sqlctl requester: create and read QueryRequests"
  assume_role_policy = data.aws_iam_policy_document.people_assume["requester"].json
}

resource "aws_iam_role_policy" "requester" {
  name   = "sqlctl-requester"
  role   = aws_iam_role.requester.id
  policy = data.aws_iam_policy_document.requester.json
}

data "aws_iam_policy_document" "requester" {
  # Read requests of the allowed namespaces, and the leader lease (`ask` checks a controller runs).
  statement {
    sid = "ReadRequests"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:GetItem",
    ]
    resources = [aws_dynamodb_table.this.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = concat(local.requester_request_keys, ["LEASE#${local.controller_lease}"])
    }
  }

  # `get`: the list index (partition "REQ"; its entries carry key, phase and labels only).
  statement {
    sid       = "ListRequests"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.this.arn}/index/list"]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["REQ"]
    }
  }

  # Create requests: request partitions of the allowed namespaces, and only the attributes a new
  # request has. Without `st` a requester can never write a status (phase, generated SQL,
  # approval): that is the controller's alone.
  statement {
    sid       = "CreateRequests"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.this.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = local.requester_request_keys
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:Attributes"
      values   = local.request_create_attributes
    }
  }

  # `sqlctl results`: the result files (keyed by Athena query id, so all of them or none).
  dynamic "statement" {
    for_each = var.requester_can_read_results ? ["results"] : []

    content {
      sid       = "ReadResults"
      actions   = ["s3:GetObject"]
      resources = ["${aws_s3_bucket.results.arn}/${var.results_prefix}/*"]
    }
  }
}

# --- approver ---------------------------------------------------------------------------------

resource "aws_iam_role" "approver" {
  name               = "${var.name}-approver"
  description        = "sqlctl approver: read QueryRequests and send decisions to the controller over SQS"
  assume_role_policy = data.aws_iam_policy_document.people_assume["approver"].json
}

resource "aws_iam_role_policy" "approver" {
  name   = "sqlctl-approver"
  role   = aws_iam_role.approver.id
  policy = data.aws_iam_policy_document.approver.json
}

data "aws_iam_policy_document" "approver" {
  # Read requests and the approval policy record (the CLI checks a decision before sending it,
  # to refuse at once with the controller's reasons). Never decision records: nothing a person
  # does needs them.
  statement {
    sid = "ReadRequests"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:GetItem",
    ]
    resources = [aws_dynamodb_table.this.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = concat(local.approver_request_keys, ["POLICY"])
    }
  }

  statement {
    sid       = "ListRequests"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.this.arn}/index/list"]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["REQ"]
    }
  }

  # Decisions as messages, the only way a person decides on AWS: the controller takes the decider
  # from the message's SenderId (this role's unique id and the session name), which the sender
  # cannot forge, and writes the decision record itself.
  statement {
    sid       = "SendDecisions"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.responses.arn]
  }
}
