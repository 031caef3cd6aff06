#!/usr/bin/env bash
# Load run for `segmentctl serve`, side by side with moto's server and a bare axum handler.
#
#   bash benches/load/run.sh [SECONDS]
#
# Needs wrk (Debian package `wrk`) and python3; installs boto3 and moto[server] into a
# virtualenv under the target directory. Both servers run as separate processes on this
# machine; wrk replays SigV4-signed requests over 32 keep-alive connections on 2 threads.
# Reports requests per second and p99 latency per operation, and the ratio to moto on the
# operations both implement (GetApps, GetApp). The bare axum handler (examples/bare_axum.rs)
# answers GetSegment's path with segmentctl's own answer, captured at start, and does no other
# work: the ratio to it says how much of the machine's HTTP speed the server keeps.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-target}
venv="$target/load-venv"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import boto3, moto" 2>/dev/null || "$venv/bin/pip" install -q "boto3==1.44.8" "moto[server]==5.1.22"
cargo build --release --quiet --bin segmentctl --example bare_axum
bin="$target/release/segmentctl"
bare="$target/release/examples/bare_axum"

echo "AKIDLOAD load-secret-0123456789" > "$work/creds"
"$bin" serve --listen 127.0.0.1:4601 --data "$work/pinpoint.db" --credentials-file "$work/creds" 2>"$work/serve.log" &
"$venv/bin/moto_server" -p 4602 >"$work/moto.log" 2>&1 &
for port in 4601 4602; do
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
done

mkdir -p "$work/ours" "$work/moto"
"$venv/bin/python" benches/load/presign.py http://127.0.0.1:4601 AKIDLOAD load-secret-0123456789 "$work/ours"
"$venv/bin/python" benches/load/presign.py http://127.0.0.1:4602 AKIDLOAD load-secret-0123456789 "$work/moto" --moto
"$bare" 127.0.0.1:4603 "$work/ours/get_segment.body" 2>"$work/bare.log" &
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/4603) 2>/dev/null && break; sleep 0.2; done

run() { # server port script → "rps p99"
  local out
  out=$(wrk -t2 -c32 -d"${secs}s" --latency -s "$3" "http://127.0.0.1:$2")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers from $1" >&2; exit 1; fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $p99"
}

printf '%-28s %14s %10s\n' "server / operation" "requests/s" "p99"
declare -A rps
# GetSegment on segmentctl and on the bare handler one after the other, for the ratio.
read -r r p < <(run segmentctl 4601 "$work/ours/get_segment.lua")
rps[ours_get_segment]=$r
printf '%-28s %14s %10s\n' "segmentctl get_segment" "$r" "$p"
read -r r p < <(run bare 4603 "$work/ours/get_segment.lua")
rps[bare_get_segment]=$r
printf '%-28s %14s %10s\n' "bare axum get_segment" "$r" "$p"
for op in create_segment get_app get_apps; do
  read -r r p < <(run segmentctl 4601 "$work/ours/$op.lua")
  rps[ours_$op]=$r
  printf '%-28s %14s %10s\n' "segmentctl $op" "$r" "$p"
done
for op in get_app get_apps; do
  read -r r p < <(run moto 4602 "$work/moto/$op.lua")
  rps[moto_$op]=$r
  printf '%-28s %14s %10s\n' "moto $op" "$r" "$p"
done
awk -v a="${rps[ours_get_segment]}" -v b="${rps[bare_get_segment]}" 'BEGIN { printf "ratio segmentctl/bare get_segment %6.2fx\n", a / b }'
for op in get_app get_apps; do
  awk -v a="${rps[ours_$op]}" -v b="${rps[moto_$op]}" -v op="$op" 'BEGIN { printf "ratio segmentctl/moto %-8s %8.1fx\n", op, a / b }'
done
