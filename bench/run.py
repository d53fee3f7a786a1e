"""Tidemark benchmark: the scenarios of issue 7 with the floor (zcat) and a peer (DuckDB) on
the same files, reported as ratios. Run through scripts/bench.sh, which builds first.

Usage: python3 bench/run.py BINARY WORKDIR [--events N]
"""
import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("workdir")
parser.add_argument("--events", type=int, default=1_000_000)
args = parser.parse_args()
tm = os.path.abspath(args.binary)
work = os.path.abspath(args.workdir)
os.makedirs(work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, env=None, repeat=1):
    """Runs cmd under /usr/bin/time -v; returns (median seconds, max peak RSS MB, last stdout)."""
    seconds, rss, out = [], [], ""
    for _ in range(repeat):
        # What ran before (a copy, another scenario) leaves dirty pages: flushed now, so that
        # their writing does not land on this run's time.
        os.sync()
        started = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - started)
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        for line in p.stderr.splitlines():
            if "Maximum resident set size" in line:
                rss.append(int(line.split(":")[1]) / 1024)
        out = p.stdout
    return statistics.median(seconds), max(rss) if rss else 0.0, out


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def produced(folder, sent, options):
    """The landing files of `tidemark produce --fast --count EVENTS --seed 1 OPTIONS` in WORK/folder
    (made once, kept for later runs), in name order."""
    source = os.path.join(work, folder)
    if not os.path.isdir(source) or not os.listdir(source):
        fresh(source)
        subprocess.run([tm, "produce", "--fast", "--count", str(args.events), "--seed", "1"] + options
                       + ["--landing", source, "--sent-log", os.path.join(work, sent)], check=True, capture_output=True)
    return sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".ndjson.gz"))


def zcat_seconds(paths, runs=3):
    """The floor: decompressing these files alone (the median of `runs`)."""
    seconds = []
    for _ in range(runs):
        os.sync()
        started = time.perf_counter()
        subprocess.run("zcat " + " ".join(paths) + " | wc -l", shell=True, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def full_ingest(paths, landing_name, data_name, runs=3, existing=False):
    """A full ingest of these files into an empty data folder, in one run: the median of `runs`,
    each from a fresh copy of the files into a fresh data folder (the machine is shared and
    noisy; one run can be 10 % off). That run is the folder's first load, written without a
    journal; `existing`: its database is made first by an ingest of nothing, so that the files
    go through the WAL as any later batch's do. Returns (seconds, peak RSS MB, landing, data)
    of the last."""
    seconds, rss = [], []
    for _ in range(runs):
        landing = fresh(os.path.join(work, landing_name))
        data = os.path.join(work, data_name)
        shutil.rmtree(data, ignore_errors=True)
        if existing:
            subprocess.run([tm, "ingest", "--landing", landing, "--data", data], check=True, capture_output=True)
        for f in paths:
            shutil.copy(f, landing)
        run_seconds, run_rss, _ = timed([tm, "ingest", "--landing", landing, "--data", data])
        seconds.append(run_seconds)
        rss.append(run_rss)
    return statistics.median(seconds), max(rss), landing, data


# Data: the producer in simulated time, as the issue specifies.
files = produced("source", "sent", ["--rate", "1000"])
source = os.path.join(work, "source")

# One file of 1,000 events with late events and corrections, a day after the big set.
one_dir = os.path.join(work, "one-file")
if not os.path.isdir(one_dir):
    scratch = fresh(os.path.join(work, "one-scratch"))
    subprocess.run([tm, "produce", "--fast", "--count", "1000", "--rate", "1000", "--seed", "2",
                    "--start", "2025-07-31T10:00:00Z", "--landing", scratch, "--sent-log", os.path.join(work, "one-sent")],
                   check=True, capture_output=True)
    fresh(one_dir)
    with open(os.path.join(one_dir, "one.ndjson.gz"), "wb") as out:
        for name in sorted(os.listdir(scratch)):  # concatenated gzip members are one valid gzip file
            with open(os.path.join(scratch, name), "rb") as f:
                out.write(f.read())

results = []


def row(name, seconds, rss=None, note=""):
    results.append((name, seconds, rss, note))


# Floor: decompression alone.
zcat = zcat_seconds(files)
row("zcat FILES | wc -l (floor)", zcat)

# Peer: DuckDB computing the same final state with one query.
try:
    import duckdb
    peer_db = os.path.join(work, "peer.duckdb")
    duck_runs = []
    for _ in range(3):  # the median of three, each into a new file, as for ingest
        if os.path.exists(peer_db):
            os.remove(peer_db)
        duck_runs.append(timed([sys.executable, os.path.join(here, "duckdb_peer.py"), source, peer_db]))
    duck, duck_rss = statistics.median(r[0] for r in duck_runs), max(r[1] for r in duck_runs)
    row(f"DuckDB {duckdb.__version__}, same final state (peer)", duck, duck_rss, "median of 3 runs")
except ImportError:
    duck = None
    row("DuckDB (peer)", float("nan"), note="pip install duckdb")

# Second floor: SQLite alone, through the C API, doing the B-tree work of a 1M load (no parsing,
# no merge), in Tidemark's layout and in its first layout (see bench/sqlite_floor.c).
floor_binary = os.path.join(work, "sqlite_floor")
sqlite_floor = {}
if shutil.which("cc") and subprocess.run(["cc", "-O2", "-o", floor_binary, os.path.join(here, "sqlite_floor.c"), "-lsqlite3"],
                                         capture_output=True).returncode == 0:
    # The floors have a first load's settings, but the last: those of any later batch (WAL).
    wal = dict(os.environ, FLOOR_JOURNAL="wal")
    for key, layout, label, env in (("rowid", "rowid", "Tidemark's layout (floor)", None),
                                    ("claim", "claim", "Tidemark's layout, entries claimed as ingest does", None),
                                    ("event-id", "event-id", "first layout (event_id keys)", None),
                                    ("int-key", "int-key", "integer-hash lookup keys", None),
                                    ("rows-only", "rows-only", "rows alone, no lookup index", None),
                                    ("sorted-build", "sorted-build", "rows, then the lookup index built once, sorted", None),
                                    ("claim-wal", "claim", "entries claimed, WAL throughout", wal)):
        seconds, rss, out = timed([floor_binary, os.path.join(work, "floor.sqlite"), layout, str(args.events)], env=env)
        sqlite_floor[key] = float(out.strip())
        row(f"SQLite alone, C API, {label}", sqlite_floor[key], rss)
else:
    row("SQLite alone (floor)", float("nan"), note="needs cc and libsqlite3-dev")

# 1. Full ingest of every file into an empty data folder, in one run (median of three).
full, full_rss, landing, data = full_ingest(files, "landing", "data")
row(f"1. ingest {args.events:,} events ({len(files)} files)", full, full_rss, "first load; median of 3 runs")
# The same files into a database that exists already: not a first load (WAL throughout).
later, later_rss, _, _ = full_ingest(files, "landing-later", "data-later", existing=True)
row("1b. the same into an existing, empty database", later, later_rss, "WAL throughout, as any later batch; median of 3 runs")

# 2. Idle run.
idle, idle_rss, _ = timed([tm, "ingest", "--landing", landing, "--data", data], repeat=7)
row("2. idle run (nothing new)", idle, idle_rss)

# 3. One-file batch into the big database and into an empty one.
# Each data folder has its own landing folder (one landing folder feeds one data folder). The
# empty database is made once, by an ingest of nothing, and copied before each run: the batch
# into it costs its own data, not the creation of a warehouse.
big_copy = fresh(os.path.join(work, "data-copy"))
one_landing = fresh(os.path.join(work, "one-landing"))
empty_landing = fresh(os.path.join(work, "one-landing-empty"))
pristine = os.path.join(work, "data-empty-pristine")
shutil.rmtree(pristine, ignore_errors=True)
empty = os.path.join(work, "data-empty")
shutil.rmtree(empty, ignore_errors=True)
subprocess.run([tm, "ingest", "--landing", empty_landing, "--data", empty], check=True, capture_output=True)
shutil.copytree(empty, pristine)
one_big, one_empty = [], []
for _ in range(5):
    shutil.rmtree(big_copy)
    shutil.copytree(data, big_copy, ignore=shutil.ignore_patterns("archive"))
    shutil.copy(os.path.join(one_dir, "one.ndjson.gz"), one_landing)
    os.sync()  # the copy's dirty pages would otherwise be flushed by the batch's first fsync
    one_big.append(timed([tm, "ingest", "--landing", one_landing, "--data", big_copy])[0])
    shutil.rmtree(empty)
    shutil.copytree(pristine, empty)
    shutil.copy(os.path.join(one_dir, "one.ndjson.gz"), empty_landing)
    os.sync()
    one_empty.append(timed([tm, "ingest", "--landing", empty_landing, "--data", empty])[0])
row("3a. one-file batch, into the big database", statistics.median(one_big))
row("3b. one-file batch, into an empty database", statistics.median(one_empty))

# 3c. The batch that finds the recent index full and folds it into event_index: the big
# database with 64,600 of its lookup entries moved to the recent index (what about 65 one-file
# batches leave there), so this batch's 1,000 new events overflow it.
import sqlite3
one_fold = []
for _ in range(3):
    shutil.rmtree(big_copy)
    shutil.copytree(data, big_copy, ignore=shutil.ignore_patterns("archive"))
    con = sqlite3.connect(os.path.join(big_copy, "tidemark.sqlite"))
    con.executescript("""
        CREATE TEMP TABLE pick AS SELECT event_id FROM event_index ORDER BY random() LIMIT 64600;
        INSERT INTO event_index_recent SELECT * FROM event_index WHERE event_id IN (SELECT event_id FROM pick);
        DELETE FROM event_index WHERE event_id IN (SELECT event_id FROM pick);
        PRAGMA wal_checkpoint(TRUNCATE);
    """)
    con.close()
    shutil.copy(os.path.join(one_dir, "one.ndjson.gz"), one_landing)
    os.sync()
    one_fold.append(timed([tm, "ingest", "--landing", one_landing, "--data", big_copy])[0])
row("3c. one-file batch that folds the full recent index", statistics.median(one_fold),
    note="once per ~65 batches of 1,000 new events")

# 4. Rebuild of the largest hour; validate of the whole database.
import sqlite3
con = sqlite3.connect(os.path.join(data, "tidemark.sqlite"))
hour = con.execute("SELECT hour FROM partitions ORDER BY row_count DESC LIMIT 1").fetchone()[0]
rows_in_hour = con.execute("SELECT row_count FROM partitions WHERE hour = ?", (hour,)).fetchone()[0]
con.close()
con = sqlite3.connect(os.path.join(data, "tidemark.sqlite"))
hour_files = [r[0] for r in con.execute(
    "SELECT location FROM ingested_files WHERE file_id IN (SELECT file_id FROM file_hours WHERE hour = ?)", (hour,))]
con.close()
hour_zcat = zcat_seconds(hour_files)
row(f"4a. floor: zcat of the hour's {len(hour_files)} files", hour_zcat)
rebuild, rebuild_rss, _ = timed([tm, "rebuild", "--data", data, "--hour", hour])
row(f"4a. rebuild --hour {hour} ({rows_in_hour:,} rows)", rebuild, rebuild_rss, "the hour was right: read and compared only")
# The same hour with its table gone: every row is written again (the most a repair writes).
con = sqlite3.connect(os.path.join(data, "tidemark.sqlite"))
table = con.execute("SELECT table_name FROM partitions WHERE hour = ?", (hour,)).fetchone()[0]
con.execute(f"DROP TABLE {table}")
con.commit()
con.close()
restore, restore_rss, _ = timed([tm, "rebuild", "--data", data, "--hour", hour])
row("4a. the same with its table dropped (restored)", restore, restore_rss, "every row written again")
validate, validate_rss, _ = timed([tm, "validate", "--data", data])
row("4b. validate (internal checks)", validate, validate_rss)
validate_sent, validate_sent_rss, _ = timed([tm, "validate", "--data", data, "--sent-log", os.path.join(work, "sent")])
row("4c. validate --sent-log", validate_sent, validate_sent_rss)

# 5. The command at the producer's default rate (10 events per second): the same 1M
# events spread over 28 hours of about 36,000 rows, in ~1,000 files of 100 seconds each. Above,
# --rate 1000 puts all 1M events in one hour, the worst case for rebuild --hour.
default_files = produced("source-default-rate", "sent-default-rate", ["--file-seconds", "100"])
default_zcat = zcat_seconds(default_files)
row(f"5. floor: zcat of the default-rate set's {len(default_files)} files", default_zcat)
default_full, default_full_rss, _, default_data = full_ingest(default_files, "landing-default-rate", "data-default-rate")
row(f"5. ingest of that set ({args.events:,} events), one run", default_full, default_full_rss,
    f"{default_full / default_zcat:.2f} × its own zcat; median of 3 runs")
con = sqlite3.connect(os.path.join(default_data, "tidemark.sqlite"))
default_hour, default_hour_rows = con.execute("SELECT hour, row_count FROM partitions ORDER BY row_count DESC, hour LIMIT 1").fetchone()
default_hours = con.execute("SELECT count(*) FROM partitions").fetchone()[0]
con.close()
default_rebuild, default_rebuild_rss, _ = timed([tm, "rebuild", "--data", default_data, "--hour", default_hour], repeat=3)
row(f"5. rebuild --hour {default_hour} ({default_hour_rows:,} rows of {default_hours} hours)", default_rebuild, default_rebuild_rss,
    "the hour was right: read and compared only")

print(f"\nmachine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; {time.strftime('%Y-%m-%d')}\n")
print(f"{'scenario':52} {'seconds':>9} {'× zcat':>8} {'peak RSS MB':>12}")
print("-" * 85)
for name, seconds, rss, note in results:
    ratio = seconds / zcat if zcat else float("nan")
    print(f"{name:52} {seconds:9.3f} {ratio:8.2f} {('%.0f' % rss) if rss else '':>12} {note}")

def verdict(ok):
    return "met" if ok else "NOT met"

print("\ntargets:")
print(f"  full ingest ≤ 4 × zcat: {full / zcat:.1f} × — {verdict(full <= 4 * zcat)}; "
      f"the default-rate set {default_full / default_zcat:.1f} × — {verdict(default_full <= 4 * default_zcat)}")
print(f"    (both are first loads; the same files into an existing database, with the WAL throughout (1b): {later / zcat:.1f} ×"
      + (f", {later / sqlite_floor['claim-wal']:.2f} × its floor (entries claimed, WAL throughout))" if "claim-wal" in sqlite_floor else ")"))
if "rowid" in sqlite_floor:
    print(f"    (SQLite alone, looking each event up before inserting it, is {sqlite_floor['rowid'] / zcat:.1f} × zcat; "
          f"ingest is {full / sqlite_floor['rowid']:.2f} × that floor)")
if "claim" in sqlite_floor:
    print(f"    (claiming entries as ingest does, it is {sqlite_floor['claim'] / zcat:.1f} × zcat; "
          f"ingest is {full / sqlite_floor['claim']:.2f} × that floor)")
if duck:
    print(f"  full ingest faster than DuckDB: {full / duck:.2f} × DuckDB's time — {verdict(full < duck)}")
    if "rows-only" in sqlite_floor:
        print(f"    (SQLite appending the rows alone, with no lookup index, takes {sqlite_floor['rows-only'] / duck:.2f} × DuckDB's whole job)")
    if "sorted-build" in sqlite_floor:
        print(f"    (SQLite appending the rows and then building the lookup index in one sorted pass, its cheapest order, "
              f"takes {sqlite_floor['sorted-build'] / duck:.2f} × DuckDB's whole job)")
print(f"  peak RSS of the full ingest ≤ 150 MB: {full_rss:.0f} MB — {verdict(full_rss <= 150)}")
print(f"  idle run ≤ 30 ms: {idle * 1000:.0f} ms — {verdict(idle <= 0.030)}")
b, e = statistics.median(one_big), statistics.median(one_empty)
print(f"  one-file batch ≤ 60 ms: {b * 1000:.0f} ms — {verdict(b <= 0.060)}; ≤ 1.5 × empty: {b / e:.2f} × — {verdict(b <= 1.5 * e)}")
fold = statistics.median(one_fold)
amortized = (64 * b + fold) / 65
print(f"    (with the fold every ~65 batches: {amortized * 1000:.0f} ms on average, {amortized / e:.2f} × empty)")
print(f"  rebuild --hour < 1 s: at the default rate ({default_hour_rows:,} rows) {default_rebuild:.2f} s — {verdict(default_rebuild < 1)}; "
      f"the one-hour set's {rows_in_hour:,} rows {rebuild:.2f} s — {verdict(rebuild < 1)}")
if "rows-only" in sqlite_floor and args.events > 0:
    rows_floor = sqlite_floor["rows-only"] * rows_in_hour / args.events
    print(f"    (floors for this hour: decompressing its files {hour_zcat:.2f} s; SQLite writing its rows alone about {rows_floor:.2f} s,"
          f" which only a repair pays: restoring the dropped table took {restore:.2f} s)")
print(f"  validate ≤ 2 × ingest: {validate / full:.2f} × (with --sent-log {validate_sent / full:.2f} ×) — {verdict(validate <= 2 * full)}")
