"""Runs queries with DuckDB: argv[1] is a JSON file {"name": sql, ...}; prints
{"name": rows} where rows are lists of values."""
import json
import sys

import duckdb

queries = json.load(open(sys.argv[1]))
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
out = {}
for name, sql in queries.items():
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    out[name] = {"columns": cols, "rows": [list(r) for r in cur.fetchall()]}
print(json.dumps(out, default=str))
