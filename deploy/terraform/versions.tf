terraform {
  # check blocks (used for the quota sanity check) need Terraform 1.5.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.5.0 added glob patterns to archive_file excludes (used for **/__pycache__).
      version = ">= 2.5.0, < 3.0.0"
    }
  }
}
