/*
 * The SQLite floor of the 1M ingest: raw C API, no parsing, no merge logic. Loads N events
 * with random UUID keys (rows shaped like Tidemark's) in sorted groups of 50,000 with the
 * same settings as a first load, which the bench's full ingest is (no journal and no fsync
 * until the end, then WAL and one fsync; 32 KiB pages, 8 MiB cache, a commit every 256,000
 * rows), doing per event what ingest does for a new event: one lookup in the event_id index,
 * one partition insert, one index insert. With FLOOR_JOURNAL=wal in the environment, it runs
 * with the settings of any later batch instead (WAL, synchronous=FULL, throughout).
 *
 *   layout "rowid":    partitions keyed by row_id (appends) + event_index (event_id -> hour, row):
 *                      Tidemark's layout
 *   layout "claim":    as "rowid", but each event_index entry is claimed (INSERT ... ON CONFLICT
 *                      DO NOTHING) instead of looked up and then inserted: what ingest does for a
 *                      large group
 *   layout "event-id": partitions WITHOUT ROWID keyed by event_id + event_index (event_id -> hour):
 *                      Tidemark's first layout, for comparison
 *   layout "int-key":  as "rowid", but event_index keyed by a 64-bit hash of the event_id (a
 *                      rowid table): a road not taken, since hash collisions need a second path
 *   layout "rows-only": the partition inserts alone, no lookup index at all: what any SQLite
 *                      store of these rows costs before it can deduplicate anything
 *   layout "sorted-build": the partition inserts, then the lookup index built once at the end by
 *                      SQLite's sorter (INSERT ... SELECT ... ORDER BY event_id): the cheapest order
 *                      in which SQLite can hold these rows and their lookup (every index insert an
 *                      append); a lower bound, since nothing is looked up and no duplicate found
 *
 * Usage: sqlite_floor DBPATH rowid|claim|event-id|int-key|rows-only|sorted-build [N [GROUP]]
 *        (prints seconds)
 * GROUP (default 50,000, ingest's merge group) is how many events are sorted and written together.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct { char id[37]; long millis; sqlite3_int64 key; } Event;

static uint64_t state = 88172645463325252ULL;
static uint64_t next_random(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int by_id(const void *a, const void *b) { return memcmp(((const Event *)a)->id, ((const Event *)b)->id, 36); }
static int by_key(const void *a, const void *b) {
    sqlite3_int64 x = ((const Event *)a)->key, y = ((const Event *)b)->key;
    return x < y ? -1 : x > y;
}
/* FNV-1a of the 36 id bytes. */
static sqlite3_int64 id_hash(const char *id) {
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 36; i++) { h ^= (unsigned char)id[i]; h *= 1099511628211ULL; }
    return (sqlite3_int64)h;
}

static void must(int code, sqlite3 *db, const char *what) {
    if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: sqlite_floor DBPATH rowid|claim|event-id|int-key|rows-only|sorted-build [N [GROUP]]\n"); return 64; }
    const char *path = argv[1];
    int int_key = strcmp(argv[2], "int-key") == 0, claim = strcmp(argv[2], "claim") == 0;
    int sorted_build = strcmp(argv[2], "sorted-build") == 0, rows_only = sorted_build || strcmp(argv[2], "rows-only") == 0;
    int rowid = int_key || rows_only || claim || strcmp(argv[2], "rowid") == 0;
    if (!rowid && strcmp(argv[2], "event-id") != 0) { fprintf(stderr, "unknown layout %s\n", argv[2]); return 64; }
    long total = argc > 3 ? atol(argv[3]) : 1000000, group = argc > 4 ? atol(argv[4]) : 50000, per_commit = 256000;
    if (total <= 0 || group <= 0) { fprintf(stderr, "N and GROUP must be positive\n"); return 64; }
    char wal[4096], shm[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    remove(path); remove(wal); remove(shm);

    sqlite3 *db;
    must(sqlite3_open(path, &db), db, "open");
    const char *journal = getenv("FLOOR_JOURNAL");
    int wal_throughout = journal && strcmp(journal, "wal") == 0;
    must(sqlite3_exec(db, wal_throughout ? "PRAGMA page_size=32768; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-8192;"
                                         : "PRAGMA page_size=32768; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8192;",
                      0, 0, 0), db, "pragmas");
    const char *partition = rowid
        ? "CREATE TABLE p(row_id INTEGER PRIMARY KEY, event_id TEXT, user_id TEXT, event_type TEXT, event_time TEXT, received_time TEXT, is_valid INT, deleted_by TEXT, deleted_at TEXT, is_late INT, extra TEXT, first_batch INT, last_batch INT)"
        : "CREATE TABLE p(event_id TEXT PRIMARY KEY, user_id TEXT, event_type TEXT, event_time TEXT, received_time TEXT, is_valid INT, deleted_by TEXT, deleted_at TEXT, is_late INT, extra TEXT, first_batch INT, last_batch INT) WITHOUT ROWID";
    const char *index = int_key
        ? "CREATE TABLE event_index(key INTEGER PRIMARY KEY, hour INT NOT NULL, row_id INT NOT NULL)"
        : rowid
        ? "CREATE TABLE event_index(event_id TEXT PRIMARY KEY, hour INT NOT NULL, row_id INT NOT NULL) WITHOUT ROWID"
        : "CREATE TABLE event_index(event_id TEXT PRIMARY KEY, hour INT NOT NULL) WITHOUT ROWID";
    must(sqlite3_exec(db, partition, 0, 0, 0), db, "create partition");
    must(sqlite3_exec(db, index, 0, 0, 0), db, "create index");

    sqlite3_stmt *insert_row, *insert_index, *lookup;
    must(sqlite3_prepare_v2(db, rowid ? "INSERT INTO p (event_id, user_id, event_type, event_time, received_time, is_valid, deleted_by, deleted_at, is_late, extra, first_batch, last_batch) VALUES (?1, ?2, ?3, ?4, ?5, 1, NULL, NULL, 0, NULL, 1, 1)" : "INSERT INTO p VALUES (?1, ?2, ?3, ?4, ?5, 1, NULL, NULL, 0, NULL, 1, 1)", -1, &insert_row, 0), db, "prepare");
    must(sqlite3_prepare_v2(db, claim ? "INSERT INTO event_index VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
                                : rowid ? "INSERT INTO event_index VALUES (?, ?, ?)" : "INSERT INTO event_index VALUES (?, ?)", -1, &insert_index, 0), db, "prepare");
    must(sqlite3_prepare_v2(db, int_key ? "SELECT hour FROM event_index WHERE key = ?" : "SELECT hour FROM event_index WHERE event_id = ?",
                            -1, &lookup, 0), db, "prepare");

    Event *events = malloc(sizeof(Event) * group);
    sqlite3_int64 *rows = malloc(sizeof(sqlite3_int64) * group);
    double started = now();
    long since_commit = 0;
    must(sqlite3_exec(db, "BEGIN", 0, 0, 0), db, "begin");
    for (long done = 0; done < total; done += group) {
        long n = total - done < group ? total - done : group; // the last group may be short
        for (long i = 0; i < n; i++) {
            uint64_t a = next_random(), b = next_random();
            snprintf(events[i].id, sizeof events[i].id, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a & 0xffff),
                     (unsigned)((a >> 16) & 0xfff), (unsigned)(b >> 48), (unsigned long long)(b & 0xffffffffffffULL));
            events[i].millis = done + i - (next_random() % 10 == 0 ? (long)(30000 + next_random() % 30000) : 0);
        }
        for (long i = 0; i < n; i++) events[i].key = id_hash(events[i].id);
        qsort(events, n, sizeof(Event), int_key ? by_key : by_id);
        for (long i = 0; i < n && !rows_only && !claim; i++) {
            if (int_key) sqlite3_bind_int64(lookup, 1, events[i].key);
            else sqlite3_bind_text(lookup, 1, events[i].id, 36, SQLITE_STATIC);
            must(sqlite3_step(lookup), db, "lookup");
            sqlite3_reset(lookup);
        }
        char event_time[40];
        for (long i = 0; i < n; i++) {
            long m = events[i].millis < 0 ? 0 : events[i].millis;
            snprintf(event_time, sizeof event_time, "2025-07-30T10:%02ld:%02ld.%03ld000000Z", (m / 60000) % 60, (m / 1000) % 60, m % 1000);
            sqlite3_bind_text(insert_row, 1, events[i].id, 36, SQLITE_STATIC);
            sqlite3_bind_text(insert_row, 2, "u00123", 6, SQLITE_STATIC);
            sqlite3_bind_text(insert_row, 3, "add_to_cart", 11, SQLITE_STATIC);
            sqlite3_bind_text(insert_row, 4, event_time, 30, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert_row, 5, event_time, 30, SQLITE_TRANSIENT);
            must(sqlite3_step(insert_row), db, "insert row");
            sqlite3_reset(insert_row);
            rows[i] = sqlite3_last_insert_rowid(db);
        }
        for (long i = 0; i < n && !rows_only; i++) {
            if (int_key) sqlite3_bind_int64(insert_index, 1, events[i].key);
            else sqlite3_bind_text(insert_index, 1, events[i].id, 36, SQLITE_STATIC);
            sqlite3_bind_int(insert_index, 2, 486730);
            if (rowid) sqlite3_bind_int64(insert_index, 3, rows[i]);
            must(sqlite3_step(insert_index), db, "insert index");
            sqlite3_reset(insert_index);
        }
        since_commit += n;
        if (since_commit >= per_commit) {
            must(sqlite3_exec(db, "COMMIT; BEGIN", 0, 0, 0), db, "commit");
            since_commit = 0;
        }
    }
    if (sorted_build)
        must(sqlite3_exec(db, "INSERT INTO event_index SELECT event_id, 486730, row_id FROM p ORDER BY event_id", 0, 0, 0), db, "build index");
    if (wal_throughout) {
        must(sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", 0, 0, 0), db, "commit");
    } else { /* as ingest ends a first load: synced while SQLite holds no lock on the file, then WAL */
        must(sqlite3_exec(db, "COMMIT; PRAGMA synchronous=FULL", 0, 0, 0), db, "commit");
        int fd = open(path, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) { perror("fsync the database"); return 1; }
        close(fd);
        must(sqlite3_exec(db, "PRAGMA journal_mode=WAL", 0, 0, 0), db, "wal");
    }
    printf("%.3f\n", now() - started);
    sqlite3_finalize(insert_row); sqlite3_finalize(insert_index); sqlite3_finalize(lookup);
    sqlite3_close(db);
    free(events); free(rows);
    return 0;
}
