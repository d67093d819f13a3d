#!/usr/bin/env bash
# Relay throughput: Postfix's smtp-source → relay → smtp-sink, for mailguard and for
# Postfix itself, in the same run on the same machine, printed side by side with the ratio.
# Rows: mailguard on SQLite with 1 and N (= cores) processes; on PostgreSQL (Debian's
# postgresql: a private server started here, fsync on) with 1 node and with 2 nodes on this
# machine (each its own port, smtp-source split between them); external registered mail with
# content scanning and no hold (SQLite, 1 process); Postfix. NO_POSTGRES=1 skips the PG rows.
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
MG_PORT2=${MG_PORT2:-12527}
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
  [ -n "${PG_ROOT:-}" ] && "$PYTHON" "$HERE/pg_server.py" stop "$PG_ROOT" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || { echo "port $1 is in use (a stale run?)" >&2; exit 1; }; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
now() { date +%s.%N; }

for port in $SINK_PORT $MG_PORT $MG_PORT2 $PF_PORT; do port_free $port; done
smtp-sink -u nobody -c 127.0.0.1:$SINK_PORT 1024 >/dev/null &
pids+=($!)
wait_port $SINK_PORT

# --- mailguard: started once per row, each on a fresh data dir (and database) ---
MG_PIDS=()
start_mailguard() {   # start_mailguard PROCESSES PORT [DATABASE_URL [NAME=VALUE...]]
  local procs=$1 port=$2 url=${3:-} dir
  shift 2; [ $# -gt 0 ] && shift
  dir=$(mktemp -d "$WORK/mg.XXXX")
  (cd "$dir" && for kv in "$@"; do export "$kv"; done && \
    MAILGUARD_SMTP_LISTEN=127.0.0.1:$port MAILGUARD_DATA_DIR="$dir/var" MAILGUARD_PROCESSES=$procs \
    MAILGUARD_DATABASE_URL="$url" MAILGUARD_DNS_CHECKS=false \
    MAILGUARD_POLICIES_DIR="$REPO/policies" MAILGUARD_UPSTREAM=127.0.0.1:$SINK_PORT \
    MAILGUARD_UPSTREAM_TLS=none MAILGUARD_HOSTNAME=mailguard.bench MAILGUARD_LOG_LEVEL=WARNING \
    MAILGUARD_WEB_LISTEN= MAILGUARD_DOWNLOAD_LISTEN= \
    exec "$PYTHON" -m mailguard serve) >"$dir/serve.log" 2>&1 &
  MG_PIDS+=($!)
  MG_DB=${url:-$dir/var/mailguard.sqlite3}
  wait_port "$port"
  sleep 5   # steady state: let the content-inspection workers and receivers finish starting
}
stop_mailguard() {
  for pid in "${MG_PIDS[@]}"; do kill -TERM "$pid"; done
  for pid in "${MG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  MG_PIDS=()
}
mg_delivered() { "$PYTHON" "$HERE/pg_server.py" delivered "$MG_DB"; }

run() {   # run NAME COUNT_FUNCTION PORT [PORT2]: with PORT2, half the sessions and messages go to each
  local name=$1 count=$2 port=$3 port2=${4:-} t0 t1 t2 first
  t0=$(now)
  if [ -n "$port2" ]; then
    smtp-source -s $((SESSIONS / 2)) -m $((MESSAGES / 2)) -l "$SIZE" -f "$FROM" -t "$TO" 127.0.0.1:"$port" &
    first=$!
    smtp-source -s $((SESSIONS / 2)) -m $((MESSAGES - MESSAGES / 2)) -l "$SIZE" -f "$FROM" -t "$TO" 127.0.0.1:"$port2"
    wait $first
  else
    smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "$FROM" -t "$TO" 127.0.0.1:"$port"
  fi
  t1=$(now)
  until [ "$($count)" -ge "$MESSAGES" ]; do sleep 0.1; done
  t2=$(now)
  echo "$name|$t0|$t1|$t2" >>"$WORK/times"
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

PROCS=$(nproc)
start_mailguard 1 $MG_PORT
run "mailguard SQLite 1p" mg_delivered $MG_PORT
stop_mailguard
if [ "$PROCS" -gt 1 ]; then
  start_mailguard "$PROCS" $MG_PORT
  run "mailguard SQLite ${PROCS}p" mg_delivered $MG_PORT
  stop_mailguard
fi

if [ -z "${NO_POSTGRES:-}" ]; then
  read -r PG_ROOT PG_URL < <("$PYTHON" "$HERE/pg_server.py" start)
  url=$("$PYTHON" "$HERE/pg_server.py" database "$PG_URL")
  start_mailguard 1 $MG_PORT "$url"
  run "mailguard PG 1 node" mg_delivered $MG_PORT
  stop_mailguard
  url=$("$PYTHON" "$HERE/pg_server.py" database "$PG_URL")
  start_mailguard 1 $MG_PORT "$url"
  start_mailguard 1 $MG_PORT2 "$url"
  run "mailguard PG 2 nodes" mg_delivered $MG_PORT $MG_PORT2
  stop_mailguard
fi

# external mail to a partner in the address book: content scanned, no hold
TO=renkei@minato-hospital.example.jp
start_mailguard 1 $MG_PORT "" MAILGUARD_HOLD_DELAY=0
run "mailguard ext+scan 1p" mg_delivered $MG_PORT
stop_mailguard
TO=colleague@sakura-kaigo.example.jp

setup_postfix
run postfix pf_delivered $PF_PORT

echo
echo "$MESSAGES messages x $SIZE bytes, $SESSIONS sessions, loopback, $(nproc) cores; upstream: smtp-sink"
"$PYTHON" "$HERE/pg_server.py" table "$WORK/times" "$MESSAGES"
