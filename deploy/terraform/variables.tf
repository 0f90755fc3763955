# --- Where and what -----------------------------------------------------------

variable "project_id" {
  description = "Project that hosts the function, its topics and its service accounts."
  type        = string
}

variable "region" {
  description = "Region of the function, its Eventarc trigger and (by default) the watchdog job."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Base name of the function and of every resource derived from it (service accounts, topics, bucket, jobs)."
  type        = string
  default     = "ee-cancel"

  validation {
    # The trigger service account id is "<name>-trigger", and account ids stop at 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{4,20}[a-z0-9]$", var.name))
    error_message = "name must be 6-22 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "ee_projects" {
  description = "Projects whose Earth Engine operations the function may cancel (EE_PROJECTS). The first is the default for bare task IDs. Empty means [project_id]."
  type        = list(string)
  default     = []

  validation {
    # IAM is granted per project, so the "*" wildcard of EE_PROJECTS cannot be deployed from here.
    condition     = alltrue([for p in var.ee_projects : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p))])
    error_message = "Every ee_projects entry must be a concrete Cloud project ID (6-30 characters, no wildcard)."
  }
}

variable "request_topic_name" {
  description = "Name of the request (trigger) topic. Null means \"<name>-requests\"."
  type        = string
  default     = null
}

variable "results_topic_name" {
  description = "Name of the results topic (RESULTS_TOPIC). Null means \"<name>-results\"."
  type        = string
  default     = null
}

variable "create_results_subscription" {
  description = "Create a pull subscription \"<results topic>-all\" so outcomes are kept (7 days) even before anyone reads them."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- Source and build -----------------------------------------------------------

variable "source_dir" {
  description = "Repository root holding main.py, lib/ and requirements.txt. Null means two directories above this module."
  type        = string
  default     = null
}

variable "extra_source_excludes" {
  description = "More paths or globs (relative to source_dir) to keep out of the source zip."
  type        = list(string)
  default     = []
}

variable "source_bucket" {
  description = "Existing bucket for the source zip. Null creates \"<project_id>-<name>-source\"."
  type        = string
  default     = null
}

variable "build_service_account" {
  description = "Service account Cloud Build uses to build the function, as projects/PROJECT/serviceAccounts/EMAIL. Null uses the project's default build account."
  type        = string
  default     = null
}

# --- Scaling ----------------------------------------------------------------------

variable "max_instance_count" {
  description = "Maximum function instances. Keep max_instance_count * ee_max_qps within the Earth Engine quota (100 requests/s per project by default)."
  type        = number
  default     = 2

  validation {
    condition     = var.max_instance_count >= 1 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be a positive integer."
  }
}

# --- Function settings (SPEC section 2); defaults are the function's own -----------

variable "ee_api_url" {
  description = "EE_API_URL: Earth Engine API root, e.g. https://earthengine-highvolume.googleapis.com."
  type        = string
  default     = "https://earthengine.googleapis.com"
}

variable "ee_api_version" {
  description = "EE_API_VERSION: v1, v1beta or v1alpha."
  type        = string
  default     = "v1beta"

  validation {
    condition     = contains(["v1", "v1beta", "v1alpha"], var.ee_api_version)
    error_message = "ee_api_version must be v1, v1beta or v1alpha."
  }
}

variable "budget_threshold" {
  description = "BUDGET_THRESHOLD: fraction of the budget at which a budget notification cancels."
  type        = number
  default     = 1.0
}

variable "budget_use_forecast" {
  description = "BUDGET_USE_FORECAST: also act on forecastThresholdExceeded."
  type        = bool
  default     = false
}

variable "cancel_concurrency" {
  description = "CANCEL_CONCURRENCY: cancel calls in flight at once per instance (Earth Engine allows 40 per project)."
  type        = number
  default     = 16
}

variable "ee_max_qps" {
  description = "EE_MAX_QPS: request rate cap to Earth Engine per instance."
  type        = number
  default     = 50
}

variable "retry_deadline_seconds" {
  description = "RETRY_DEADLINE_SECONDS: in-process retry budget per operation before the message is left to redelivery."
  type        = number
  default     = 60
}

variable "max_event_age_seconds" {
  description = "MAX_EVENT_AGE_SECONDS: older events get a final outcome instead of another redelivery."
  type        = number
  default     = 3600
}

variable "max_operations_per_message" {
  description = "MAX_OPERATIONS_PER_MESSAGE: cap on names or selected operations in one message."
  type        = number
  default     = 5000
}

variable "verify_seconds" {
  description = "VERIFY_SECONDS: after a successful cancel, poll the operation up to this long and report its state."
  type        = number
  default     = 0
}

variable "dry_run" {
  description = "DRY_RUN: select and report, never cancel."
  type        = bool
  default     = false
}

# --- Trigger identity ----------------------------------------------------------------

variable "grant_pubsub_token_creator" {
  description = "Grant the Pub/Sub service agent roles/iam.serviceAccountTokenCreator on the trigger service account. Only projects whose Pub/Sub service agent predates 8 April 2021 need it."
  type        = bool
  default     = false
}

# --- Optional: budget, watchdog, dead letters --------------------------------------------

variable "budget" {
  description = <<-EOT
    Null: no budget. Otherwise a Cloud Billing budget whose every update is published to the request topic.
    billing_account: billing account ID (XXXXXX-XXXXXX-XXXXXX); amount: whole units of currency_code (must be the billing account's currency);
    threshold_rules: alert thresholds as fractions, spend_basis CURRENT_SPEND or FORECASTED_SPEND
    (include one at budget_threshold so that alertThresholdExceeded reaches it);
    filter_ee_projects: count only the spend of ee_projects (true) or of the whole billing account (false).
  EOT
  type = object({
    billing_account = string
    amount          = number
    currency_code   = optional(string, "USD")
    display_name    = optional(string)
    threshold_rules = optional(
      list(object({ threshold_percent = number, spend_basis = optional(string, "CURRENT_SPEND") })),
      [
        { threshold_percent = 0.5, spend_basis = "CURRENT_SPEND" },
        { threshold_percent = 0.9, spend_basis = "CURRENT_SPEND" },
        { threshold_percent = 1.0, spend_basis = "CURRENT_SPEND" },
      ]
    )
    filter_ee_projects = optional(bool, true)
  })
  default = null

  validation {
    condition     = var.budget == null ? true : (var.budget.amount > 0 && floor(var.budget.amount) == var.budget.amount)
    error_message = "budget.amount must be a positive whole number of currency units."
  }
}

variable "watchdog_schedule" {
  description = "Cron schedule of the watchdog Cloud Scheduler job, e.g. \"0 * * * *\". Null: no job."
  type        = string
  default     = null
}

variable "watchdog_max_age_seconds" {
  description = "The watchdog cancels PENDING and RUNNING operations older than this."
  type        = number
  default     = 21600
}

variable "watchdog_time_zone" {
  description = "Time zone of watchdog_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "watchdog_region" {
  description = "Cloud Scheduler location of the watchdog job. Null means region."
  type        = string
  default     = null
}

variable "enable_dead_letter" {
  description = "Create a dead-letter topic (and a subscription that keeps its messages) for requests that exhaust their deliveries. Attaching it to the Eventarc subscription is a gcloud step: see the dead_letter_attach_commands output."
  type        = bool
  default     = false
}

variable "dead_letter_max_delivery_attempts" {
  description = "Deliveries of a request before it goes to the dead-letter topic (5-100). With the trigger's 10-600 s backoff, 15 deliveries span about 90 minutes: longer than max_event_age_seconds, so the function gives its own final outcome first and the dead-letter topic only catches what it could not handle at all."
  type        = number
  default     = 15

  validation {
    condition     = var.dead_letter_max_delivery_attempts >= 5 && var.dead_letter_max_delivery_attempts <= 100
    error_message = "dead_letter_max_delivery_attempts must be between 5 and 100."
  }
}
