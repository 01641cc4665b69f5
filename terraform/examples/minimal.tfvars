# The least to set: where to run, which image, what data requests may query, which model.
#
#   terraform -chdir=terraform apply -var-file=examples/minimal.tfvars

region    = "us-east-1"
image_tag = "0.1.0"

vpc_id     = "vpc-0123456789abcdef0"
subnet_ids = ["subnet-0123456789abcdef0"]

glue_databases   = ["tpch"]
data_locations   = ["s3://example-lake/tpch/"]
bedrock_model_id = "anthropic.claude-3-5-sonnet-20241022-v2:0"
