#!/usr/bin/env bash
# A local Apache Kafka (KRaft) for development, tests and benchmarks — one command.
#
#   scripts/kafka.sh start [--port 9092] [--nodes 1|3] [--dir DIR] [--heap 1g] [--watch-pid PID]
#                          [--ephemeral] [--keep-data] [--sasl]
#   scripts/kafka.sh stop|kill|status|logs [--dir DIR] [-n LINES]
#   scripts/kafka.sh fetch                 # only download the broker (Maven Central) into the cache
#
# The broker is the Apache Kafka release named in tools/kafka/pom.xml (the version of
# k8s/kafka.yaml), fetched with Maven with its runtime dependencies into tools/kafka/lib (ignored);
# a second start needs no network. `start` formats KRaft storage (every node is broker +
# controller), starts the node(s) on 127.0.0.1, waits until each answers a metadata request, and
# prints the bootstrap address on stdout (everything else goes to stderr). `--watch-pid PID`
# stops the broker once that process is gone; `--ephemeral` deletes DIR when it stops (tests).
# `kill` is `kill -9` of every node (fault tests); `start --keep-data` restarts the nodes of DIR
# on their data instead of formatting afresh. `--sasl`: clients must authenticate with
# SASL/SCRAM-SHA-512 (listener SASL_PLAINTEXT) and the standard authorizer allows nothing without
# an ACL — as the Strimzi cluster in k8s/ — with one super user, admin / admin-secret, to create
# topics, users and ACLs (tests/acl.rs).
#
# One node: offsets/transaction-state replication 1, min ISR 1. Three nodes (`--nodes 3`, ports
# PORT..PORT+2): replication factor 3 and min ISR 2, as in k8s/kafka.yaml. Controllers listen on
# the broker port + 1000. Broker settings follow k8s/kafka.yaml (no topic auto-creation); the
# rest are Kafka's defaults (1 MB messages, CreateTime at most 1 h in the future…), which the
# embedded mock broker never enforced.
#
# Environment: KAFKA_PORT (default 9092), KAFKA_LOCAL_DIR (state; default tools/kafka/run),
# KAFKA_HEAP (default 1g per node), KAFKA_START_TIMEOUT (seconds, default 120), KAFKA_TOOL_DIR
# (where pom.xml and the jar cache are; default tools/kafka), KAFKA_MVN_FLAGS (extra Maven flags,
# e.g. -o for offline).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tool=${KAFKA_TOOL_DIR:-$here/tools/kafka}
lib="$tool/lib"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

cmd=${1:-}
[ -n "$cmd" ] && shift || true
port=${KAFKA_PORT:-9092}
nodes=1
dir=${KAFKA_LOCAL_DIR:-$tool/run}
heap=${KAFKA_HEAP:-1g}
watch_pid=""
ephemeral=0
keep=0
lines=60
sasl=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --heap) heap=${2:?--heap needs a value}; shift 2 ;;
    --watch-pid) watch_pid=${2:?--watch-pid needs a value}; shift 2 ;;
    --ephemeral) ephemeral=1; shift ;;
    --keep-data) keep=1; shift ;;
    --sasl) sasl=1; shift ;;
    -n) lines=${2:?-n needs a value}; shift 2 ;;
    *) die "unknown argument $1 (see the top of scripts/kafka.sh)" ;;
  esac
done
case "$nodes" in 1|3) ;; *) die "--nodes must be 1 or 3, not $nodes" ;; esac
case "$port" in ''|*[!0-9]*) die "--port must be a number, not $port" ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# stop/kill/status/logs (and start --keep-data) act on what `start` recorded there.
if { [ "$cmd" != start ] || [ "${keep:-0}" = 1 ]; } && [ -f "$dir/cluster.env" ]; then
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
fi

node_port() { echo $((port + $1 - 1)); }
controller_port() { echo $((port + 1000 + $1 - 1)); }
bootstrap() {
  local i out=""
  for i in $(seq 1 "$nodes"); do out="${out:+$out,}127.0.0.1:$(node_port "$i")"; done
  echo "$out"
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
java_cmd() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; return; fi
  command -v java || true
}

fetch() {
  local stamp="$lib/.pom.sha256" want
  want=$(sha256sum "$tool/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is not installed: it fetches the broker from Maven Central (apt-get install maven)"
  say "fetching Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$tool/pom.xml") from Maven Central into $lib"
  rm -rf "$lib.tmp"
  local log="$tool/mvn.log"
  # shellcheck disable=SC2086
  if ! mvn -B -q ${KAFKA_MVN_FLAGS:-} -f "$tool/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$lib.tmp" -DincludeScope=runtime >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "Maven could not resolve the broker (full log: $log)"
  fi
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  echo "$want" >"$lib/.pom.sha256"
}

pids() { cat "$dir"/node*/pid 2>/dev/null || true; }
alive() { local p; for p in $(pids); do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

node_config() {
  local i=$1 ndir=$2 voters="" j rf=1 isr=1
  for j in $(seq 1 "$nodes"); do voters="${voters:+$voters,}$j@127.0.0.1:$(controller_port "$j")"; done
  if [ "$nodes" -eq 3 ]; then rf=3; isr=2; fi
  local client=PLAINTEXT
  [ "$sasl" = 1 ] && client=SASL_PLAINTEXT
  cat <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$client://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=$client://127.0.0.1:$(node_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=$client
listener.security.protocol.map=$client:$client,CONTROLLER:PLAINTEXT
log.dirs=$ndir/data
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Retention is enforced within seconds, not Kafka's default 5 minutes (tests shorten it).
log.retention.check.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if [ "$sasl" = 1 ]; then
    # The controller listener stays PLAINTEXT on 127.0.0.1 (its principal is ANONYMOUS, which
    # therefore must be a super user); clients reach only the SASL listener.
    cat <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS
EOF
  fi
}

log_config() {
  cat <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $1/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
}

show_logs() {
  local f
  for f in "$dir"/node*/server.log "$dir"/node*/stdout.log; do
    [ -s "$f" ] || continue
    echo "--- last $lines lines of $f" >&2
    tail -n "$lines" "$f" >&2
  done
}

stop() {
  local p any=0
  for p in $(pids); do
    if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; any=1; fi
  done
  local deadline=$((SECONDS + 30))
  while alive && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  for p in $(pids); do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$dir"/node*/pid
  [ $any -eq 1 ] && say "stopped" || say "not running"
  if [ "$ephemeral" = 1 ]; then rm -rf "$dir"; fi
}

ready() {
  # Every node answers a metadata request and the cluster has all its brokers.
  local i out
  command -v kcat >/dev/null 2>&1 || die "kcat is not installed (scripts/setup.sh installs it)"
  for i in $(seq 1 "$nodes"); do
    if [ "$sasl" = 1 ]; then
      # Debian's kcat (librdkafka 1.x) fails SCRAM-SHA-512 against Kafka 4 where librdkafka 2.x
      # succeeds: wait for the node's own start-up line and its listener instead.
      grep -q "Kafka Server started" "$dir/node$i/server.log" 2>/dev/null || return 1
      port_in_use "$(node_port "$i")" || return 1
      continue
    fi
    out=$(kcat -b "127.0.0.1:$(node_port "$i")" -L -m 2 2>/dev/null) || return 1
    grep -q " $nodes brokers:" <<<"$out" || return 1
  done
}

start() {
  if alive; then
    if ready; then say "already running"; bootstrap; return 0; fi
    die "a broker from $dir is running but not answering; scripts/kafka.sh stop --dir $dir"
  fi
  local java; java=$(java_cmd)
  [ -n "$java" ] || die "Java is not installed (the broker needs Java 17+: apt-get install openjdk-17-jre-headless)"
  fetch
  local i p
  for i in $(seq 1 "$nodes"); do
    for p in $(node_port "$i") $(controller_port "$i"); do
      port_in_use "$p" && die "port $p on 127.0.0.1 is taken (choose another with --port)"
    done
  done
  if [ "$keep" = 1 ] && [ -f "$dir/node1/server.properties" ]; then
    say "restarting on the data in $dir"
  else
    format_nodes "$java"
  fi
  launch "$java"
}

format_nodes() {
  local java=$1 i
  rm -rf "$dir"/node*
  local cluster; cluster=$("$java" -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  [ -n "$cluster" ] || die "could not run Kafka's storage tool with $java"
  rm -f "$dir/cluster.env"
  for i in $(seq 1 "$nodes"); do
    local ndir="$dir/node$i"
    mkdir -p "$ndir"
    node_config "$i" "$ndir" >"$ndir/server.properties"
    log_config "$ndir" >"$ndir/log4j2.properties"
    local scram=()
    [ "$sasl" = 1 ] && scram=(--add-scram 'SCRAM-SHA-512=[name="admin",password="admin-secret"]')
    if ! "$java" -Dlog4j2.configurationFile="$ndir/log4j2.properties" -cp "$lib/*" \
          kafka.tools.StorageTool format -t "$cluster" -c "$ndir/server.properties" "${scram[@]}" \
          >"$ndir/format.log" 2>&1; then
      cat "$ndir/format.log" >&2
      die "formatting KRaft storage of node $i failed"
    fi
  done
}

launch() {
  local java=$1 i p
  for i in $(seq 1 "$nodes"); do
    local ndir="$dir/node$i"
    # setsid: the broker outlives this shell and is not killed with the caller's process group.
    setsid nohup "$java" -Xms256m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$ndir/log4j2.properties" \
      -cp "$lib/*" kafka.Kafka "$ndir/server.properties" >"$ndir/stdout.log" 2>&1 </dev/null &
    echo $! >"$ndir/pid"
  done
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  until ready; do
    for p in $(pids); do
      if ! kill -0 "$p" 2>/dev/null; then
        show_logs
        stop >/dev/null 2>&1 || true
        die "a broker process exited during start (its last log lines are above)"
      fi
    done
    if [ $SECONDS -ge $deadline ]; then
      show_logs
      stop >/dev/null 2>&1 || true
      die "no metadata answer within ${KAFKA_START_TIMEOUT:-120}s (its last log lines are above)"
    fi
    sleep 0.5
  done
  if [ -n "$watch_pid" ]; then
    # Stop the broker when the process that asked for it is gone (test runs).
    setsid nohup bash -c 'while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec "$1" stop --dir "$2"' \
      "$watch_pid" "$here/scripts/kafka.sh" "$dir" >/dev/null 2>&1 </dev/null &
  fi
  printf 'port=%s\nnodes=%s\nephemeral=%s\nsasl=%s\n' "$port" "$nodes" "$ephemeral" "$sasl" >"$dir/cluster.env"
  say "Apache Kafka ($nodes node(s)) at $(bootstrap); data and logs in $dir"
  bootstrap
}

status() {
  if alive; then
    if ready; then echo "running at $(bootstrap)"; return 0; fi
    echo "running but not answering metadata requests (scripts/kafka.sh logs)"; return 1
  fi
  echo "not running"; return 3
}

crash() {
  local p
  for p in $(pids); do kill -9 "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 10))
  while alive && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  rm -f "$dir"/node*/pid
  say "killed (kill -9)"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  kill) crash ;;
  status) status ;;
  logs) show_logs ;;
  fetch) fetch; say "broker jars in $lib" ;;
  *) die "usage: scripts/kafka.sh start|stop|kill|status|logs|fetch [--port N] [--nodes 1|3] [--dir DIR] [--heap SIZE] [--watch-pid PID] [--ephemeral] [--keep-data] [--sasl] [-n LINES]" ;;
esac
