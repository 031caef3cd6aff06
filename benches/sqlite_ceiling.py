#!/usr/bin/env python3
"""What SQLite itself can write of an import, with nothing else running: the ceiling of
`cargo bench --bench imports` on SQLite, for the server's schema and for schemas it could
have instead.

    python3 benches/sqlite_ceiling.py [N]        (1,000,000 rows; needs the sqlite3 command)

Each variant writes N endpoints (and, but for `endpoints only`, N members of one imported
segment) in transactions of 1,000 rows, as the server batches an import, with the server's
pragmas (WAL, synchronous=NORMAL), by `INSERT … SELECT` from rows made in memory first: no
statement is prepared or bound per row, so this is above what any import through bound
statements reaches. Bodies are an endpoint's stored JSON (about 420 bytes).

- server schema: the endpoints and segment_members tables as migrated (a member keeps its
  endpoint's body), in pages of SQLite's default 4 KiB and of the 8 KiB a file the server
  makes has (every other row: 4 KiB);
- members without bodies: the same, a member's body left NULL;
- compact members: members keyed by integers only, WITHOUT ROWID;
- endpoints only: no member rows at all.
"""

import os
import subprocess
import sys
import tempfile

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
BATCH = 1000
APP = "0123456789abcdef0123456789abcdef"
SEGMENT = "fedcba9876543210fedcba9876543210"

ENDPOINTS = f"""CREATE TABLE endpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT NOT NULL,
  id TEXT NOT NULL, user_id TEXT, body TEXT NOT NULL, UNIQUE (app_id, id));
CREATE INDEX endpoints_by_user ON endpoints (app_id, user_id);
CREATE INDEX endpoints_by_app ON endpoints (app_id, seq);"""
MEMBERS = """CREATE TABLE segment_members (app_id TEXT NOT NULL, segment_id TEXT NOT NULL,
  version INTEGER NOT NULL, endpoint_id TEXT NOT NULL, channel TEXT, body TEXT, user_id TEXT,
  UNIQUE (app_id, segment_id, version, endpoint_id));"""
COMPACT = """CREATE TABLE segment_members (seg INTEGER NOT NULL, version INTEGER NOT NULL,
  endpoint INTEGER NOT NULL, PRIMARY KEY (seg, version, endpoint)) WITHOUT ROWID;"""
BODY = (
    "printf('{\"Address\":\"addr-%d\",\"ApplicationId\":\"" + APP + "\",\"Attributes\":{\"plan\":[\"free\"]},"
    "\"ChannelType\":\"SMS\",\"CohortId\":\"%d\",\"CreationDate\":\"2026-12-07T20:39:39.123Z\","
    "\"Demographic\":{\"AppVersion\":\"2.1.0\",\"Platform\":\"Android\"},\"EffectiveDate\":\"2026-12-07T20:39:39.123Z\","
    "\"EndpointStatus\":\"ACTIVE\",\"Id\":\"e%d\",\"Location\":{\"Country\":\"US\"},\"Metrics\":{\"sessions\":1.0},"
    "\"OptOut\":\"NONE\",\"RequestId\":\"0123456789abcdef0123456789\",\"User\":{\"UserId\":\"u%d\"}}', "
    "value, value % 1000, value, value / 2)"
)
SERVER = (MEMBERS, f"INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, channel, body, user_id) SELECT '{APP}', '{SEGMENT}', 1, id, 'SMS', b, u")
MEMBER_ROWS = {
    "server schema, 4 KiB": SERVER,
    "server schema, 8 KiB": SERVER + (8192,),
    "members without bodies": (MEMBERS, f"INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, channel, body, user_id) SELECT '{APP}', '{SEGMENT}', 1, id, 'SMS', NULL, u"),
    "compact members": (COMPACT, "INSERT INTO segment_members (seg, version, endpoint) SELECT 7, 1, i"),
    "endpoints only": (None, None),
}


def script(members):
    table, insert = members[:2]
    page = members[2] if len(members) > 2 else 4096
    out = [f"PRAGMA page_size={page};", "PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;", ENDPOINTS]
    if table:
        out.append(table)
    out += [
        "ATTACH ':memory:' AS s;",
        "CREATE TABLE s.r (i INTEGER PRIMARY KEY, id, u, b);",
        f"INSERT INTO s.r WITH RECURSIVE c(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM c WHERE value < {N - 1}) "
        f"SELECT value, 'e' || value, 'u' || (value / 2), {BODY} FROM c;",
        "CREATE TEMP TABLE t0 AS SELECT julianday('now') AS t;",
    ]
    for k in range(0, N, BATCH):
        where = f"FROM s.r WHERE i >= {k} AND i < {k + BATCH};"
        out += ["BEGIN;", f"INSERT INTO endpoints (app_id, id, user_id, body) SELECT '{APP}', id, u, b {where}"]
        if insert:
            out.append(f"{insert} {where}")
        out.append("COMMIT;")
    out.append(f"SELECT {N} / ((julianday('now') - (SELECT t FROM t0)) * 86400);")
    return "\n".join(out)


def main():
    print(f"{'schema':<24} {'rows/s':>10}  (N = {N:,}, {BATCH:,} rows a transaction)")
    for name, members in MEMBER_ROWS.items():
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(
                ["sqlite3", os.path.join(d, "ceiling.db")],
                input=script(members), capture_output=True, text=True, check=True,
            ).stdout.split()
            print(f"{name:<24} {float(out[-1]):>10,.0f}")


if __name__ == "__main__":
    main()
