#!/usr/bin/env bash
# Relay throughput: Postfix's smtp-source → relay → smtp-sink, for mailguard and for
# Postfix itself, in the same run on the same machine, printed side by side.
#
#   bench/relay_throughput.sh [MESSAGES] [SIZE_BYTES] [SESSIONS]     (default 4000 20480 20)
#
# Needs Debian's postfix package (smtp-source, smtp-sink, postfix) and root (smtp-sink
# and a private Postfix instance). Only loopback addresses are used. Internal recipients,
# so mailguard delivers at once (no hold). "accepted/s" is until smtp-source has its
# last 250; "end to end/s" is until the last message is delivered to smtp-sink.
set -euo pipefail
MESSAGES=${1:-4000}
SIZE=${2:-20480}
SESSIONS=${3:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
WORK=$(mktemp -d /tmp/mailguard-bench.XXXXXX)
chmod 755 "$WORK"   # the postfix user must reach its queue and data directories
SINK_PORT=${SINK_PORT:-12600}
MG_PORT=${MG_PORT:-12525}
PF_PORT=${PF_PORT:-12526}
FROM=staff@sakura-kaigo.example.jp
TO=colleague@sakura-kaigo.example.jp
PYTHON=${PYTHON:-python3}

for tool in smtp-source smtp-sink postfix; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install postfix" >&2; exit 2; }
done

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/postfix/main.cf" ] && postfix -c "$WORK/postfix" stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || { echo "port $1 is in use (a stale run?)" >&2; exit 1; }; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
now() { date +%s.%N; }

for port in $SINK_PORT $MG_PORT $PF_PORT; do port_free $port; done
smtp-sink -u nobody -c 127.0.0.1:$SINK_PORT 1024 >/dev/null &
pids+=($!)
wait_port $SINK_PORT

# --- mailguard: started once per row (MAILGUARD_PROCESSES), each on a fresh data dir ---
start_mailguard() {   # start_mailguard PROCESSES
  local dir=$WORK/mg$1
  mkdir -p "$dir"
  (cd "$dir" && \
    MAILGUARD_SMTP_LISTEN=127.0.0.1:$MG_PORT MAILGUARD_DATA_DIR="$dir/var" MAILGUARD_PROCESSES=$1 \
    MAILGUARD_POLICIES_DIR="$REPO/policies" MAILGUARD_UPSTREAM=127.0.0.1:$SINK_PORT \
    MAILGUARD_UPSTREAM_TLS=none MAILGUARD_HOSTNAME=mailguard.bench MAILGUARD_LOG_LEVEL=WARNING \
    MAILGUARD_WEB_LISTEN= MAILGUARD_DOWNLOAD_LISTEN= \
    exec "$PYTHON" -m mailguard serve) >"$dir/serve.log" 2>&1 &
  MG_PID=$!
  MG_DB="$dir/var/mailguard.sqlite3"
  wait_port $MG_PORT
  sleep 5   # steady state: let the content-inspection workers and receivers finish starting
}
stop_mailguard() { kill -TERM "$MG_PID"; wait "$MG_PID" 2>/dev/null || true; }

mg_delivered() {
  "$PYTHON" - "$MG_DB" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
print(db.execute("SELECT count(*) FROM messages WHERE state = 'delivered'").fetchone()[0])
EOF
}

run() {   # run NAME PORT COUNT_FUNCTION
  local name=$1 port=$2 count=$3 t0 t1 t2
  t0=$(now)
  smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "$FROM" -t "$TO" 127.0.0.1:"$port"
  t1=$(now)
  until [ "$($count)" -ge "$MESSAGES" ]; do sleep 0.1; done
  t2=$(now)
  "$PYTHON" -c "import sys; n=$MESSAGES; a=$t1-$t0; e=$t2-$t0; print(f'{sys.argv[1]:<13} {n:>8} {a:>9.2f}s {n/a:>12.0f} {e:>9.2f}s {n/e:>14.0f}')" "$name" >>"$WORK/results"
}

# --- Postfix: a private instance with its own config and queue ------------------------
setup_postfix() {
  local dir=$WORK/postfix
  mkdir -p "$dir" "$WORK/pfqueue" "$WORK/pfdata"
  cp /etc/postfix/master.cf "$dir/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$dir/master.cf"
  sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$PF_PORT inet n - n - - smtpd/" "$dir/master.cf"
  grep -q "^127.0.0.1:$PF_PORT" "$dir/master.cf" || { echo "could not set the Postfix listener" >&2; exit 1; }
  cat >"$dir/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/pfqueue
data_directory = $WORK/pfdata
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
relayhost = [127.0.0.1]:$SINK_PORT
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = $WORK
maillog_file = $WORK/postfix.log
smtp_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
EOF
  postfix -c "$dir" set-permissions >/dev/null 2>&1 || true
  postfix -c "$dir" check
  postfix -c "$dir" start >/dev/null
  wait_port $PF_PORT
}
pf_delivered() { grep -c "status=sent" "$WORK/postfix.log" 2>/dev/null || echo 0; }

printf '%-13s %8s %10s %12s %10s %14s\n' relay messages accepted "accepted/s" "e2e" "end to end/s" >"$WORK/results"
PROCS=$(nproc)
start_mailguard 1
run "mailguard 1p" $MG_PORT mg_delivered
stop_mailguard
if [ "$PROCS" -gt 1 ]; then
  start_mailguard "$PROCS"
  run "mailguard ${PROCS}p" $MG_PORT mg_delivered
  stop_mailguard
fi
setup_postfix
run postfix $PF_PORT pf_delivered

echo
echo "$MESSAGES messages x $SIZE bytes, $SESSIONS sessions, loopback, $(nproc) cores; upstream: smtp-sink"
cat "$WORK/results"
