"""Runs `segmentctl sql` output on an engine and times it.

  engines.py duckdb SQL_FILE            -> {"seconds": s, "counts": {...}}
  engines.py spark SCHEMA_FILE SQL_FILE RECORDS  -> {"seconds": s, "startup": s, "counts": {...}}

`seconds` is the query alone (Spark: reading and counting, after the session started).
"""
import json
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
mode = sys.argv[1]
if mode == "duckdb":
    import duckdb

    con = duckdb.connect()
    t = time.time()
    cur = con.execute(open(sys.argv[2]).read())
    row = cur.fetchone()
    seconds = time.time() - t
    names = [d[0] for d in cur.description]
    print(json.dumps({"seconds": seconds, "counts": dict(zip(names, row))}))
elif mode == "spark":
    sys.path.insert(0, os.path.join(here, "..", "..", "examples", "engines"))
    import spark_segments

    t = time.time()
    spark = spark_segments.session("local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.time() - t
    t = time.time()
    spark_segments.endpoints(spark, open(sys.argv[2]).read().strip(), sys.argv[4])
    rows = spark_segments.run(spark, open(sys.argv[3]).read())
    seconds = time.time() - t
    print(json.dumps({"seconds": seconds, "startup": startup, "counts": rows[0]}))
