#ifndef TIDEMARK_SQLITE_TUNING_H
#define TIDEMARK_SQLITE_TUNING_H
#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call. Memory statistics cost a global mutex on
// every allocation; Tidemark never reads them. Must run before SQLite initializes; afterwards
// SQLite answers SQLITE_MISUSE and nothing changes.
static inline int tidemark_sqlite_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

// Multi-thread mode: no mutex around each call on a connection (bind, step, reset, ...), since
// GRDB already serializes every use of a connection and never shares one between threads.
// Global state (allocator, VFS) stays protected. Same rule: before SQLite initializes.
static inline int tidemark_sqlite_multithread(void) {
    return sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
}
#endif
