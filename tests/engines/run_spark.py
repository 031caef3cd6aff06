"""Runs queries on PySpark in local mode with the runner of examples/engines/: argv[1] is a
JSON file {"schema": ddl, "records": path, "view": "endpoints" or "profiles",
"queries": {"name": sql}}; prints
{"name": {"columns": [...], "rows": [[...]]}}."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "engines"))
import spark_segments  # noqa: E402

job = json.load(open(sys.argv[1]))
spark = spark_segments.session("local[2]")
spark.sparkContext.setLogLevel("ERROR")
if job.get("view") == "profiles":
    spark_segments.profiles(spark, job["schema"].strip(), job["records"])
else:
    spark_segments.endpoints(spark, job["schema"].strip(), job["records"])
out = {}
for name, sql in job["queries"].items():
    rows = spark_segments.run(spark, sql)
    cols = list(rows[0].keys()) if rows else []
    out[name] = {"columns": cols, "rows": [[r[c] for c in cols] for r in rows]}
spark.stop()
print(json.dumps(out, default=str))
