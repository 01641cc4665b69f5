# The Google Chat webhook URL is a credential (anyone holding it can post to the space). The
# controller reads it with secretsmanager:GetSecretValue (SQLCTL_GCHAT_WEBHOOK_SECRET_ARN). The
# value is set outside Terraform so it never lands in the state:
#
#   aws secretsmanager put-secret-value --secret-id "$(terraform output -raw webhook_secret_arn)" \
#     --secret-string 'https://chat.googleapis.com/v1/spaces/.../messages?key=...&token=...'

resource "aws_secretsmanager_secret" "webhook" {
  count = var.create_webhook_secret ? 1 : 0

  name                    = "${var.name}/gchat-webhook-url"
  description             = "Google Chat incoming webhook URL sqlctl posts approval cards to"
  recovery_window_in_days = 7
}
