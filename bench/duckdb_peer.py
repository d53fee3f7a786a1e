"""The peer in the benchmark: DuckDB computing Tidemark's final state with one SQL query.

Per event_id: deleted if any delivery is a tombstone or carries is_valid=false; attributes of
the newest received_time (ties: the greater event_time, user_id, event_type); placed in the
hour of that event_time. Reads the same gzipped NDJSON landing files and writes a DuckDB file.
Usage: python3 bench/duckdb_peer.py LANDING_DIR OUT.duckdb
"""
import sys
import time

import duckdb

landing, out = sys.argv[1], sys.argv[2]
started = time.time()
con = duckdb.connect(out)
con.execute("PRAGMA threads=2")
con.execute(f"""
CREATE OR REPLACE TABLE events AS
WITH raw AS (
    SELECT event_id, user_id, event_type,
           CAST(event_time AS TIMESTAMPTZ) AS event_time,
           CAST(received_time AS TIMESTAMPTZ) AS received_time,
           COALESCE(is_valid, true) AS is_valid,
           user_id IS NULL AS is_tombstone
    FROM read_ndjson('{landing}/*.ndjson.gz',
        columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', event_type: 'VARCHAR',
                   event_time: 'VARCHAR', received_time: 'VARCHAR', is_valid: 'BOOLEAN'}},
        compression = 'gzip', format = 'newline_delimited', ignore_errors = true)
),
deleted AS (
    SELECT event_id, bool_or(is_tombstone OR NOT is_valid) AS deleted FROM raw GROUP BY event_id
),
winner AS (
    SELECT event_id, arg_max(struct_pack(user_id, event_type, event_time, received_time),
                             struct_pack(received_time, event_time, user_id, event_type)) AS w
    FROM raw WHERE NOT is_tombstone GROUP BY event_id
)
SELECT w.event_id, w.w.user_id, w.w.event_type, w.w.event_time, w.w.received_time,
       NOT d.deleted AS is_valid, date_trunc('hour', w.w.event_time) AS hour
FROM winner w JOIN deleted d USING (event_id)
""")
rows, valid = con.execute("SELECT count(*), sum(is_valid::INT) FROM events").fetchone()
con.close()
print(f"duckdb rows={rows} valid={valid} seconds={time.time() - started:.2f}")
