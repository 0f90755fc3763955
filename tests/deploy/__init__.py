"""Offline checks of the deployment definitions in deploy/ (Terraform module, gcloud script)."""
