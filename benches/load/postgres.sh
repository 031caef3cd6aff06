#!/usr/bin/env bash
# GetSegment and UpdateSegment under the same wrk load as run.sh (SigV4-signed, 32 keep-alive
# connections, 2 threads), on three set-ups side by side:
#   SQLite, one server | PostgreSQL, one replica | PostgreSQL, two replicas on one database
# and, as in run.sh, GetSegment on a bare axum handler sending SQLite's answer (the baseline).
#
#   bash benches/load/postgres.sh [SECONDS]
#
# Needs wrk (Debian package `wrk`), python3, and PostgreSQL 15's server binaries (as the
# tests use: /usr/lib/postgresql/15/bin, or SEGMENTCTL_PG_BIN); starts its own PostgreSQL
# (as the `postgres` user when run as root) with default durability (fsync on). Two replicas:
# two wrk runs at once, 16 connections to each; requests/s summed, p99 of each.
# UpdateSegment replays one signed request, so every request makes a new version of one
# segment: the most contended write there is (every update waits for the row lock).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-target}
venv="$target/load-venv"
pgbin=${SEGMENTCTL_PG_BIN:-/usr/lib/postgresql/15/bin}
work=$(mktemp -d)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${pgpid:-}" ] && kill -INT "$pgpid" 2>/dev/null; sleep 1; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
[ -x "$pgbin/postgres" ] || { echo "no PostgreSQL binaries in $pgbin (set SEGMENTCTL_PG_BIN)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import boto3" 2>/dev/null || "$venv/bin/pip" install -q "boto3==1.44.8"
cargo build --release --quiet --bin segmentctl --example bare_axum
bin="$target/release/segmentctl"
bare="$target/release/examples/bare_axum"

as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg" -p 4610 -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$work" -c max_connections=200 >"$work/pg.log" 2>&1 &
pgpid=$!
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p 4610 && break; sleep 0.2; done
dsn=postgres://postgres@127.0.0.1:4610/postgres

echo "AKIDLOAD load-secret-0123456789" > "$work/creds"
serve() { # port data
  "$bin" serve --listen "127.0.0.1:$1" --data "$2" --credentials-file "$work/creds" 2>>"$work/serve.log" &
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.2; done
}

run() { # connections port script → "rps p99"
  local out
  out=$(wrk -t2 -c"$1" -d"${secs}s" --latency -s "$3" "http://127.0.0.1:$2")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers" >&2; exit 1; fi
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}

printf '%-34s %12s %10s\n' "set-up / operation" "requests/s" "p99"
serve 4601 "$work/pinpoint.db"
mkdir -p "$work/sqlite"
"$venv/bin/python" benches/load/presign.py http://127.0.0.1:4601 AKIDLOAD load-secret-0123456789 "$work/sqlite"
for op in get_segment update_segment; do
  read -r r p < <(run 32 4601 "$work/sqlite/$op.lua")
  printf '%-34s %12s %10s\n' "sqlite, 1 server: $op" "$r" "$p"
  if [ "$op" = get_segment ]; then sqlite_get=$r; fi
done
"$bare" 127.0.0.1:4604 "$work/sqlite/get_segment.body" 2>>"$work/serve.log" &
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/4604) 2>/dev/null && break; sleep 0.2; done
read -r r p < <(run 32 4604 "$work/sqlite/get_segment.lua")
printf '%-34s %12s %10s\n' "bare axum: get_segment" "$r" "$p"
awk -v a="$sqlite_get" -v b="$r" 'BEGIN { printf "ratio segmentctl/bare get_segment %6.2fx (sqlite)\n", a / b }'

serve 4602 "$dsn"
serve 4603 "$dsn"
mkdir -p "$work/pgs"
"$venv/bin/python" benches/load/presign.py http://127.0.0.1:4602 AKIDLOAD load-secret-0123456789 "$work/pgs"
# Signatures cover the Host header: the second replica's requests are signed for it (its own
# app and segment, in the same database).
mkdir -p "$work/pgs2"
"$venv/bin/python" benches/load/presign.py http://127.0.0.1:4603 AKIDLOAD load-secret-0123456789 "$work/pgs2"
for op in get_segment update_segment; do
  read -r r p < <(run 32 4602 "$work/pgs/$op.lua")
  printf '%-34s %12s %10s\n' "postgres, 1 replica: $op" "$r" "$p"
done
for op in get_segment update_segment; do
  run 16 4602 "$work/pgs/$op.lua" > "$work/a" &
  one=$!
  run 16 4603 "$work/pgs2/$op.lua" > "$work/b" &
  two=$!
  wait "$one" "$two"
  read -r ra pa < "$work/a"
  read -r rb pb < "$work/b"
  total=$(awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%.2f", a + b }')
  printf '%-34s %12s %10s\n' "postgres, 2 replicas: $op" "$total" "$pa|$pb"
done
