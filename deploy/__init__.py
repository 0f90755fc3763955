"""Deployments of ee-cancel: Google Cloud (Terraform, gcloud) and local (emulators, demo)."""
