"""Run segmentctl's SQL on Spark over endpoint records (Pinpoint's NDJSON export).

  segmentctl sql segments --dialect spark > counts.sql
  segmentctl sql segments --dialect spark --schema > schema.ddl
  spark-submit spark_segments.py schema.ddl counts.sql s3://bucket/export/   # or a local path

Prints the result rows as JSON lines. The session time zone is pinned to UTC (the SQL does
not depend on it: instants are computed from their text), and the records are read with the
schema segmentctl printed, so a field a segment reads always has the type it expects.
"""

import json
import sys

from pyspark.sql import SparkSession


def session(master=None):
    builder = SparkSession.builder.appName("segmentctl-segments")
    if master:
        builder = builder.master(master)
    return (builder.config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .getOrCreate())


def endpoints(spark, schema, path):
    """The records as the view `endpoints` (gzip parts are read as they are)."""
    spark.read.schema(schema).json(path).createOrReplaceTempView("endpoints")


def profiles(spark, schema, path):
    """Customer Profiles profiles (NDJSON Profile objects) as the view `profiles`, for the
    SQL of `segmentctl sql --customer-profiles`."""
    spark.read.schema(schema).json(path).createOrReplaceTempView("profiles")


def run(spark, sql):
    return [row.asDict() for row in spark.sql(sql.strip().rstrip(";")).collect()]


if __name__ == "__main__":
    schema_file, sql_file, path = sys.argv[1:4]
    spark = session(sys.argv[4] if len(sys.argv) > 4 else None)
    endpoints(spark, open(schema_file).read().strip(), path)
    for row in run(spark, open(sql_file).read()):
        print(json.dumps(row))
