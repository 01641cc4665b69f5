# The controller: one Fargate service running `sqlctl controller` (one leader, optionally a hot
# standby waiting on the leader lease in DynamoDB).

resource "aws_cloudwatch_log_group" "controller" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "controller" {
  family                   = "${var.name}-controller"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name      = "controller"
      image     = local.image
      essential = true
      command   = local.controller_command
      environment = [
        for k in sort(keys(local.controller_environment)) : { name = k, value = local.controller_environment[k] }
      ]
      portMappings = [
        { containerPort = var.metrics_port, protocol = "tcp", name = "metrics" },
      ]
      # The controller writes nothing to disk on --backend aws.
      readonlyRootFilesystem = true
      # SIGTERM starts the drain (25 s for in-flight reconciles), then the lease is released so
      # a standby takes over at once instead of after a full lease period.
      stopTimeout = var.stop_timeout_seconds
      # /healthz answers on the leader and on a standby alike (leadership is on /readyz).
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/sqlctl", "healthcheck"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 20
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.controller.name
          "awslogs-region"        = var.region
          "awslogs-stream-prefix" = "controller"
          "mode"                  = "non-blocking"
          "max-buffer-size"       = "4m"
        }
      }
    },
  ])
}

resource "aws_security_group" "controller" {
  name        = "${var.name}-controller"
  description = "sqlctl controller tasks: HTTPS out to AWS APIs and the chat webhook; metrics in only from the listed CIDRs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.controller.id
  description       = "HTTPS to AWS APIs (or their VPC endpoints) and the Google Chat webhook"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = toset(var.metrics_ingress_cidr_blocks)

  security_group_id = aws_security_group.controller.id
  description       = "/healthz, /readyz and /metrics"
  ip_protocol       = "tcp"
  from_port         = var.metrics_port
  to_port           = var.metrics_port
  cidr_ipv4         = each.value
}

resource "aws_ecs_service" "controller" {
  name            = "${var.name}-controller"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.controller.arn
  desired_count   = var.hot_standby ? 2 : 1
  launch_type     = "FARGATE"
  propagate_tags  = "SERVICE"

  # A new task starts as a standby before the old one stops (and releases the lease on SIGTERM),
  # so a deployment hands over leadership in seconds; the lease, not ECS, keeps one leader.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.controller.id]
    assign_public_ip = var.assign_public_ip
  }

  depends_on = [aws_iam_role_policy.task, aws_iam_role_policy.execution]
}
