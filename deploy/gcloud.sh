#!/usr/bin/env bash
# Deploy ee-cancel with plain gcloud commands: the same resources as deploy/terraform.
#
#   deploy/gcloud.sh --project=my-project --ee-projects=my-ee-project [options]
#   deploy/gcloud.sh --help
#
# Safe to re-run: every create is guarded by a describe, IAM bindings are idempotent and
# `gcloud functions deploy` updates the function in place. --dry-run prints the commands
# (as a script you could paste) and runs none of them.
# Dry-run prints shell code, so "$" inside single quotes is intended throughout.
# shellcheck disable=SC2016
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR

# Function settings (SPEC section 2) that --env may set; the function's defaults apply otherwise.
readonly FUNCTION_SETTINGS=" EE_API_URL EE_API_VERSION BUDGET_THRESHOLD BUDGET_USE_FORECAST CANCEL_CONCURRENCY EE_MAX_QPS RETRY_DEADLINE_SECONDS MAX_EVENT_AGE_SECONDS MAX_OPERATIONS_PER_MESSAGE VERIFY_SECONDS DRY_RUN "
readonly PROJECT_ID_RE='^[a-z][a-z0-9-]{4,28}[a-z0-9]$'
readonly NAME_RE='^[a-z][a-z0-9-]{4,20}[a-z0-9]$'
readonly PUBSUB_NAME_RE='^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$'

usage() {
  cat <<'EOF'
Usage: deploy/gcloud.sh --project=PROJECT [options]

Every option can also come from the environment variable shown.

  --project=ID                 function project            EE_CANCEL_PROJECT (or CLOUDSDK_CORE_PROJECT)
  --region=REGION              function region            EE_CANCEL_REGION (us-central1)
  --ee-projects=P1,P2          projects whose operations may be cancelled; the first is the
                               default for bare task IDs  EE_CANCEL_EE_PROJECTS (the function project)
  --name=NAME                  function and resource base name, 6-22 of [a-z0-9-]
                                                          EE_CANCEL_NAME (ee-cancel)
  --request-topic=TOPIC        trigger topic              EE_CANCEL_REQUEST_TOPIC (NAME-requests)
  --results-topic=TOPIC        outcomes topic             EE_CANCEL_RESULTS_TOPIC (NAME-results)
  --results-subscription=SUB   pull subscription keeping every outcome, "none" to skip
                                                          EE_CANCEL_RESULTS_SUBSCRIPTION (RESULTS-all)
  --max-instances=N            EE_CANCEL_MAX_INSTANCES (2)
  --build-service-account=SA   full name projects/P/serviceAccounts/EMAIL used by Cloud Build
                                                          EE_CANCEL_BUILD_SERVICE_ACCOUNT
  --env=KEY=VALUE              function setting, repeatable; KEY one of
                               EE_API_URL EE_API_VERSION BUDGET_THRESHOLD BUDGET_USE_FORECAST
                               CANCEL_CONCURRENCY EE_MAX_QPS RETRY_DEADLINE_SECONDS
                               MAX_EVENT_AGE_SECONDS MAX_OPERATIONS_PER_MESSAGE VERIFY_SECONDS DRY_RUN
  --source-dir=DIR             repository root with main.py, lib/, requirements.txt
                                                          EE_CANCEL_SOURCE_DIR (the script's ..)
  --grant-pubsub-token-creator let the Pub/Sub service agent mint tokens for the trigger SA
                               (only for Pub/Sub service agents created before 8 April 2021)

  Optional budget (created if missing, never modified):
  --budget-billing-account=ID  EE_CANCEL_BUDGET_BILLING_ACCOUNT
  --budget-amount=AMOUNT       EE_CANCEL_BUDGET_AMOUNT (100)
  --budget-currency=CUR        EE_CANCEL_BUDGET_CURRENCY (USD; must be the billing account's)
  --budget-thresholds=0.5,1.0  EE_CANCEL_BUDGET_THRESHOLDS (0.5,0.9,1.0)
  --budget-name=NAME           EE_CANCEL_BUDGET_NAME (NAME Earth Engine budget)

  Optional watchdog (Cloud Scheduler; created or updated):
  --watchdog-schedule=CRON     EE_CANCEL_WATCHDOG_SCHEDULE, e.g. "0 * * * *"
  --watchdog-max-age=SECONDS   EE_CANCEL_WATCHDOG_MAX_AGE (21600)
  --watchdog-time-zone=TZ      EE_CANCEL_WATCHDOG_TIME_ZONE (Etc/UTC)
  --watchdog-location=REGION   EE_CANCEL_WATCHDOG_LOCATION (the region)

  Optional dead letters:
  --dead-letter-topic=TOPIC    EE_CANCEL_DEAD_LETTER_TOPIC
  --max-delivery-attempts=N    EE_CANCEL_MAX_DELIVERY_ATTEMPTS (15, 5-100; 15 deliveries
                               span ~90 min of backoff, past MAX_EVENT_AGE_SECONDS)

  --dry-run                    print the commands, run nothing
  -h, --help
EOF
}

die() {
  printf 'gcloud.sh: %s\n' "$*" >&2
  exit 2
}

PROJECT="${EE_CANCEL_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}"
REGION="${EE_CANCEL_REGION:-us-central1}"
EE_PROJECTS="${EE_CANCEL_EE_PROJECTS:-}"
NAME="${EE_CANCEL_NAME:-ee-cancel}"
REQUEST_TOPIC="${EE_CANCEL_REQUEST_TOPIC:-}"
RESULTS_TOPIC="${EE_CANCEL_RESULTS_TOPIC:-}"
RESULTS_SUBSCRIPTION="${EE_CANCEL_RESULTS_SUBSCRIPTION:-}"
MAX_INSTANCES="${EE_CANCEL_MAX_INSTANCES:-2}"
BUILD_SERVICE_ACCOUNT="${EE_CANCEL_BUILD_SERVICE_ACCOUNT:-}"
SOURCE_DIR="${EE_CANCEL_SOURCE_DIR:-$SCRIPT_DIR/..}"
GRANT_TOKEN_CREATOR=false
BUDGET_BILLING_ACCOUNT="${EE_CANCEL_BUDGET_BILLING_ACCOUNT:-}"
BUDGET_AMOUNT="${EE_CANCEL_BUDGET_AMOUNT:-100}"
BUDGET_CURRENCY="${EE_CANCEL_BUDGET_CURRENCY:-USD}"
BUDGET_THRESHOLDS="${EE_CANCEL_BUDGET_THRESHOLDS:-0.5,0.9,1.0}"
BUDGET_NAME="${EE_CANCEL_BUDGET_NAME:-}"
WATCHDOG_SCHEDULE="${EE_CANCEL_WATCHDOG_SCHEDULE:-}"
WATCHDOG_MAX_AGE="${EE_CANCEL_WATCHDOG_MAX_AGE:-21600}"
WATCHDOG_TIME_ZONE="${EE_CANCEL_WATCHDOG_TIME_ZONE:-Etc/UTC}"
WATCHDOG_LOCATION="${EE_CANCEL_WATCHDOG_LOCATION:-}"
DEAD_LETTER_TOPIC="${EE_CANCEL_DEAD_LETTER_TOPIC:-}"
MAX_DELIVERY_ATTEMPTS="${EE_CANCEL_MAX_DELIVERY_ATTEMPTS:-15}"
DRY=false
FUNCTION_ENV=()

# --- Arguments ------------------------------------------------------------------------

while (($#)); do
  arg="$1"
  shift
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY=true; continue ;;
    --grant-pubsub-token-creator) GRANT_TOKEN_CREATOR=true; continue ;;
    --*=*) flag="${arg%%=*}"; value="${arg#*=}" ;;
    --*)
      (($#)) || die "$arg needs a value"
      flag="$arg"; value="$1"; shift ;;
    *) die "unexpected argument: $arg (see --help)" ;;
  esac
  case "$flag" in
    --project) PROJECT="$value" ;;
    --region) REGION="$value" ;;
    --ee-projects) EE_PROJECTS="$value" ;;
    --name) NAME="$value" ;;
    --request-topic) REQUEST_TOPIC="$value" ;;
    --results-topic) RESULTS_TOPIC="$value" ;;
    --results-subscription) RESULTS_SUBSCRIPTION="$value" ;;
    --max-instances) MAX_INSTANCES="$value" ;;
    --build-service-account) BUILD_SERVICE_ACCOUNT="$value" ;;
    --env) FUNCTION_ENV+=("$value") ;;
    --source-dir) SOURCE_DIR="$value" ;;
    --budget-billing-account) BUDGET_BILLING_ACCOUNT="$value" ;;
    --budget-amount) BUDGET_AMOUNT="$value" ;;
    --budget-currency) BUDGET_CURRENCY="$value" ;;
    --budget-thresholds) BUDGET_THRESHOLDS="$value" ;;
    --budget-name) BUDGET_NAME="$value" ;;
    --watchdog-schedule) WATCHDOG_SCHEDULE="$value" ;;
    --watchdog-max-age) WATCHDOG_MAX_AGE="$value" ;;
    --watchdog-time-zone) WATCHDOG_TIME_ZONE="$value" ;;
    --watchdog-location) WATCHDOG_LOCATION="$value" ;;
    --dead-letter-topic) DEAD_LETTER_TOPIC="$value" ;;
    --max-delivery-attempts) MAX_DELIVERY_ATTEMPTS="$value" ;;
    *) die "unknown option: $flag (see --help)" ;;
  esac
done

[[ -n "$PROJECT" ]] || die "--project is required"
[[ "$PROJECT" =~ $PROJECT_ID_RE ]] || die "--project: not a project ID: $PROJECT"
[[ "$NAME" =~ $NAME_RE ]] || die "--name must be 6-22 of [a-z0-9-], starting with a letter: $NAME"
[[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "--region: not a region: $REGION"
[[ "$MAX_INSTANCES" =~ ^[1-9][0-9]*$ ]] || die "--max-instances must be a positive integer"
if ! [[ "$MAX_DELIVERY_ATTEMPTS" =~ ^[0-9]+$ ]] || ((MAX_DELIVERY_ATTEMPTS < 5 || MAX_DELIVERY_ATTEMPTS > 100)); then
  die "--max-delivery-attempts must be between 5 and 100"
fi
[[ "$WATCHDOG_MAX_AGE" =~ ^[1-9][0-9]*$ ]] || die "--watchdog-max-age must be a positive integer"
[[ "$BUDGET_AMOUNT" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--budget-amount must be a number"
[[ "$BUDGET_CURRENCY" =~ ^[A-Z]{3}$ ]] || die "--budget-currency must be a currency code such as USD"
[[ "$BUDGET_THRESHOLDS" =~ ^[0-9.]+(,[0-9.]+)*$ ]] || die "--budget-thresholds must be like 0.5,0.9,1.0"

EE_PROJECTS="${EE_PROJECTS:-$PROJECT}"
IFS=',' read -r -a EE_PROJECT_LIST <<<"$EE_PROJECTS"
((${#EE_PROJECT_LIST[@]})) || die "--ee-projects is empty"
for p in "${EE_PROJECT_LIST[@]}"; do
  # IAM is granted per project, so the "*" wildcard of EE_PROJECTS cannot be deployed from here.
  [[ "$p" =~ $PROJECT_ID_RE ]] || die "--ee-projects: not a concrete project ID: '$p'"
done

for setting in ${FUNCTION_ENV[@]+"${FUNCTION_ENV[@]}"}; do
  key="${setting%%=*}"
  [[ "$setting" == *=* && "$FUNCTION_SETTINGS" == *" $key "* ]] \
    || die "--env: unknown function setting '$key' (RESULTS_TOPIC and EE_PROJECTS come from --results-topic and --ee-projects)"
  # "@" separates the variables in --set-env-vars below.
  [[ "$setting" != *@* ]] || die "--env: '@' is not allowed in values"
done

REQUEST_TOPIC="${REQUEST_TOPIC:-$NAME-requests}"
RESULTS_TOPIC="${RESULTS_TOPIC:-$NAME-results}"
RESULTS_SUBSCRIPTION="${RESULTS_SUBSCRIPTION:-$RESULTS_TOPIC-all}"
for topic in "$REQUEST_TOPIC" "$RESULTS_TOPIC" "$RESULTS_SUBSCRIPTION" ${DEAD_LETTER_TOPIC:+"$DEAD_LETTER_TOPIC"}; do
  [[ "$topic" =~ $PUBSUB_NAME_RE ]] || die "not a Pub/Sub topic or subscription name: $topic"
done
WATCHDOG_LOCATION="${WATCHDOG_LOCATION:-$REGION}"
BUDGET_NAME="${BUDGET_NAME:-$NAME Earth Engine budget}"
FUNCTION_SA="$NAME@$PROJECT.iam.gserviceaccount.com"
TRIGGER_SA="$NAME-trigger@$PROJECT.iam.gserviceaccount.com"
RESULTS_TOPIC_ID="projects/$PROJECT/topics/$RESULTS_TOPIC"
REQUEST_TOPIC_ID="projects/$PROJECT/topics/$REQUEST_TOPIC"

for f in main.py requirements.txt lib; do
  [[ -e "$SOURCE_DIR/$f" ]] || die "--source-dir $SOURCE_DIR has no $f"
done
SOURCE_DIR="$(cd "$SOURCE_DIR" && pwd)"

# --- Running, or printing in dry-run mode -----------------------------------------------

# Quote one word for the printed script: bare when safe, double quotes when it holds a
# ${PLACEHOLDER} set by an earlier printed line, single quotes otherwise.
quote() {
  local bare='^[A-Za-z0-9_./:=,@%+-]+$' placeholder='^[A-Za-z0-9_./:=,@%+${}#*-]+$'
  if [[ "$1" =~ $bare ]]; then
    printf '%s' "$1"
  elif [[ "$1" == *'${'* && "$1" =~ $placeholder ]]; then
    printf '"%s"' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

render() {
  local word out=""
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

step() {
  if $DRY; then
    printf '\n# %s\n' "$*"
  else
    printf '==> %s\n' "$*" >&2
  fi
}

run() {
  if $DRY; then
    printf '%s\n' "$(render "$@")"
  else
    "$@"
  fi
}

# ensure DESCRIBE_COMMAND... -- CREATE_COMMAND...: create unless the describe proves it exists.
ensure() {
  local describe=()
  while [[ "$1" != -- ]]; do
    describe+=("$1")
    shift
  done
  shift
  if $DRY; then
    printf '%s >/dev/null 2>&1 || %s\n' "$(render "${describe[@]}")" "$(render "$@")"
  elif "${describe[@]}" >/dev/null 2>&1; then
    printf '    exists: %s\n' "$(render "${describe[@]:1:4}")" >&2
  else
    "$@"
  fi
}

# A binding to a just-created service account can fail until the account has propagated.
bind() {
  if $DRY; then
    run "$@"
    return
  fi
  local attempt
  for attempt in 1 2 3 4 5; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    printf '    binding failed, retrying in %ss (new service accounts take a moment)\n' "$((attempt * 5))" >&2
    sleep "$((attempt * 5))"
  done
  "$@" >/dev/null
}

# lookup NAME COMMAND...: print the command's output. In dry-run, print NAME=$(COMMAND) on the
# real stdout (fd 3: stdout is being captured) and stand in ${NAME} for the value.
exec 3>&1
lookup() {
  local name="$1"
  shift
  if $DRY; then
    printf '%s=$(%s)\n' "$name" "$(render "$@")" >&3
    printf '${%s}' "$name"
  else
    "$@"
  fi
}

$DRY || export CLOUDSDK_CORE_DISABLE_PROMPTS=1

G=(gcloud)
P=(--project="$PROJECT")

# --- Topics ------------------------------------------------------------------------------

step "Topics: requests ($REQUEST_TOPIC) and outcomes ($RESULTS_TOPIC)"
ensure "${G[@]}" pubsub topics describe "$REQUEST_TOPIC" "${P[@]}" -- \
  "${G[@]}" pubsub topics create "$REQUEST_TOPIC" "${P[@]}"
ensure "${G[@]}" pubsub topics describe "$RESULTS_TOPIC" "${P[@]}" -- \
  "${G[@]}" pubsub topics create "$RESULTS_TOPIC" "${P[@]}"
if [[ "$RESULTS_SUBSCRIPTION" != none ]]; then
  step "Subscription keeping every outcome for 7 days: $RESULTS_SUBSCRIPTION"
  ensure "${G[@]}" pubsub subscriptions describe "$RESULTS_SUBSCRIPTION" "${P[@]}" -- \
    "${G[@]}" pubsub subscriptions create "$RESULTS_SUBSCRIPTION" "${P[@]}" --topic="$RESULTS_TOPIC" \
    --ack-deadline=60 --message-retention-duration=7d --expiration-period=never
fi

# --- Identities and grants (SPEC section 6) ---------------------------------------------------

step "Service accounts: $FUNCTION_SA (runtime), $TRIGGER_SA (Eventarc, invoke only)"
ensure "${G[@]}" iam service-accounts describe "$FUNCTION_SA" "${P[@]}" -- \
  "${G[@]}" iam service-accounts create "$NAME" "${P[@]}" --display-name="$NAME function" \
  --description="Runtime identity of $NAME: cancels Earth Engine operations and publishes outcomes."
ensure "${G[@]}" iam service-accounts describe "$TRIGGER_SA" "${P[@]}" -- \
  "${G[@]}" iam service-accounts create "$NAME-trigger" "${P[@]}" --display-name="$NAME trigger" \
  --description="Eventarc identity of $NAME: may only invoke the function."

for ee_project in "${EE_PROJECT_LIST[@]}"; do
  step "Earth Engine project $ee_project: cancel operations, use the API"
  for role in roles/earthengine.writer roles/serviceusage.serviceUsageConsumer; do
    bind "${G[@]}" projects add-iam-policy-binding "$ee_project" \
      --member="serviceAccount:$FUNCTION_SA" --role="$role" --condition=None --format=none
  done
done

step "Publish outcomes: on the results topic only"
bind "${G[@]}" pubsub topics add-iam-policy-binding "$RESULTS_TOPIC" "${P[@]}" \
  --member="serviceAccount:$FUNCTION_SA" --role=roles/pubsub.publisher --format=none

step "Trigger identity receives events"
bind "${G[@]}" projects add-iam-policy-binding "$PROJECT" \
  --member="serviceAccount:$TRIGGER_SA" --role=roles/eventarc.eventReceiver --condition=None --format=none

PROJECT_NUMBER=""
if $GRANT_TOKEN_CREATOR || [[ -n "$DEAD_LETTER_TOPIC" ]]; then
  PROJECT_NUMBER="$(lookup PROJECT_NUMBER "${G[@]}" projects describe "$PROJECT" --format='value(projectNumber)')"
fi
PUBSUB_AGENT="serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"

if $GRANT_TOKEN_CREATOR; then
  step "Pub/Sub service agent may mint push tokens for the trigger identity"
  bind "${G[@]}" iam service-accounts add-iam-policy-binding "$TRIGGER_SA" "${P[@]}" \
    --member="$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator --format=none
fi

# --- Function ----------------------------------------------------------------------------------

step "Stage only main.py, lib/ and requirements.txt, then deploy $NAME"
if $DRY; then
  STAGING_DIR='${STAGING_DIR}'
  printf 'STAGING_DIR=$(mktemp -d)\n'
  run cp -R "$SOURCE_DIR/main.py" "$SOURCE_DIR/lib" "$SOURCE_DIR/requirements.txt" "$STAGING_DIR/"
  printf 'find "$STAGING_DIR" -name __pycache__ -prune -exec rm -rf {} +\n'
else
  STAGING_DIR="$(mktemp -d)"
  trap 'rm -rf "$STAGING_DIR"' EXIT
  cp -R "$SOURCE_DIR/main.py" "$SOURCE_DIR/lib" "$SOURCE_DIR/requirements.txt" "$STAGING_DIR/"
  find "$STAGING_DIR" -name __pycache__ -prune -exec rm -rf {} +
fi

# gcloud splits --set-env-vars on commas, and EE_PROJECTS holds commas: "^@^" makes "@" the
# separator instead (gcloud topic escaping).
# 2nd gen runtimes do not set GOOGLE_CLOUD_PROJECT, so the deployment does.
env_vars="^@^RESULTS_TOPIC=$RESULTS_TOPIC_ID@EE_PROJECTS=$EE_PROJECTS@GOOGLE_CLOUD_PROJECT=$PROJECT"
for setting in ${FUNCTION_ENV[@]+"${FUNCTION_ENV[@]}"}; do
  env_vars+="@$setting"
done

deploy=(
  "${G[@]}" functions deploy "$NAME" --gen2 "${P[@]}" --region="$REGION"
  --runtime=python312 --entry-point=cancel_operations --source="$STAGING_DIR"
  --trigger-topic="$REQUEST_TOPIC" --retry --trigger-service-account="$TRIGGER_SA"
  --service-account="$FUNCTION_SA" --timeout=540s --memory=256Mi
  --min-instances=0 --max-instances="$MAX_INSTANCES" --ingress-settings=internal-only
  --set-env-vars="$env_vars"
)
if [[ -n "$BUILD_SERVICE_ACCOUNT" ]]; then
  deploy+=(--build-service-account="$BUILD_SERVICE_ACCOUNT")
fi
run "${deploy[@]}"

step "Trigger identity may invoke the function's Cloud Run service (same name)"
bind "${G[@]}" run services add-iam-policy-binding "$NAME" "${P[@]}" --region="$REGION" \
  --member="serviceAccount:$TRIGGER_SA" --role=roles/run.invoker --format=none

# --- Optional: dead letters ----------------------------------------------------------------------

if [[ -n "$DEAD_LETTER_TOPIC" ]]; then
  step "Dead letters: $DEAD_LETTER_TOPIC after $MAX_DELIVERY_ATTEMPTS deliveries"
  ensure "${G[@]}" pubsub topics describe "$DEAD_LETTER_TOPIC" "${P[@]}" -- \
    "${G[@]}" pubsub topics create "$DEAD_LETTER_TOPIC" "${P[@]}"
  ensure "${G[@]}" pubsub subscriptions describe "$DEAD_LETTER_TOPIC-all" "${P[@]}" -- \
    "${G[@]}" pubsub subscriptions create "$DEAD_LETTER_TOPIC-all" "${P[@]}" --topic="$DEAD_LETTER_TOPIC" \
    --message-retention-duration=7d --expiration-period=never
  bind "${G[@]}" pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" "${P[@]}" \
    --member="$PUBSUB_AGENT" --role=roles/pubsub.publisher --format=none
  # Eventarc owns the push subscription of the trigger; find it through the trigger.
  trigger="$(lookup TRIGGER "${G[@]}" functions describe "$NAME" --gen2 "${P[@]}" --region="$REGION" \
    --format='value(eventTrigger.trigger)')"
  trigger_id="${trigger##*/}"
  $DRY && trigger_id='${TRIGGER##*/}'
  subscription="$(lookup SUBSCRIPTION "${G[@]}" eventarc triggers describe "$trigger_id" "${P[@]}" \
    --location="$REGION" --format='value(transport.pubsub.subscription)')"
  [[ -n "$subscription" ]] || die "no Pub/Sub subscription found for trigger $trigger"
  run "${G[@]}" pubsub subscriptions update "$subscription" \
    --dead-letter-topic="projects/$PROJECT/topics/$DEAD_LETTER_TOPIC" \
    --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS"
  bind "${G[@]}" pubsub subscriptions add-iam-policy-binding "$subscription" \
    --member="$PUBSUB_AGENT" --role=roles/pubsub.subscriber --format=none
fi

# --- Optional: budget -------------------------------------------------------------------------------

if [[ -n "$BUDGET_BILLING_ACCOUNT" ]]; then
  step "Budget \"$BUDGET_NAME\" publishing every update to $REQUEST_TOPIC"
  list=("${G[@]}" billing budgets list --billing-account="$BUDGET_BILLING_ACCOUNT"
    --billing-project="$PROJECT" --filter="displayName=\"$BUDGET_NAME\"" --format='value(name)')
  filter_projects=""
  for ee_project in "${EE_PROJECT_LIST[@]}"; do
    filter_projects+="${filter_projects:+,}projects/$ee_project"
  done
  create=("${G[@]}" billing budgets create --billing-account="$BUDGET_BILLING_ACCOUNT"
    --billing-project="$PROJECT" --display-name="$BUDGET_NAME"
    --budget-amount="$BUDGET_AMOUNT$BUDGET_CURRENCY" --filter-projects="$filter_projects"
    --notifications-rule-pubsub-topic="$REQUEST_TOPIC_ID")
  IFS=',' read -r -a thresholds <<<"$BUDGET_THRESHOLDS"
  for t in "${thresholds[@]}"; do
    create+=(--threshold-rule="percent=$t")
  done
  if $DRY; then
    printf '[ -n "$(%s)" ] || %s\n' "$(render "${list[@]}")" "$(render "${create[@]}")"
  elif [[ -n "$("${list[@]}")" ]]; then
    printf '    exists: budget "%s" (left unchanged)\n' "$BUDGET_NAME" >&2
  else
    "${create[@]}"
  fi
fi

# --- Optional: watchdog ------------------------------------------------------------------------------

if [[ -n "$WATCHDOG_SCHEDULE" ]]; then
  step "Watchdog: cancel operations pending or running for more than $WATCHDOG_MAX_AGE s, on \"$WATCHDOG_SCHEDULE\""
  job="$NAME-watchdog"
  job_flags=("${P[@]}" --location="$WATCHDOG_LOCATION" --schedule="$WATCHDOG_SCHEDULE"
    --time-zone="$WATCHDOG_TIME_ZONE" --topic="$REQUEST_TOPIC_ID"
    --message-body="{\"select\":{\"olderThanSeconds\":$WATCHDOG_MAX_AGE}}"
    --description="Cancels PENDING and RUNNING Earth Engine operations older than $WATCHDOG_MAX_AGE s.")
  describe=("${G[@]}" scheduler jobs describe "$job" "${P[@]}" --location="$WATCHDOG_LOCATION")
  if $DRY; then
    printf 'if %s >/dev/null 2>&1; then %s; else %s; fi\n' "$(render "${describe[@]}")" \
      "$(render "${G[@]}" scheduler jobs update pubsub "$job" "${job_flags[@]}")" \
      "$(render "${G[@]}" scheduler jobs create pubsub "$job" "${job_flags[@]}")"
  elif "${describe[@]}" >/dev/null 2>&1; then
    "${G[@]}" scheduler jobs update pubsub "$job" "${job_flags[@]}"
  else
    "${G[@]}" scheduler jobs create pubsub "$job" "${job_flags[@]}"
  fi
fi

step "Done. Publish requests to $REQUEST_TOPIC_ID; outcomes arrive on $RESULTS_TOPIC_ID."
