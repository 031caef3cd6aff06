"""Endpoint records, 20 segments of every kind, and DuckDB's independent count of each.

  audience.py generate DIR N   writes DIR/manifests/segments.yaml and DIR/endpoints.jsonl
  audience.py duckdb DIR       prints {"segment": count, ...} computed by DuckDB over the file

Each segment is written twice, by hand: as a manifest (for segmentctl's evaluator) and as a
SQL predicate following the rules the README states (missing values never satisfy INCLUSIVE,
CONTAINS, dates, metrics or GPS; they always satisfy EXCLUSIVE and NOT_BETWEEN; BETWEEN
includes its bounds; ON compares UTC dates; recency uses EffectiveDate).
"""

import json
import random
import sys
from pathlib import Path

APP = "0123456789abcdef0123456789abcdef"
AS_OF = "2026-11-28T00:00:00Z"


def ts(col):
    return f"TRY_CAST({col} AS TIMESTAMPTZ)"


def any_ts(col, cond):
    return f"coalesce(list_bool_or(list_transform({col}, lambda x: coalesce({cond.replace('{t}', ts('x'))}, false))), false)"


HAV = ("2 * 6371.0088 * asin(sqrt(pow(sin(radians(Location.Latitude - 47.6062) / 2), 2) + cos(radians(47.6062)) * "
       "cos(radians(Location.Latitude)) * pow(sin(radians(Location.Longitude + 122.3321) / 2), 2)))")

SEGMENTS = [
    ("us", "Dimensions: {Location: {Country: {Values: [US]}}}", "coalesce(Location.Country IN ('US'), false)"),
    ("north-america", "Dimensions: {Location: {Country: {Values: [US, CA, MX]}}}", "coalesce(Location.Country IN ('US','CA','MX'), false)"),
    ("not-us", "Dimensions: {Location: {Country: {DimensionType: EXCLUSIVE, Values: [US]}}}", "NOT coalesce(Location.Country IN ('US'), false)"),
    ("ios", "Dimensions: {Demographic: {Platform: {Values: [iOS]}}}", "coalesce(Demographic.Platform = 'iOS', false)"),
    ("not-android", "Dimensions: {Demographic: {Platform: {DimensionType: EXCLUSIVE, Values: [Android]}}}", "NOT coalesce(Demographic.Platform = 'Android', false)"),
    ("sms-email", "Dimensions: {Demographic: {Channel: {Values: [SMS, EMAIL]}}}", "coalesce(ChannelType IN ('SMS','EMAIL'), false)"),
    ("premium", "Dimensions: {Attributes: {plan: {Values: [premium]}}}", "coalesce(list_has_any(Attributes.plan, ['premium']), false)"),
    ("not-free", "Dimensions: {Attributes: {plan: {AttributeType: EXCLUSIVE, Values: [free]}}}", "NOT coalesce(list_has_any(Attributes.plan, ['free']), false)"),
    ("likes-music", "Dimensions: {Attributes: {interests: {AttributeType: CONTAINS, Values: [usic]}}}",
     "coalesce(list_bool_or(list_transform(Attributes.interests, lambda x: contains(x, 'usic'))), false)"),
    ("signed-before-june", "Dimensions: {Attributes: {signup: {AttributeType: BEFORE, Values: ['2026-06-01T00:00:00Z']}}}",
     any_ts("Attributes.signup", "{t} < TIMESTAMPTZ '2026-06-01 00:00:00+00'")),
    ("signed-after-sept", "Dimensions: {Attributes: {signup: {AttributeType: AFTER, Values: ['2026-09-01T00:00:00Z']}}}",
     any_ts("Attributes.signup", "{t} > TIMESTAMPTZ '2026-09-01 00:00:00+00'")),
    ("signed-march-1", "Dimensions: {Attributes: {signup: {AttributeType: ON, Values: ['2026-03-01T12:00:00Z']}}}",
     any_ts("Attributes.signup", "CAST(timezone('UTC', {t}) AS DATE) = DATE '2026-03-01'")),
    ("signed-q2", "Dimensions: {Attributes: {signup: {AttributeType: BETWEEN, Values: ['2026-04-01T00:00:00Z', '2026-06-30T23:59:59Z']}}}",
     any_ts("Attributes.signup", "{t} BETWEEN TIMESTAMPTZ '2026-04-01 00:00:00+00' AND TIMESTAMPTZ '2026-06-30 23:59:59+00'")),
    ("signed-outside-q2", "Dimensions: {Attributes: {signup: {AttributeType: NOT_BETWEEN, Values: ['2026-04-01T00:00:00Z', '2026-06-30T23:59:59Z']}}}",
     "NOT " + any_ts("Attributes.signup", "{t} BETWEEN TIMESTAMPTZ '2026-04-01 00:00:00+00' AND TIMESTAMPTZ '2026-06-30 23:59:59+00'")),
    ("heavy", "Dimensions: {Metrics: {sessions: {ComparisonOperator: GREATER_THAN_OR_EQUAL, Value: 20}}}", "coalesce(Metrics.sessions >= 20, false)"),
    ("big-spender", "Dimensions: {Metrics: {spend: {ComparisonOperator: GREATER_THAN, Value: 1000}}}", "coalesce(Metrics.spend > 1000, false)"),
    ("gold-tier", "Dimensions: {UserAttributes: {tier: {Values: [gold, platinum]}}}", "coalesce(list_has_any(\"User\".UserAttributes.tier, ['gold','platinum']), false)"),
    ("near-seattle", "Dimensions: {Location: {GPSPoint: {Coordinates: {Latitude: 47.6062, Longitude: -122.3321}, RangeInKilometers: 50}}}",
     f"coalesce({HAV} <= 50, false)"),
    ("active-week", "Dimensions: {Behavior: {Recency: {RecencyType: ACTIVE, Duration: DAY_7}}}",
     "coalesce(TRY_CAST(EffectiveDate AS TIMESTAMPTZ) BETWEEN TIMESTAMPTZ '2026-11-21 00:00:00+00' AND TIMESTAMPTZ '2026-11-28 00:00:00+00', false)"),
    ("us-ios-engaged", "SegmentGroups: {Include: ALL, Groups: [{SourceType: ALL, SourceSegments: [{Ref: us}, {Ref: ios}], Type: ANY, "
     "Dimensions: [{Metrics: {sessions: {ComparisonOperator: GREATER_THAN_OR_EQUAL, Value: 20}}}, {Attributes: {plan: {Values: [premium]}}}]}]}",
     None),
]
PRED = {name: pred for name, _, pred in SEGMENTS}
PRED["us-ios-engaged"] = f"({PRED['us']}) AND ({PRED['ios']}) AND (({PRED['heavy']}) OR ({PRED['premium']}))"


def maybe(rng, p, value):
    return value if rng.random() < p else None


def record(rng):
    def date():
        if rng.random() < 0.05:
            return "unknown"
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"

    e = {"ChannelType": rng.choice(["SMS", "EMAIL", "APNS", "GCM"]), "Address": f"a{rng.randint(0, 10**9)}"}
    demo = {k: v for k, v in {"Platform": maybe(rng, 0.9, rng.choice(["iOS", "Android", "ios"])), "AppVersion": rng.choice(["1.0", "2.0"])}.items() if v}
    e["Demographic"] = demo
    loc = {}
    if rng.random() < 0.9:
        loc["Country"] = rng.choice(["US", "CA", "MX", "FR", "DE", "us"])
    if rng.random() < 0.8:
        loc["Latitude"] = round(47.6 + rng.uniform(-1.5, 1.5), 4)
        loc["Longitude"] = round(-122.3 + rng.uniform(-1.5, 1.5), 4)
    e["Location"] = loc
    attrs = {}
    if rng.random() < 0.85:
        attrs["plan"] = [rng.choice(["free", "premium", "trial"])]
    if rng.random() < 0.7:
        attrs["interests"] = rng.sample(["music", "Music", "sport", "books", "film"], rng.randint(0, 3))
    if rng.random() < 0.9:
        attrs["signup"] = [date() for _ in range(rng.randint(1, 2))]
    e["Attributes"] = attrs
    e["Metrics"] = {k: v for k, v in {"sessions": maybe(rng, 0.9, rng.randint(0, 40)), "spend": maybe(rng, 0.8, round(rng.uniform(0, 3000), 2))}.items() if v is not None}
    if rng.random() < 0.8:
        e["User"] = {"UserId": f"u{rng.randint(0, 10**6)}", "UserAttributes": {"tier": [rng.choice(["gold", "silver", "platinum", "bronze"])]}}
    if rng.random() < 0.95:
        e["EffectiveDate"] = f"2026-{rng.randint(10, 11):02d}-{rng.randint(1, 30 if True else 28):02d}T{rng.randint(0, 23):02d}:00:00Z".replace("-11-30", "-11-29")
    return e


def generate(out, n):
    out = Path(out)
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    docs = []
    for name, spec, _ in SEGMENTS:
        docs.append(f"apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, application: {APP}}}\nspec:\n  Name: {name}\n  {spec}\n")
    (out / "manifests" / "segments.yaml").write_text("---\n".join(docs))
    rng = random.Random(20261128)
    with open(out / "endpoints.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps(record(rng), separators=(",", ":")))
            f.write("\n")
            if i == 3:
                f.write("this line is not an endpoint record\n")


def duckdb_counts(out):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    columns = {
        "ChannelType": "VARCHAR",
        "Demographic": "STRUCT(Platform VARCHAR, AppVersion VARCHAR)",
        "Location": "STRUCT(Country VARCHAR, Latitude DOUBLE, Longitude DOUBLE)",
        "Attributes": "STRUCT(plan VARCHAR[], interests VARCHAR[], signup VARCHAR[])",
        "Metrics": "STRUCT(sessions DOUBLE, spend DOUBLE)",
        "User": "STRUCT(UserId VARCHAR, UserAttributes STRUCT(tier VARCHAR[]))",
        "EffectiveDate": "VARCHAR",
    }
    path = str(Path(out) / "endpoints.jsonl")
    select = ", ".join(f"count(*) FILTER (WHERE {PRED[name]}) AS \"{name}\"" for name, _, _ in SEGMENTS)
    sql = (f"SELECT count(*) AS total, {select} FROM read_json('{path}', format = 'newline_delimited', "
           f"columns = {json.dumps(columns)}, ignore_errors = true) "
           # A line that is not a record becomes an all-NULL row in DuckDB; segmentctl rejects
           # it. Every generated record has a ChannelType.
           "WHERE ChannelType IS NOT NULL")
    row = con.execute(sql).fetchone()
    names = ["total"] + [name for name, _, _ in SEGMENTS]
    return dict(zip(names, row))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "duckdb":
        print(json.dumps(duckdb_counts(sys.argv[2])))
