#!/usr/bin/env bash
# The demo behind `make demo`: with the stack and Ferry's services up, create
# a table and a task through the control API, write rows, and show them
# arriving in Kafka as Canal JSON.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$SCRIPT_DIR/stack.sh" env)"
GRPCURL=$("$SCRIPT_DIR/tools.sh" path grpcurl)
TEMPORAL=$("$SCRIPT_DIR/tools.sh" path temporal)
CONTROL=127.0.0.1:${FERRY_CONTROL_PORT:-7400}
TASK_ID=${FERRY_DEMO_TASK:-demo-orders}
TOPIC=demo_orders

psql_ferry() {
  PGPASSWORD=$(<"$FERRY_PG_PASSWORD_FILE") psql -X -q -v ON_ERROR_STOP=1 \
    -h "$FERRY_PG_HOST" -p "$FERRY_PG_PORT" -U "$FERRY_PG_USER" -d "$FERRY_PG_DATABASE" "$@"
}

# The control API speaks TLS under the stack's CA and takes the stack's
# bearer token, as grpcurl users call it.
control() { # method json
  "$GRPCURL" -cacert "$FERRY_TLS_CA" -H "authorization: Bearer $(<"$FERRY_CONTROL_TOKEN_FILE")" \
    -d "$2" "$CONTROL" "ferry.task.v1.TaskService/$1"
}

echo "==> creating table public.demo_orders"
psql_ferry -c "CREATE TABLE IF NOT EXISTS public.demo_orders (
  id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), placed_at timestamptz DEFAULT now())"

echo "==> creating task $TASK_ID (the password travels as a file reference, never in clear)"
spec=$(cat <<JSON
{"task_id": "$TASK_ID", "spec": {
  "name": "demo orders",
  "source": {"host": "$FERRY_PG_HOST", "port": $FERRY_PG_PORT, "database": "$FERRY_PG_DATABASE",
             "user": "$FERRY_PG_USER", "password": {"file": "$FERRY_PG_PASSWORD_FILE"}},
  "destination": {"bootstrap_servers": "$FERRY_KAFKA_BOOTSTRAP", "topic": "$TOPIC"},
  "objects": {"tables": [{"schema": "public", "table": "demo_orders"}]},
  "sync_types": {"schema": true},
  "kafka": {"conflict_mode": "CONFLICT_MODE_IGNORE"}
}}
JSON
)
if ! out=$(control CreateTask "$spec" 2>&1); then
  if grep -q AlreadyExists <<<"$out"; then
    echo "    task $TASK_ID already exists; reusing it"
  else
    echo "$out" >&2
    exit 1
  fi
fi

echo "==> waiting for incremental sync"
deadline=$((SECONDS + 60))
until control GetTask "{\"task_id\": \"$TASK_ID\"}" 2>/dev/null | grep -q '"phase": "PHASE_INCREMENTAL"'; do
  ((SECONDS < deadline)) || { echo "task $TASK_ID did not reach incremental sync in 60 s:" >&2; control GetTask "{\"task_id\": \"$TASK_ID\"}" >&2; exit 1; }
  sleep 0.5
done
# The slot's name holds a hash of the task ID; the task's state says it.
slot=$(control GetTask "{\"task_id\": \"$TASK_ID\"}" | sed -n 's/^ *"slotName": "\(.*\)",\{0,1\}$/\1/p')
[[ -n $slot ]] || { echo "task $TASK_ID reports no slot name" >&2; exit 1; }
until [[ $(psql_ferry -tAc "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'") == t ]]; do
  ((SECONDS < deadline)) || { echo "the slot never became active" >&2; exit 1; }
  sleep 0.2
done

base=$(psql_ferry -tAc "SELECT coalesce(max(id), 0) FROM public.demo_orders")
echo "==> writing rows (ids from $((base + 1)))"
start=$(date +%s%N)
psql_ferry -c "INSERT INTO public.demo_orders (id, customer, amount) VALUES
  ($((base + 1)), 'ada', 12.50), ($((base + 2)), 'grace', 99.99), ($((base + 3)), 'edsger', 0.01)"
psql_ferry -c "UPDATE public.demo_orders SET amount = amount * 2 WHERE id = $((base + 2))"
psql_ferry -c "DELETE FROM public.demo_orders WHERE id = $((base + 3))"

echo "==> messages in Kafka topic $TOPIC (Canal JSON)"
first=""
ids="\"id\":\"($((base + 1))|$((base + 2))|$((base + 3)))\""
deadline=$((SECONDS + 30))
while :; do
  got=$(kcat -b "$FERRY_KAFKA_BOOTSTRAP" -C -t "$TOPIC" -o beginning -e -q 2>/dev/null | grep -cE "$ids" || true)
  if [[ -z $first ]] && ((got > 0)); then first=$((($(date +%s%N) - start) / 1000000)); fi
  ((got >= 5)) && break
  ((SECONDS < deadline)) || { echo "only $got of 5 messages arrived in 30 s" >&2; exit 1; }
  sleep 0.2
done
kcat -b "$FERRY_KAFKA_BOOTSTRAP" -C -t "$TOPIC" -o -5 -e -q -f 'partition %p offset %o: %s\n'
echo
echo "first message visible after about ${first} ms (including kcat start-up)"
cat <<EOF2

Temporal UI:   http://127.0.0.1:8233/namespaces/default/workflows/$TASK_ID
Task state:    $GRPCURL -cacert $FERRY_TLS_CA -H "authorization: Bearer \$(cat $FERRY_CONTROL_TOKEN_FILE)" -d '{"task_id":"$TASK_ID"}' $CONTROL ferry.task.v1.TaskService/GetTask
Pause:         $TEMPORAL workflow signal --address $FERRY_TEMPORAL_ADDRESS --workflow-id $TASK_ID --name ferry.pause
Resume:        $TEMPORAL workflow signal --address $FERRY_TEMPORAL_ADDRESS --workflow-id $TASK_ID --name ferry.resume
Stop+release:  $GRPCURL -cacert $FERRY_TLS_CA -H "authorization: Bearer \$(cat $FERRY_CONTROL_TOKEN_FILE)" -d '{"task_id":"$TASK_ID","release":true}' $CONTROL ferry.task.v1.TaskService/StopTask
Stop it all:   make down
EOF2
