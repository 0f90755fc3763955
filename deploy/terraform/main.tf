# ee-cancel: a 2nd gen Cloud Function that cancels Earth Engine operations on request
# (request topic -> Eventarc -> function -> one outcome per operation on the results topic).
#
# Identities (SPEC section 6, nothing more):
#   function SA  roles/earthengine.writer and roles/serviceusage.serviceUsageConsumer on each
#                EE project; roles/pubsub.publisher on the results topic only.
#   trigger SA   roles/run.invoker on the function's Cloud Run service and
#                roles/eventarc.eventReceiver on the function project. It is kept apart from
#                the function SA so that whatever can invoke the function cannot cancel
#                operations, and the function cannot invoke itself.

locals {
  ee_projects        = length(var.ee_projects) > 0 ? var.ee_projects : [var.project_id]
  request_topic_name = coalesce(var.request_topic_name, "${var.name}-requests")
  results_topic_name = coalesce(var.results_topic_name, "${var.name}-results")
  source_root        = abspath(coalesce(var.source_dir, "${path.module}/../.."))
  source_bucket      = var.source_bucket != null ? var.source_bucket : google_storage_bucket.source[0].name

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Only main.py, lib/ and requirements.txt are deployed.
  source_keep_files = ["main.py", "requirements.txt"]
  # Directories that never ship (fileset below sees files only, so directories are named here).
  source_exclude_dirs = [
    "tests",
    "bench",
    "deploy",
    "docs",
    ".venv",
    "venv",
    ".git",
    ".github",
    ".ci",
    ".terraform",
    "build",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "**/__pycache__",
    "**/*.pyc",
  ]
  source_excludes = concat(
    local.source_exclude_dirs,
    # Every other top-level file: Makefile, pyproject.toml, README.md, requirements-dev.txt, ...
    tolist(setsubtract(setunion(fileset(local.source_root, "*"), fileset(local.source_root, ".*")), local.source_keep_files)),
    var.extra_source_excludes,
  )
}

data "google_project" "this" {
  project_id = var.project_id
}

# --- Topics -------------------------------------------------------------------------

resource "google_pubsub_topic" "request" {
  project = var.project_id
  name    = local.request_topic_name
  labels  = var.labels
}

resource "google_pubsub_topic" "results" {
  project = var.project_id
  name    = local.results_topic_name
  labels  = var.labels
}

# Outcomes published while nobody is subscribed are dropped; this subscription keeps them.
resource "google_pubsub_subscription" "results" {
  count = var.create_results_subscription ? 1 : 0

  project                    = var.project_id
  name                       = "${local.results_topic_name}-all"
  topic                      = google_pubsub_topic.results.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

# --- Identities -----------------------------------------------------------------------

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = var.name
  display_name = "${var.name} function"
  description  = "Runtime identity of ${var.name}: cancels Earth Engine operations and publishes outcomes."
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.name}-trigger"
  display_name = "${var.name} trigger"
  description  = "Eventarc identity of ${var.name}: may only invoke the function."
}

resource "google_project_iam_member" "ee_writer" {
  for_each = toset(local.ee_projects)

  project = each.value
  role    = "roles/earthengine.writer"
  member  = google_service_account.function.member
}

resource "google_project_iam_member" "ee_service_usage" {
  for_each = toset(local.ee_projects)

  project = each.value
  role    = "roles/serviceusage.serviceUsageConsumer"
  member  = google_service_account.function.member
}

resource "google_pubsub_topic_iam_member" "results_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.results.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function.member
}

resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# A 2nd gen function is served by a Cloud Run service of the same name.
resource "google_cloud_run_service_iam_member" "trigger_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# Pub/Sub mints the push token for the trigger SA; only old Pub/Sub service agents lack this.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  count = var.grant_pubsub_token_creator ? 1 : 0

  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Source ------------------------------------------------------------------------------

resource "google_storage_bucket" "source" {
  count = var.source_bucket == null ? 1 : 0

  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels
  # It only ever holds the source zips this module uploads.
  force_destroy = true
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = local.source_root
  excludes    = local.source_excludes
  output_path = "${path.root}/build/${var.name}-source.zip"

  lifecycle {
    precondition {
      condition     = fileexists("${local.source_root}/main.py") && fileexists("${local.source_root}/requirements.txt")
      error_message = "source_dir must be the repository root holding main.py, lib/ and requirements.txt."
    }
  }
}

resource "google_storage_bucket_object" "source" {
  bucket = local.source_bucket
  # The content hash in the name makes every source change redeploy the function.
  name   = "${var.name}/source-${data.archive_file.source.output_md5}.zip"
  source = data.archive_file.source.output_path
}

# --- Function ---------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "Cancels Earth Engine operations requested on ${local.request_topic_name}; outcomes go to ${local.results_topic_name}."
  labels      = var.labels

  build_config {
    runtime         = "python312"
    entry_point     = "cancel_operations"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = "256M"
    timeout_seconds                  = 540
    min_instance_count               = 0
    max_instance_count               = var.max_instance_count
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function.email

    # 2nd gen runtimes do not set GOOGLE_CLOUD_PROJECT, so the module does.
    environment_variables = {
      GOOGLE_CLOUD_PROJECT       = var.project_id
      RESULTS_TOPIC              = google_pubsub_topic.results.id
      EE_PROJECTS                = join(",", local.ee_projects)
      EE_API_URL                 = var.ee_api_url
      EE_API_VERSION             = var.ee_api_version
      BUDGET_THRESHOLD           = tostring(var.budget_threshold)
      BUDGET_USE_FORECAST        = tostring(var.budget_use_forecast)
      CANCEL_CONCURRENCY         = tostring(var.cancel_concurrency)
      EE_MAX_QPS                 = tostring(var.ee_max_qps)
      RETRY_DEADLINE_SECONDS     = tostring(var.retry_deadline_seconds)
      MAX_EVENT_AGE_SECONDS      = tostring(var.max_event_age_seconds)
      MAX_OPERATIONS_PER_MESSAGE = tostring(var.max_operations_per_message)
      VERIFY_SECONDS             = tostring(var.verify_seconds)
      DRY_RUN                    = tostring(var.dry_run)
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.request.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
  }

  # A PERMISSION_DENIED from Earth Engine is a permanent outcome (the request is acked), so the
  # grants exist before the first message can arrive.
  depends_on = [
    google_project_iam_member.ee_writer,
    google_project_iam_member.ee_service_usage,
    google_pubsub_topic_iam_member.results_publisher,
    google_project_iam_member.trigger_event_receiver,
  ]
}

# --- Optional: budget ------------------------------------------------------------------------

data "google_project" "ee" {
  for_each = try(var.budget.filter_ee_projects, false) ? toset(local.ee_projects) : toset([])

  project_id = each.value
}

# Cloud Billing publishes the notifications with its own Google-managed account, which it is
# allowed to do once the budget is connected to the topic: no grant is needed here.
resource "google_billing_budget" "this" {
  count = var.budget == null ? 0 : 1

  billing_account = var.budget.billing_account
  display_name    = coalesce(var.budget.display_name, "${var.name} Earth Engine budget")

  budget_filter {
    # The API stores project numbers; IDs would show a diff on every plan.
    projects = var.budget.filter_ee_projects ? [for p in local.ee_projects : "projects/${data.google_project.ee[p].number}"] : null
  }

  amount {
    specified_amount {
      currency_code = var.budget.currency_code
      units         = tostring(var.budget.amount)
    }
  }

  dynamic "threshold_rules" {
    for_each = var.budget.threshold_rules
    content {
      threshold_percent = threshold_rules.value.threshold_percent
      spend_basis       = threshold_rules.value.spend_basis
    }
  }

  all_updates_rule {
    pubsub_topic   = google_pubsub_topic.request.id
    schema_version = "1.0"
  }
}

# --- Optional: watchdog --------------------------------------------------------------------------

# The Cloud Scheduler service agent publishes with its own project-level grant.
resource "google_cloud_scheduler_job" "watchdog" {
  count = var.watchdog_schedule == null ? 0 : 1

  project     = var.project_id
  region      = coalesce(var.watchdog_region, var.region)
  name        = "${var.name}-watchdog"
  description = "Cancels PENDING and RUNNING Earth Engine operations older than ${var.watchdog_max_age_seconds} s."
  schedule    = var.watchdog_schedule
  time_zone   = var.watchdog_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.request.id
    data       = base64encode(jsonencode({ select = { olderThanSeconds = var.watchdog_max_age_seconds } }))
  }
}

# --- Optional: dead letters ------------------------------------------------------------------------
# Eventarc creates and owns the push subscription of the trigger, so its dead-letter policy is
# attached with gcloud (output dead_letter_attach_commands). Here: the topic, a subscription that
# keeps what lands on it, and the Pub/Sub service agent's right to publish there.

resource "google_pubsub_topic" "dead_letter" {
  count = var.enable_dead_letter ? 1 : 0

  project = var.project_id
  name    = "${var.name}-dead-letter"
  labels  = var.labels
}

resource "google_pubsub_subscription" "dead_letter" {
  count = var.enable_dead_letter ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-dead-letter-all"
  topic                      = google_pubsub_topic.dead_letter[0].id
  message_retention_duration = "604800s"
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count = var.enable_dead_letter ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# --- Sanity -----------------------------------------------------------------------------------

check "dead_letter_after_final_outcome" {
  assert {
    # Eventarc retries with exponential backoff from 10 s to 600 s between deliveries.
    condition     = !var.enable_dead_letter || sum([for i in range(var.dead_letter_max_delivery_attempts - 1) : min(10 * pow(2, i), 600)]) > var.max_event_age_seconds
    error_message = "dead_letter_max_delivery_attempts is reached before max_event_age_seconds: requests still failing transiently would be dead-lettered without a final outcome on the results topic. Raise the attempts or lower max_event_age_seconds."
  }
}

check "earth_engine_quota" {
  assert {
    condition     = var.max_instance_count * var.ee_max_qps <= 100 && var.max_instance_count * var.cancel_concurrency <= 40
    error_message = "max_instance_count * ee_max_qps exceeds 100 requests/s or max_instance_count * cancel_concurrency exceeds 40 concurrent requests: the default Earth Engine per-project quota. Expect HTTP 429 retries unless your quota is higher."
  }
}
