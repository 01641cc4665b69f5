# Inputs. Defaults give the names `sqlctl aws bootstrap` uses (table `sqlctl`, queues
# `sqlctl-approval-requests` / `sqlctl-approval-responses` with `-dlq`, workgroup `sqlctl`,
# bucket `sqlctl-results-<account>-<region>`), so a CLI configured for one finds the other.

# --- where ------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region everything is created in (the controller's AWS_REGION)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as eu-west-1."
  }
}

variable "name" {
  description = "Name (and prefix) of everything created: the DynamoDB table, the ECS cluster/service, the Athena workgroup, queues NAME-approval-requests / NAME-approval-responses (+ -dlq), the bucket NAME-results-ACCOUNT-REGION. Keep the default `sqlctl` to match the CLI's defaults."
  type        = string
  default     = "sqlctl"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,26}$", var.name))
    error_message = "name must be 1-27 characters of lower-case letters, digits and -, starting with a letter or digit (the results bucket name NAME-results-ACCOUNT-REGION must fit S3's 63)."
  }
}

variable "tags" {
  description = "Extra tags for every resource (the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- network ----------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the controller's tasks."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets of the controller's tasks (private subnets with a NAT gateway or VPC endpoints for DynamoDB, SQS, S3, Athena, Glue, Bedrock, Secrets Manager, ECR and CloudWatch Logs; the Google Chat webhook needs the internet). Two or more in different availability zones let the standby run in another zone."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must list at least one subnet id (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT; private subnets are the recommended setup)."
  type        = bool
  default     = false
}

variable "metrics_ingress_cidr_blocks" {
  description = "CIDR blocks allowed to reach /healthz, /readyz and /metrics on the metrics port (e.g. a Prometheus scraper in the VPC). Empty: no inbound traffic at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.metrics_ingress_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "metrics_ingress_cidr_blocks must be CIDR blocks, and not 0.0.0.0/0: never publish the metrics port beyond the VPC."
  }
}

# --- the controller ---------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the sqlctl image in this module's ECR repository (the repository is immutable: use a version or a git sha, never `latest`)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid, immutable image tag (not `latest`)."
  }
}

variable "hot_standby" {
  description = "Run a second task as a hot standby: it waits on the leader lease in DynamoDB and takes over within one lease period (15 s) when the leader dies. Off: one task, and ECS replaces a dead leader (about a minute)."
  type        = bool
  default     = false
}

variable "task_cpu" {
  description = "Fargate CPU units of a task (256 = 0.25 vCPU). The controller waits on AWS APIs far more than it computes."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "task_memory" {
  description = "Fargate memory of a task in MiB (must be a valid combination with task_cpu)."
  type        = number
  default     = 1024

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 30720 && var.task_memory % 512 == 0
    error_message = "task_memory must be a multiple of 512 MiB between 512 and 30720 (and valid for task_cpu)."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64 (Graviton; build the image for linux/arm64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "stop_timeout_seconds" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL. The controller drains in-flight reconciles for up to 25 s, then releases the leader lease, so this must be at least 30."
  type        = number
  default     = 35

  validation {
    condition     = var.stop_timeout_seconds >= 30 && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds must be between 30 (the 25 s drain plus the lease release) and 120 (Fargate's maximum)."
  }
}

variable "metrics_port" {
  description = "Port of /healthz, /readyz and /metrics in the container (SQLCTL_METRICS_ADDR)."
  type        = number
  default     = 9090

  validation {
    condition     = var.metrics_port >= 1024 && var.metrics_port <= 65535
    error_message = "metrics_port must be an unprivileged port (1024-65535): the image runs as a non-root user."
  }
}

variable "four_eyes" {
  description = "Four-eyes: a requester may not approve their own request (`sqlctl controller --four-eyes`)."
  type        = bool
  default     = true
}

variable "approval_timeout" {
  description = "Default and maximum approval wait, e.g. 24h or 30m (specs may only shorten it). null: the controller's default (24h)."
  type        = string
  default     = null

  validation {
    condition     = var.approval_timeout == null || can(regex("^([0-9]+(ms|s|m|h|d))+$", var.approval_timeout))
    error_message = "approval_timeout must be a duration such as 30m, 24h, 1h30m or 7d."
  }
}

variable "retention" {
  description = "How long finished requests stay in DynamoDB before its TTL removes them (SQLCTL_RETENTION), e.g. 30d."
  type        = string
  default     = "30d"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h|d))+$", var.retention))
    error_message = "retention must be a duration such as 30d."
  }
}

variable "controller_extra_args" {
  description = "Extra arguments for `sqlctl controller` (e.g. [\"--workers\", \"16\"])."
  type        = list(string)
  default     = []
}

variable "controller_extra_environment" {
  description = "Extra environment variables of the controller container (no secrets: use the webhook secret for those)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.controller_extra_environment) : can(regex("^[A-Z_][A-Z0-9_]*$", k))])
    error_message = "controller_extra_environment keys must be environment variable names (A-Z, 0-9, _)."
  }
}

variable "log_retention_days" {
  description = "Retention of the controller's CloudWatch log group, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs supports (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "ecr_keep_images" {
  description = "Tagged images kept in the ECR repository (older ones expire; untagged ones after 7 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000
    error_message = "ecr_keep_images must be between 1 and 1000."
  }
}

variable "container_insights" {
  description = "Enable CloudWatch Container Insights on the ECS cluster (extra CloudWatch cost)."
  type        = bool
  default     = false
}

# --- data the controller may read -------------------------------------------------------------

variable "glue_databases" {
  description = "Glue databases requests may query. The task role can read exactly these databases' tables and partitions (and nothing else in the Data Catalog)."
  type        = list(string)

  validation {
    condition     = length(var.glue_databases) > 0 && alltrue([for d in var.glue_databases : can(regex("^[a-z0-9_]{1,255}$", d))])
    error_message = "glue_databases must list at least one Glue database name (lower-case letters, digits, _)."
  }
}

variable "glue_catalog_id" {
  description = "Account id of the Glue Data Catalog when it is not this account's (SQLCTL_GLUE_CATALOG_ID). null: this account."
  type        = string
  default     = null

  validation {
    condition     = var.glue_catalog_id == null || can(regex("^[0-9]{12}$", var.glue_catalog_id))
    error_message = "glue_catalog_id must be a 12-digit account id."
  }
}

variable "data_locations" {
  description = "S3 locations of the tables in glue_databases, as s3://bucket/prefix/ (or s3://bucket for a whole bucket). Athena reads them as the task role, which gets read-only access to exactly these."
  type        = list(string)

  validation {
    condition     = length(var.data_locations) > 0 && alltrue([for l in var.data_locations : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", l))])
    error_message = "data_locations must list at least one s3://bucket[/prefix/] location."
  }
}

variable "bedrock_model_id" {
  description = "Bedrock model id, cross-region inference profile id (us./eu./apac./global. prefix) or model/profile ARN the controller generates SQL with (SQLCTL_BEDROCK_MODEL). The task role may invoke exactly this model."
  type        = string

  validation {
    condition     = length(trimspace(var.bedrock_model_id)) > 0 && !strcontains(var.bedrock_model_id, "*")
    error_message = "bedrock_model_id must name one model or inference profile (no wildcards)."
  }
}

variable "bedrock_region" {
  description = "Region of the Bedrock endpoint when it is not `region` (SQLCTL_BEDROCK_REGION). null: `region`."
  type        = string
  default     = null

  validation {
    condition     = var.bedrock_region == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.bedrock_region))
    error_message = "bedrock_region must be an AWS region code."
  }
}

# --- Athena and results -----------------------------------------------------------------------

variable "bytes_scanned_cutoff" {
  description = "Workgroup-wide ceiling on the bytes one query may scan (the engine's second wall; requests set lower limits). Default 100 GiB."
  type        = number
  default     = 107374182400

  validation {
    condition     = var.bytes_scanned_cutoff >= 10000000
    error_message = "bytes_scanned_cutoff must be at least 10000000 (Athena's minimum, 10 MB)."
  }
}

variable "results_bucket_name" {
  description = "Name of the results bucket. null: NAME-results-ACCOUNT-REGION, as `sqlctl aws bootstrap` names it."
  type        = string
  default     = null

  validation {
    condition     = var.results_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.results_bucket_name))
    error_message = "results_bucket_name must be a valid S3 bucket name."
  }
}

variable "results_prefix" {
  description = "Key prefix of query results in the bucket (SQLCTL_RESULTS_S3 = s3://BUCKET/PREFIX)."
  type        = string
  default     = "results"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", var.results_prefix))
    error_message = "results_prefix must be a key prefix without leading or trailing / (e.g. results)."
  }
}

variable "results_expiration_days" {
  description = "Days query results are kept in S3 before the lifecycle rule deletes them."
  type        = number
  default     = 30

  validation {
    condition     = var.results_expiration_days >= 1
    error_message = "results_expiration_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the results bucket with its objects and the ECR repository with its images. Keep false in production."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection on the table (requests, decisions, audit history)."
  type        = bool
  default     = true
}

# --- approvals --------------------------------------------------------------------------------

variable "max_receive_count" {
  description = "Receives before a message moves to its dead-letter queue (the redrive policy)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "restrict_dlq_sources" {
  description = "Give each dead-letter queue a redrive allow policy naming its source queue, so no other queue can dead-letter into it. Only emulators without RedriveAllowPolicy support (moto) need false."
  type        = bool
  default     = true
}

variable "sqs_senders" {
  description = "More SQS decision senders for SQLCTL_SQS_SENDERS: IAM user ids (AIDA...) mapped to a name or the user's ARN, or other roles' unique ids (AROA...) mapped to the role ARN whose sessions may decide. The approver role is always mapped; sessions of roles not listed are refused."
  type        = map(string)
  default     = {}
}

variable "sqs_trusted_relays" {
  description = "SQS sender ids trusted to say who decided (a chat bot that authenticates people itself), SQLCTL_SQS_TRUSTED_RELAYS. Never `*` outside an emulator."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.sqs_trusted_relays, "*")
    error_message = "sqs_trusted_relays must not contain *: that would let any sender claim to be any approver."
  }
}

variable "create_webhook_secret" {
  description = "Create the Secrets Manager secret for the Google Chat webhook URL (its value is set outside Terraform, so it never lands in the state). false: use webhook_secret_arn, or no chat notifications."
  type        = bool
  default     = true
}

variable "webhook_secret_arn" {
  description = "ARN of an existing secret holding the Google Chat webhook URL, when create_webhook_secret is false. null: no chat notifications."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.webhook_secret_arn))
    error_message = "webhook_secret_arn must be a Secrets Manager secret ARN."
  }
}

# --- people -----------------------------------------------------------------------------------

variable "requester_principal_arns" {
  description = "IAM principals (users, roles, or an account root) that may assume the requester role. Empty: this account's root, i.e. whoever this account's IAM policies allow sts:AssumeRole on it."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.requester_principal_arns : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "requester_principal_arns must be IAM principal ARNs."
  }
}

variable "approver_principal_arns" {
  description = "IAM principals that may assume the approver role. Empty: this account's root (delegate with IAM policies)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.approver_principal_arns : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "approver_principal_arns must be IAM principal ARNs."
  }
}

variable "requester_namespaces" {
  description = "Namespaces the requester role may create and read requests in (`*`: all). DynamoDB fine-grained access limits it to the REQ#<namespace>/ partitions."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.requester_namespaces) > 0 && alltrue([for n in var.requester_namespaces : n == "*" || can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", n))])
    error_message = "requester_namespaces must be DNS-1123 labels or *."
  }
}

variable "approver_namespaces" {
  description = "Namespaces whose requests the approver role may read (`*`: all). The approver role writes no decision records (decisions go over SQS and the controller writes them); the controller's policy allow-lists limit who decides in which namespace."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.approver_namespaces) > 0 && alltrue([for n in var.approver_namespaces : n == "*" || can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", n))])
    error_message = "approver_namespaces must be DNS-1123 labels or *."
  }
}

variable "requester_can_read_results" {
  description = "Let the requester role read query results from S3 (`sqlctl results`). Results are keyed by Athena query id, not namespace, so this is all results or none."
  type        = bool
  default     = true
}

variable "require_session_name_is_username" {
  description = "Trust policies of the people's roles require the role session name to equal the caller's IAM user name (the sts:RoleSessionName condition key equals the aws:username policy variable). Without a policy `identities` map sqlctl counts a person by the session name (CLI: STS GetCallerIdentity; SQS: the SenderId of an approver-role session), so this stops one person assuming the role as another. Only IAM users have aws:username: set false for SSO/federated principals and give each person their own principal instead."
  type        = bool
  default     = true
}

# --- alarms -----------------------------------------------------------------------------------

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or clears (e.g. an SNS topic)."
  type        = list(string)
  default     = []
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the controller's embedded-metric-format metrics (`--metrics-emf`)."
  type        = string
  default     = "sqlctl"
}

variable "reconcile_error_threshold" {
  description = "Reconcile errors in 5 minutes that raise the controller-errors alarm."
  type        = number
  default     = 5

  validation {
    condition     = var.reconcile_error_threshold >= 1
    error_message = "reconcile_error_threshold must be at least 1."
  }
}

variable "heartbeat_missing_minutes" {
  description = "Minutes without a controller heartbeat (or without a leader) before the heartbeat (no-leader) alarm fires."
  type        = number
  default     = 3

  validation {
    condition     = var.heartbeat_missing_minutes >= 1 && var.heartbeat_missing_minutes <= 60
    error_message = "heartbeat_missing_minutes must be between 1 and 60."
  }
}
