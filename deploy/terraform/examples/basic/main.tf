# Minimal deployment of ee-cancel, with the optional budget, watchdog and dead-letter topic.
#   terraform init
#   terraform apply -var project_id=my-project -var 'ee_projects=["my-ee-project"]'
# Leave billing_account_id null to skip the budget.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5.0, < 3.0.0"
    }
  }
}

variable "project_id" {
  description = "Project that hosts the function."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
  default     = "us-central1"
}

variable "ee_projects" {
  description = "Projects whose Earth Engine operations may be cancelled; empty means project_id."
  type        = list(string)
  default     = []
}

variable "billing_account_id" {
  description = "Billing account for the optional budget (XXXXXX-XXXXXX-XXXXXX); null skips it."
  type        = string
  default     = null
}

provider "google" {
  project = var.project_id
  region  = var.region
  # The Billing Budget API needs a quota project when called with user credentials.
  user_project_override = true
  billing_project       = var.project_id
}

module "ee_cancel" {
  source = "../.."

  project_id  = var.project_id
  region      = var.region
  ee_projects = var.ee_projects

  max_instance_count = 2
  verify_seconds     = 30

  budget = var.billing_account_id == null ? null : {
    billing_account = var.billing_account_id
    amount          = 500
    currency_code   = "USD"
  }

  # Every hour, cancel what has been pending or running for more than 6 hours.
  watchdog_schedule        = "0 * * * *"
  watchdog_max_age_seconds = 21600

  enable_dead_letter = true
}

output "request_topic_id" {
  value = module.ee_cancel.request_topic_id
}

output "results_topic_id" {
  value = module.ee_cancel.results_topic_id
}

output "results_subscription_id" {
  value = module.ee_cancel.results_subscription_id
}

output "function_name" {
  value = module.ee_cancel.function_name
}

output "service_account_email" {
  value = module.ee_cancel.service_account_email
}

output "dead_letter_topic_id" {
  value = module.ee_cancel.dead_letter_topic_id
}

output "dead_letter_attach_commands" {
  value = module.ee_cancel.dead_letter_attach_commands
}
