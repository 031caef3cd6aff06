"""Customer Profiles profiles, segment definitions of every dimension family, and DuckDB's
independent count of each.

  profiles.py generate DIR N   writes DIR/profiles.jsonl and DIR/definitions.json
  profiles.py duckdb DIR       prints {"definition": count, ...} computed by DuckDB

Each definition is written twice, by hand: as SegmentGroups (for segmentctl serve's
evaluator) and as a SQL predicate over the profile's JSON, following the rules the README
states (an absent value never satisfies INCLUSIVE, CONTAINS, BEGINS_WITH, ENDS_WITH, dates,
numbers or lists, and always satisfies EXCLUSIVE and NOT_BETWEEN; BETWEEN includes its
bounds; ON compares UTC days; numbers are -?DIGITS[.DIGITS]; a list is a JSON array of
strings, or one value; Include, Type and SourceType default to ALL).
"""

import json
import random
import sys
from pathlib import Path


def s(path):
    """The profile's string at a JSON path (NULL when absent)."""
    return f"json_extract_string(j, '$.{path}')"


def when(path):
    """The value at `path` as a UTC timestamp: a date YYYY-MM-DD or an instant ...Z."""
    v = s(path)
    return (f"(CASE WHEN length({v}) = 10 THEN try_strptime({v}, '%Y-%m-%d') "
            f"ELSE try_strptime({v}, '%Y-%m-%dT%H:%M:%SZ') END)")


def listed(path):
    v = s(path)
    return (f"(CASE WHEN starts_with({v}, '[') AND json_valid({v}) "
            f"THEN from_json({v}, '[\"VARCHAR\"]') ELSE [{v}] END)")


def number(path):
    v = s(path)
    return f"(CASE WHEN regexp_full_match({v}, '-?[0-9]+(\\.[0-9]+)?') THEN CAST({v} AS DOUBLE) END)"


def pa(**fields):
    return {"ProfileAttributes": fields}


def dim(kind, *values):
    return {"DimensionType": kind, "Values": list(values)}


def group(*dims, **extra):
    g = {"Dimensions": list(dims)}
    g.update(extra)
    return {"Groups": [g]}


FALSE_IF_NULL = "coalesce({}, false)"

# name → (SegmentGroups, DuckDB predicate). Later definitions may build on earlier ones.
DEFINITIONS = [
    ("first_in", group(pa(FirstName=dim("INCLUSIVE", "Ada", "Grace"))),
     f"coalesce({s('FirstName')} IN ('Ada', 'Grace'), false)"),
    ("first_not", group(pa(FirstName=dim("EXCLUSIVE", "Ada"))),
     f"coalesce({s('FirstName')} <> 'Ada', true)"),
    ("last_contains", group(pa(LastName=dim("CONTAINS", "ov", "pp"))),
     f"coalesce(contains({s('LastName')}, 'ov') OR contains({s('LastName')}, 'pp'), false)"),
    ("last_begins", group(pa(LastName=dim("BEGINS_WITH", "Ho", "Lo"))),
     f"coalesce(starts_with({s('LastName')}, 'Ho') OR starts_with({s('LastName')}, 'Lo'), false)"),
    ("email_ends", group(pa(EmailAddress=dim("ENDS_WITH", "@example.com"))),
     f"coalesce(ends_with({s('EmailAddress')}, '@example.com'), false)"),
    ("born_before", group(pa(BirthDate=dim("BEFORE", "1970-01-01"))),
     f"coalesce({when('BirthDate')} < TIMESTAMP '1970-01-01 00:00:00', false)"),
    ("born_after", group(pa(BirthDate=dim("AFTER", "1990-01-01T12:00:00Z"))),
     f"coalesce({when('BirthDate')} > TIMESTAMP '1990-01-01 12:00:00', false)"),
    ("born_on", group(pa(BirthDate=dim("ON", "1980-06-15"))),
     f"coalesce(CAST({when('BirthDate')} AS DATE) = DATE '1980-06-15', false)"),
    ("born_between", group(pa(BirthDate=dim("BETWEEN", "1960-01-01", "1979-12-31T23:59:59Z"))),
     f"coalesce({when('BirthDate')} BETWEEN TIMESTAMP '1960-01-01 00:00:00' AND TIMESTAMP '1979-12-31 23:59:59', false)"),
    ("born_not_between", group(pa(BirthDate=dim("NOT_BETWEEN", "1960-01-01", "1979-12-31"))),
     f"NOT coalesce({when('BirthDate')} BETWEEN TIMESTAMP '1960-01-01 00:00:00' AND TIMESTAMP '1979-12-31 00:00:00', false)"),
    ("city", group(pa(Address={"City": dim("INCLUSIVE", "London")})),
     f"coalesce({s('Address.City')} = 'London', false)"),
    ("shipping_country_not", group(pa(ShippingAddress={"Country": dim("EXCLUSIVE", "FR")})),
     f"coalesce({s('ShippingAddress.Country')} <> 'FR', true)"),
    ("tier_whole", group(pa(Attributes={"tier": dim("INCLUSIVE", "gold")})),
     f"coalesce({s('Attributes.tier')} = 'gold', false)"),
    ("tier_list", group(pa(Attributes={"tier": dim("LIST_CONTAINS", "vip")})),
     f"coalesce(list_contains({listed('Attributes.tier')}, 'vip'), false)"),
    ("tier_all", group(pa(Attributes={"tier": dim("LIST_CONTAINS_ALL", "gold", "vip")})),
     f"coalesce(list_has_all({listed('Attributes.tier')}, ['gold', 'vip']), false)"),
    ("spend_gt", group(pa(Attributes={"spend": dim("GREATER_THAN", "100")})),
     f"coalesce({number('Attributes.spend')} > 100, false)"),
    ("spend_eq", group(pa(Attributes={"spend": dim("EQUAL", "42.5", "10")})),
     f"coalesce({number('Attributes.spend')} IN (42.5, 10), false)"),
    ("spend_le", group(pa(Attributes={"spend": dim("LESS_THAN_OR_EQUAL", "10")})),
     f"coalesce({number('Attributes.spend')} <= 10, false)"),
    ("seen_after", group(pa(Attributes={"seen": dim("AFTER", "2026-06-01")})),
     f"coalesce({when('Attributes.seen')} > TIMESTAMP '2026-06-01 00:00:00', false)"),
    ("account", group(pa(ProfileType={"DimensionType": "INCLUSIVE", "Values": ["ACCOUNT_PROFILE"]})),
     f"coalesce({s('ProfileType')} = 'ACCOUNT_PROFILE', false)"),
    ("calculated_exclusive", group({"CalculatedAttributes": {"_orders": dim("EXCLUSIVE", "1")}}),
     "TRUE"),
    ("two_fields", group(pa(FirstName=dim("INCLUSIVE", "Ada"), Address={"City": dim("INCLUSIVE", "London")})),
     f"coalesce({s('FirstName')} = 'Ada' AND {s('Address.City')} = 'London', false)"),
    ("any_of_two", group(pa(FirstName=dim("INCLUSIVE", "Ada")), pa(LastName=dim("INCLUSIVE", "Hopper")), Type="ANY"),
     f"coalesce({s('FirstName')} = 'Ada', false) OR coalesce({s('LastName')} = 'Hopper', false)"),
    ("none_of_two", group(pa(FirstName=dim("INCLUSIVE", "Ada")), pa(LastName=dim("INCLUSIVE", "Hopper")), Type="NONE"),
     f"NOT (coalesce({s('FirstName')} = 'Ada', false) OR coalesce({s('LastName')} = 'Hopper', false))"),
    ("on_first_in", group(pa(Address={"City": dim("INCLUSIVE", "London")}),
                          SourceSegments=[{"SegmentDefinitionName": "first_in"}]),
     f"coalesce({s('FirstName')} IN ('Ada', 'Grace'), false) AND coalesce({s('Address.City')} = 'London', false)"),
    ("sources_any", {"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "tier_list"},
                                                    {"SegmentDefinitionName": "spend_gt"}],
                                 "SourceType": "ANY"}]},
     f"coalesce(list_contains({listed('Attributes.tier')}, 'vip'), false) OR coalesce({number('Attributes.spend')} > 100, false)"),
    ("sources_none", {"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "first_in"}],
                                  "SourceType": "NONE"}]},
     f"NOT coalesce({s('FirstName')} IN ('Ada', 'Grace'), false)"),
    ("groups_any", {"Include": "ANY", "Groups": [
        {"Dimensions": [pa(FirstName=dim("INCLUSIVE", "Grace"))]},
        {"Dimensions": [pa(Attributes={"spend": dim("LESS_THAN", "5")})]}]},
     f"coalesce({s('FirstName')} = 'Grace', false) OR coalesce({number('Attributes.spend')} < 5, false)"),
    ("groups_none", {"Include": "NONE", "Groups": [
        {"Dimensions": [pa(FirstName=dim("INCLUSIVE", "Grace"))]}]},
     f"NOT coalesce({s('FirstName')} = 'Grace', false)"),
    ("everyone", {}, "TRUE"),
]


def generate(out, n):
    rng = random.Random(31)
    firsts = ["Ada", "Grace", "Alan", "Linus", "Barbara", "Zoë", None]
    lasts = ["Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Lopez", None]
    cities = ["London", "Paris", "Tokyo", "london", None]
    tiers = ["gold", "silver", '["gold","vip"]', '["silver","vip"]', '["vip"]', '[1,2]', "[gold", None]
    spends = ["0", "5", "10", "10.0", "42.5", "99.99", "100", "100.01", "250", "-3", "1e3", "n/a", " 7", None]
    rows = []
    for i in range(n):
        p = {}
        for key, pool in [("FirstName", firsts), ("LastName", lasts)]:
            v = rng.choice(pool)
            if v is not None:
                p[key] = v
        r = rng.random()
        if r < 0.1:
            p["BirthDate"] = "1980-06-15"
        elif r < 0.5:
            p["BirthDate"] = f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
        elif r < 0.8:
            p["BirthDate"] = (f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
                              f"T{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:00Z")
        elif r < 0.85:
            p["BirthDate"] = "1979-12-31T23:59:59Z"
        if rng.random() < 0.6:
            p["EmailAddress"] = f"user{i}@" + rng.choice(["example.com", "example.org"])
        city = rng.choice(cities)
        if city is not None:
            p["Address"] = {"City": city}
        if rng.random() < 0.5:
            p["ShippingAddress"] = {"Country": rng.choice(["FR", "US", "GB"])}
        attrs = {}
        tier = rng.choice(tiers)
        if tier is not None:
            attrs["tier"] = tier
        spend = rng.choice(spends)
        if spend is not None:
            attrs["spend"] = spend
        if rng.random() < 0.5:
            attrs["seen"] = f"2026-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
        if attrs:
            p["Attributes"] = attrs
        t = rng.random()
        if t < 0.3:
            p["ProfileType"] = "ACCOUNT_PROFILE"
        elif t < 0.6:
            p["ProfileType"] = "PROFILE"
        rows.append(p)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "profiles.jsonl", "w") as f:
        for p in rows:
            f.write(json.dumps(p) + "\n")
    with open(out / "definitions.json", "w") as f:
        json.dump([{"name": n, "groups": g} for n, g, _ in DEFINITIONS], f, indent=1)


def duckdb_counts(out):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    path = out / "profiles.jsonl"
    select = ", ".join(f"count(*) FILTER (WHERE {sql}) AS \"{name}\"" for name, _, sql in DEFINITIONS)
    sql = (f"SELECT {select} FROM (SELECT json AS j FROM read_ndjson_objects('{path}'))")
    row = con.execute(sql).fetchone()
    names = [name for name, _, _ in DEFINITIONS]
    print(json.dumps(dict(zip(names, row))))


if __name__ == "__main__":
    cmd, out = sys.argv[1], Path(sys.argv[2])
    if cmd == "generate":
        generate(out, int(sys.argv[3]))
    elif cmd == "duckdb":
        duckdb_counts(out)
    else:
        sys.exit(f"unknown command {cmd}")
