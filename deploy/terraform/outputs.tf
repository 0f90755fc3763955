output "request_topic_id" {
  description = "Publish cancellation requests here (projects/P/topics/T)."
  value       = google_pubsub_topic.request.id
}

output "results_topic_id" {
  description = "One outcome per operation is published here (the function's RESULTS_TOPIC)."
  value       = google_pubsub_topic.results.id
}

output "results_subscription_id" {
  description = "Pull subscription that keeps every outcome, or null."
  value       = one(google_pubsub_subscription.results[*].id)
}

output "function_name" {
  description = "Name of the 2nd gen function (and of its Cloud Run service)."
  value       = google_cloudfunctions2_function.this.name
}

output "function_uri" {
  description = "URI of the function's Cloud Run service (internal ingress only)."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "event_trigger" {
  description = "Eventarc trigger that delivers the request topic to the function."
  value       = google_cloudfunctions2_function.this.event_trigger[0].trigger
}

output "service_account_email" {
  description = "Runtime service account of the function."
  value       = google_service_account.function.email
}

output "trigger_service_account_email" {
  description = "Service account Eventarc uses to invoke the function."
  value       = google_service_account.trigger.email
}

output "dead_letter_topic_id" {
  description = "Dead-letter topic, or null."
  value       = one(google_pubsub_topic.dead_letter[*].id)
}

output "dead_letter_subscription_id" {
  description = "Subscription that keeps dead-lettered requests, or null."
  value       = one(google_pubsub_subscription.dead_letter[*].id)
}

output "dead_letter_attach_commands" {
  description = "Run these once after apply (and again whenever the trigger is replaced) to attach the dead-letter topic to the Eventarc subscription."
  value = var.enable_dead_letter ? join("\n", [
    "SUBSCRIPTION=$(gcloud eventarc triggers describe ${basename(google_cloudfunctions2_function.this.event_trigger[0].trigger)} --project=${var.project_id} --location=${var.region} --format='value(transport.pubsub.subscription)')",
    "gcloud pubsub subscriptions update \"$SUBSCRIPTION\" --dead-letter-topic=${google_pubsub_topic.dead_letter[0].id} --max-delivery-attempts=${var.dead_letter_max_delivery_attempts}",
    "gcloud pubsub subscriptions add-iam-policy-binding \"$SUBSCRIPTION\" --member=${local.pubsub_service_agent} --role=roles/pubsub.subscriber",
  ]) : null
}

output "budget_name" {
  description = "Resource name of the budget, or null."
  value       = one(google_billing_budget.this[*].name)
}

output "watchdog_job_id" {
  description = "Cloud Scheduler watchdog job, or null."
  value       = one(google_cloud_scheduler_job.watchdog[*].id)
}
