#!/usr/bin/env bash
# Audience counting at scale: 1,000,000 generated endpoint records against 20 segments of
# mixed kinds, `segmentctl estimate` side by side with DuckDB computing the same 20 counts
# over the same file in one query. Prints records/s, wall time, peak memory and the ratio,
# and checks the counts are identical. Each side runs RUNS times (default 3), alternating;
# the medians are compared.
#
#   bash benches/audience/run.sh [RECORDS]
#
# SPARK=1 also runs the generated SQL on PySpark; SCALE=10 also counts the file repeated ten
# times (10,000,000 records by default), to show time linear and memory flat.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000000}
target=${CARGO_TARGET_DIR:-target}
venv="$target/audience-venv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb" 2>/dev/null || "$venv/bin/pip" install -q "duckdb==2.0.1"
# SPARK=1: also run the generated SQL on PySpark in local mode (installed on first use).
if [ "${SPARK:-0}" = 1 ]; then
  "$venv/bin/python" -c "import pyspark" 2>/dev/null || "$venv/bin/pip" install -q "pyspark==4.3.0"
fi
cargo build --release --quiet
"$venv/bin/python" benches/audience/audience.py generate "$work" "$n"
size=$(du -h "$work/endpoints.jsonl" | cut -f1)

measure() { # command... → prints "seconds peak_kib" and leaves the output in $work/out
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out"
  cat "$work/time"
}
# Three runs each, alternating; the median time (and its run's peak memory) counts.
runs=${RUNS:-3}
: > "$work/ours.times"; : > "$work/duck.times"
for _ in $(seq "$runs"); do
  measure "$target/release/segmentctl" estimate "$work/manifests" \
      --endpoints "$work/endpoints.jsonl" --as-of 2026-11-28T00:00:00Z --format json >> "$work/ours.times"
  cp "$work/out" "$work/ours.json"
  measure "$venv/bin/python" benches/audience/audience.py duckdb "$work" >> "$work/duck.times"
  cp "$work/out" "$work/duck.json"
done
median() { sort -n "$1" | sed -n "$(( (runs + 1) / 2 ))p"; }
read -r ours_s ours_kib < <(median "$work/ours.times")
read -r duck_s duck_kib < <(median "$work/duck.times")
# DuckDB's run includes starting Python and loading duckdb: measured apart, for a fair reading.
startup=$(measure "$venv/bin/python" -c "import duckdb; duckdb.connect().execute('select 1').fetchall()" | cut -d' ' -f1)
echo "segmentctl runs (s KiB): $(tr '\n' ';' < "$work/ours.times")"
echo "DuckDB runs (s KiB):     $(tr '\n' ';' < "$work/duck.times")"

"$venv/bin/python" - "$work" "$n" "$size" "$ours_s" "$ours_kib" "$duck_s" "$duck_kib" "$startup" <<'PY'
import json, sys
work, n, size, ours_s, ours_kib, duck_s, duck_kib, startup = sys.argv[1:]
ours = json.load(open(f"{work}/ours.json")); duck = json.load(open(f"{work}/duck.json"))
diffs = [s["segment"] for s in ours["segments"] if s["endpoints"] != duck[s["segment"]]]
n, ours_s, duck_s = int(n), float(ours_s), float(duck_s)
print(f"{n:,} records ({size}), 20 segments, 2 cores, median of the runs")
print(f"segmentctl estimate: {ours_s:6.2f} s  {n / ours_s:>12,.0f} records/s  peak {int(ours_kib) / 1024:7.1f} MiB")
print(f"DuckDB 2.0.1:        {duck_s:6.2f} s  {n / duck_s:>12,.0f} records/s  peak {int(duck_kib) / 1024:7.1f} MiB")
startup = float(startup)
print(f"ratio (DuckDB time / segmentctl time): {duck_s / ours_s:.2f}x; counts identical: {not diffs} {diffs or ''}")
print(f"without DuckDB's {startup:.2f} s of Python and module start-up: {(duck_s - startup) / ours_s:.2f}x")
sys.exit(1 if diffs else 0)
PY

# The same segments as `segmentctl sql` writes them, on the engines, over the same records
# (without the one line that is not a record: the SQL assumes records).
grep -v '^this line' "$work/endpoints.jsonl" > "$work/records.jsonl"
"$target/release/segmentctl" sql "$work/manifests" --dialect duckdb --files "$work/records.jsonl" \
    --as-of 2026-11-28T00:00:00Z > "$work/duck.sql"
"$venv/bin/python" benches/audience/engines.py duckdb "$work/duck.sql" > "$work/duck-sql.json"
if [ "${SPARK:-0}" = 1 ]; then
  "$target/release/segmentctl" sql "$work/manifests" --dialect spark --as-of 2026-11-28T00:00:00Z > "$work/spark.sql"
  "$target/release/segmentctl" sql "$work/manifests" --dialect spark --schema > "$work/spark.ddl"
  "$venv/bin/python" benches/audience/engines.py spark "$work/spark.ddl" "$work/spark.sql" "$work/records.jsonl" > "$work/spark-sql.json"
fi
"$venv/bin/python" - "$work" "$ours_s" <<'PY'
import json, os, sys
work, ours_s = sys.argv[1], float(sys.argv[2])
ours = {s["segment"]: s["endpoints"] for s in json.load(open(f"{work}/ours.json"))["segments"]}
for engine in ["duck", "spark"]:
    path = f"{work}/{engine}-sql.json"
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    same = all(int(r["counts"][k]) == v for k, v in ours.items())
    extra = f" (+ {r['startup']:.1f} s session start)" if "startup" in r else ""
    name = {"duck": "DuckDB 2.0.1", "spark": "Spark 4.3.0 local[2]"}[engine]
    print(f"{name}, segmentctl sql: {r['seconds']:6.2f} s{extra}; {r['seconds'] / ours_s:.2f}x segmentctl's time; counts identical: {same}")
    if not same:
        sys.exit(1)
PY

# SCALE=K: the same file K times over, counted once: time and peak memory, counts K times.
if [ "${SCALE:-0}" -gt 1 ]; then
  for _ in $(seq "$SCALE"); do cat "$work/endpoints.jsonl"; done > "$work/scaled.jsonl"
  rm -f "$work/records.jsonl"
  big=$(du -h "$work/scaled.jsonl" | cut -f1)
  read -r big_s big_kib < <(measure "$target/release/segmentctl" estimate "$work/manifests" \
      --endpoints "$work/scaled.jsonl" --as-of 2026-11-28T00:00:00Z --format json)
  cp "$work/out" "$work/scaled.json"
  "$venv/bin/python" - "$work" "$SCALE" "$n" "$big" "$big_s" "$big_kib" "$ours_s" "$ours_kib" <<'PY'
import json, sys
work, k, n, big, big_s, big_kib, ours_s, ours_kib = sys.argv[1:]
k, n = int(k), int(n)
one = {s["segment"]: s["endpoints"] for s in json.load(open(f"{work}/ours.json"))["segments"]}
many = {s["segment"]: s["endpoints"] for s in json.load(open(f"{work}/scaled.json"))["segments"]}
same = all(many[s] == k * c for s, c in one.items())
big_s, ours_s = float(big_s), float(ours_s)
print(f"{k * n:,} records ({big}): {big_s:.2f} s ({big_s / ours_s:.1f}x the time of {n:,}), "
      f"peak {int(big_kib) / 1024:.1f} MiB (vs {int(ours_kib) / 1024:.1f}); counts {k}x: {same}")
sys.exit(0 if same else 1)
PY
fi
