"""Offline checks of the deployment definitions in deploy/ (Terraform module, gcloud script)."""

# The only roles a deployment may grant (SPEC section 6), whichever tool makes it.
ALLOWED_ROLES = {
    "roles/earthengine.writer",
    "roles/serviceusage.serviceUsageConsumer",
    "roles/pubsub.publisher",
    "roles/run.invoker",
    "roles/eventarc.eventReceiver",
    "roles/pubsub.subscriber",
    "roles/iam.serviceAccountTokenCreator",
}
