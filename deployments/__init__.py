"""What is deployed where: the dev/staging/prod specs (YAML) and the pydantic models that load them."""
