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

// A report and an exit code instead of dying on SIGBUS, which is how the kernel reports a page
// of a memory-mapped file that cannot be read (the device failed, or another program shortened
// the file): SQLite cannot catch it (`MappedReadFault`). The handler only writes the text set up
// front and exits with the code given, both async-signal-safe; like a crash, it leaves what was
// committed. A SIGBUS sent by a process (kill) is not a fault: it gets the action that was
// there before (the default, or the Swift runtime's backtrace handler), as does every SIGBUS
// once disarmed.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// The text lives in a function's static: Swift emits a header's inline functions, not its
// file-level statics.
typedef struct {
    int armed;
    struct sigaction previous;
    size_t length;
    int exit_code;
    char text[16384];
} tidemark_sigbus_message_t;

static inline tidemark_sigbus_message_t *tidemark_sigbus_message(void) {
    static tidemark_sigbus_message_t message;
    return &message;
}

static inline void tidemark_on_sigbus(int signal, siginfo_t *info, void *context) {
    (void)context;
    tidemark_sigbus_message_t *message = tidemark_sigbus_message();
    if (info == NULL || info->si_code <= 0) { // sent, not a fault: as without this handler
        sigaction(signal, &message->previous, NULL);
        message->armed = 0;
        raise(signal); // delivered once this handler returns (SIGBUS is blocked until then)
        return;
    }
    ssize_t written = write(2, message->text, message->length);
    (void)written;
    _exit(message->exit_code);
}

// 0 once installed, -1 (errno set) when sigaction refused. Armed again, it only takes the new
// text and code (the action it restores stays the one from before the first arming).
static inline int tidemark_exit_on_sigbus(const char *text, int exit_code) {
    tidemark_sigbus_message_t *message = tidemark_sigbus_message();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = tidemark_on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGBUS);
    // The handler does not run while the text changes: SIGBUS waits, blocked, until it is whole.
    sigset_t blocked, before;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &blocked, &before);
    message->exit_code = exit_code;
    size_t length = strlen(text);
    if (length >= sizeof message->text) { // cut, but still ending its line
        length = sizeof message->text - 1;
        message->text[length - 1] = '\n';
        memcpy(message->text, text, length - 1);
    } else {
        memcpy(message->text, text, length);
    }
    message->length = length;
    int result = 0;
    if (!message->armed) {
        result = sigaction(SIGBUS, &action, &message->previous);
        if (result == 0) message->armed = 1;
    }
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    return result;
}

// Back to the action from before arming, once nothing is mapped any more.
static inline int tidemark_restore_sigbus(void) {
    tidemark_sigbus_message_t *message = tidemark_sigbus_message();
    if (!message->armed) return 0;
    message->armed = 0;
    return sigaction(SIGBUS, &message->previous, NULL);
}

// Test hook (`TIDEMARK_SIGBUS_AT`): a real fault, as a failing device gives: maps `path` (a
// scratch file, created), shortens it to nothing and reads the mapped page. Returns only if
// no SIGBUS came.
static inline void tidemark_read_past_a_shortened_map(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (ftruncate(fd, 4096) != 0) { close(fd); return; }
    volatile char *page = (volatile char *)mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (page == (volatile char *)MAP_FAILED) { close(fd); return; }
    if (ftruncate(fd, 0) == 0) (void)page[0];
    munmap((void *)page, 4096);
    close(fd);
}
#endif
