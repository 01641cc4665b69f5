# The store: one DynamoDB table, exactly as `DynamoStore::create_table` (src/store/dynamodb.rs)
# creates it for `sqlctl aws bootstrap`:
#
#   item      pk                          sk
#   request   REQ#<namespace>/<name>      META
#   decision  DEC#<request uid>           <decision id>
#   tombstone TOMB#<namespace>/<name>     <deleted resourceVersion>
#   lease     LEASE#<name>                META
#   policy    POLICY                      META
#
# Indexes: `active` (act/ak, keys only, sparse: records the controller still has to act on),
# `list` (lp = "REQ" / lk = namespace/name, projects phase and labels), `changes` (cp = minute
# bucket and shard / mt = write time in ms, projects rv and ck). Finished records, decisions and
# tombstones expire through TTL on `ttl`.

resource "aws_dynamodb_table" "this" {
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "act"
    type = "S"
  }

  attribute {
    name = "ak"
    type = "S"
  }

  attribute {
    name = "lp"
    type = "S"
  }

  attribute {
    name = "lk"
    type = "S"
  }

  attribute {
    name = "cp"
    type = "S"
  }

  attribute {
    name = "mt"
    type = "N"
  }

  global_secondary_index {
    name            = "active"
    hash_key        = "act"
    range_key       = "ak"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name               = "list"
    hash_key           = "lp"
    range_key          = "lk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["phase", "lbl"]
  }

  global_secondary_index {
    name               = "changes"
    hash_key           = "cp"
    range_key          = "mt"
    projection_type    = "INCLUDE"
    non_key_attributes = ["rv", "ck"]
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  # Restore to any second of the last 35 days (the audit trail lives in these items).
  point_in_time_recovery {
    enabled = true
  }

  # Encrypted with the AWS managed key aws/dynamodb: no key policy or kms: grants to manage.
  server_side_encryption {
    enabled = true
  }
}
