/*
 * rmap.h - the C API of swift-rmap, a model of the Linux reverse mapping.
 *
 * Link with -lRmapC (the dynamic library product of the package; after
 * `make install PREFIX=...`, `cc prog.c $(pkg-config --cflags --libs rmap)`).
 *
 * Results: 0 ok; a negative Linux errno (-ENOMEM, -EEXIST, -EINVAL, -EFAULT,
 * -ESRCH, -EBUSY, ...); RMAP_SIGSEGV / RMAP_SIGBUS for accesses that fault;
 * RMAP_FAIL for a reverse operation that returned false; RMAP_NOT_MODELLED;
 * RMAP_MISUSE for a handle that is not a live machine. Strings returned by
 * the library are freed with rmap_free(). rmap_last_error() says why the last
 * call on a machine failed.
 *
 * Arguments. No call crashes on a NULL pointer: a NULL machine, name, path,
 * text or callback gives -EINVAL (NULL from the calls that return a string
 * or a machine), and the machine is not changed. The out-pointers json,
 * errors and report may be NULL; walk's ctx is passed through untouched.
 * Names of processes and files follow the trace language
 * (docs/trace-format.md): [A-Za-z_][A-Za-z0-9_.-]*, 1 to 64 characters,
 * UTF-8; a process may not be named by a reserved word (file, proc, swap,
 * observe, expect); a process name is used once (a live or exited process's
 * name cannot name a new one: -EEXIST). Anything else is -EINVAL. So every
 * state the API makes saves and reopens with rmap_machine_open().
 *
 * Lifetime. A machine lives from rmap_machine_create() or rmap_machine_open()
 * until rmap_machine_destroy(); the handle must not be used afterwards. The
 * library keeps a registry of live handles and a magic word in each, and
 * checks both before it reads a handle (as SQLite's MISUSE checks do): a
 * destroyed handle, a pointer that never was a machine (zeroed memory, a
 * string) and a live handle whose memory was overwritten give RMAP_MISUSE
 * (NULL from the calls returning a pointer) and are never dereferenced
 * further. The check cannot tell a destroyed handle from a new machine that
 * the allocator placed at the same address: do not rely on it, it is a
 * safety net. Destroying NULL or a dead handle does nothing; a handle whose
 * memory was overwritten is never released.
 *
 * Threads. A machine is used by one thread at a time (the library does not
 * lock it); different machines may be used from different threads. A
 * machine whose frame or page tables grow past 8 MiB starts a thread of its
 * own (SCHED_IDLE, all signals blocked) that faults in the arena's memory a
 * few MB ahead of the model on an idle CPU, and stops it when the machine
 * is destroyed; it never changes the machine's state. RMAP_ARENA_POPULATE=0
 * in the environment keeps it from starting (see README, Arena).
 *
 * Walk callbacks. While rmap_walk() runs, its machine is busy: every call on
 * that machine from the callback (rmap_exit, rmap_op, rmap_walk,
 * rmap_run_trace, rmap_observe, rmap_check, rmap_stats_json, save, create
 * calls, ...) is refused with -EBUSY (NULL for the calls returning a string)
 * and changes nothing. rmap_last_error() may be called. Other machines may be
 * used from the callback. rmap_machine_destroy() of the walked machine from
 * the callback makes the handle dead at once (later calls: RMAP_MISUSE); its
 * memory is released when rmap_walk() returns. The callback must return
 * normally (no longjmp out of it).
 */
#ifndef RMAP_H
#define RMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rmap_machine rmap_machine;

#define RMAP_SIGSEGV (-1000)
#define RMAP_SIGBUS (-1001)
#define RMAP_FAIL (-1002)
/* The operation reached a path the model does not run yet (large pages:
 * a hugetlb mapping's mprotect or mremap move, ...); nothing was changed by
 * the refused part. rmap_last_error() names it. */
#define RMAP_NOT_MODELLED (-1003)
/* The handle is not a live machine: destroyed, never made by
 * rmap_machine_create/open, or its memory was overwritten (see Lifetime). */
#define RMAP_MISUSE (-1004)

/* A machine over a new in-memory arena; frames 0 = the default (262144),
 * else 2 to 2^30 - 1; reuse "none", "degree", "split" or NULL (split).
 * NULL on error (rmap_last_error(NULL) says why). */
rmap_machine *rmap_machine_create(uint32_t frames, const char *reuse);
/* Reopens a saved state; NULL if the file is rejected or path is NULL, with
 * the reason in err (when err is not NULL and errlen > 0; truncated to
 * errlen - 1 bytes) and in rmap_last_error(NULL). */
rmap_machine *rmap_machine_open(const char *path, char *err, size_t errlen);
/* Writes the state to path (a new file beside it, synced, renamed over it:
 * a failed save leaves a previous file whole). 0, or the negative errno of
 * the step that failed (-ENOENT, -EACCES, -ENOSPC, -EISDIR, ...) with the
 * reason (path, step, strerror) in rmap_last_error(m). */
int rmap_machine_save(rmap_machine *m, const char *path);
/* Releases the machine; NULL or a dead handle is ignored. */
void rmap_machine_destroy(rmap_machine *m);
void rmap_free(void *p);
/* Why the last call on m failed: a message owned by the library, valid until
 * the next call on m; "" when that call succeeded. Never NULL. With m NULL
 * or not a live machine: the reason the last call of this thread that had
 * no live machine failed (rmap_machine_create, rmap_machine_open, a NULL or
 * dead handle). */
const char *rmap_last_error(rmap_machine *m);

/* Runs trace text (docs/trace-format.md) on the machine, continuing its
 * state. Returns 0, 1 (an expectation failed) or 2 (malformed trace, or a
 * statement that cannot run on this arena: a `proc` or `file` with its table
 * full, a `swap` beyond the swap map; the run stops at that line and *json is
 * NULL); *json receives the canonical observation, *errors the messages.
 * A refused call (NULL m or text, a dead or busy machine) returns -EINVAL,
 * RMAP_MISUSE or -EBUSY, with *json NULL and the reason in *errors. */
int rmap_run_trace(rmap_machine *m, const char *text, char **json, char **errors);

/* `file NAME PAGES` (1 to 2^24 pages), `proc NAME`, `CHILD = fork PARENT`,
 * `NAME exit`: names as above (-EINVAL), -EEXIST for a used name, -ESRCH for
 * a process that is not alive, -ENOMEM (nothing changed) for a full table. */
int rmap_file_create(rmap_machine *m, const char *name, uint64_t pages);
int rmap_process_create(rmap_machine *m, const char *name);
int rmap_fork(rmap_machine *m, const char *parent, const char *child);
int rmap_exit(rmap_machine *m, const char *name);
/* One operation of the trace language for a live process, without the
 * process name: "mmap 0x100000000000 4 rw anon-private", "write
 * 0x100000000000 2", "madvise ... pageout", "unmap ...", "exit". Exactly one
 * statement: a line break (a second line), trailing words or `=> RESULT` are
 * -EINVAL and nothing runs; so is a process argument that is not a name
 * ("Z = fork") and a line that is not an operation of that process
 * ("= fork P"). -ESRCH when the process is not alive. Returns the
 * operation's result: 0, a negative errno, RMAP_SIGSEGV, RMAP_SIGBUS,
 * RMAP_FAIL, a count for referenced/mkclean, RMAP_NOT_MODELLED;
 * rmap_last_error() gives the statement and its result (or the parse error). */
int rmap_op(rmap_machine *m, const char *process, const char *line);

/* rmap_walk() over the frame mapped at (process, addr): fn(ctx, process,
 * vma_start, address) per mapping visited (the process string is valid
 * during that call only); return nonzero to go on.
 * Returns the count visited, -EFAULT when no frame is mapped there, -ESRCH
 * when the process is not alive. The machine is busy during the walk (see
 * Walk callbacks above). */
typedef int (*rmap_walk_fn)(void *ctx, const char *process, uint64_t vma_start, uint64_t address);
int rmap_walk(rmap_machine *m, const char *process, uint64_t addr, rmap_walk_fn fn, void *ctx);

/* "P ADDR PAGES[, P ADDR PAGES...]" -> {"tokens":[...],"vmas":[...]} (free it);
 * NULL when refused or malformed (rmap_last_error(m) says why). */
char *rmap_observe(rmap_machine *m, const char *targets);
/* The invariant checker: 0 when clean, else the number of violations (and
 * *report, when report is not NULL, lists them one per line; free it). */
int rmap_check(rmap_machine *m, char **report);
/* Statistics of the current state as one JSON object (free it): objects and
 * bytes per arena table, the anon_vma forest, and the rmap walk cost (VMAs
 * visited per mapped frame against those mapping it), as `rmap stats --json`.
 * NULL when refused. */
char *rmap_stats_json(rmap_machine *m);

#ifdef __cplusplus
}
#endif
#endif
