/*
 * rmap.h - the C API of swift-rmap, a model of the Linux reverse mapping.
 *
 * Link with -lRmapC (the dynamic library product of the package). Every call
 * takes a machine made by rmap_machine_create() or rmap_machine_open().
 * Results: 0 ok; a negative Linux errno (-ENOMEM, -EEXIST, -EINVAL, -EFAULT,
 * -ESRCH); RMAP_SIGSEGV / RMAP_SIGBUS for accesses that fault; RMAP_FAIL for
 * a reverse operation that returned false. Strings returned by the library
 * are freed with rmap_free(). Not thread-safe: one thread per machine.
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
 * a PMD migration entry, an mprotect or mremap of a hugetlb mapping, ...);
 * nothing was changed by the refused
 * part. rmap_last_error() names it where the call sets it. */
#define RMAP_NOT_MODELLED (-1003)

/* A machine over a new in-memory arena; frames 0 = the default (262144);
 * reuse "none", "degree", "split" or NULL (split). NULL on error. */
rmap_machine *rmap_machine_create(uint32_t frames, const char *reuse);
/* Reopens a saved state; NULL (and a message in err) if the file is rejected. */
rmap_machine *rmap_machine_open(const char *path, char *err, size_t errlen);
int rmap_machine_save(rmap_machine *m, const char *path);
void rmap_machine_destroy(rmap_machine *m);
void rmap_free(void *p);

/* Runs trace text (docs/trace-format.md) on the machine, continuing its
 * state. Returns 0, 1 (an expectation failed) or 2 (malformed trace, or a
 * statement that cannot run on this arena: a `proc` or `file` with its table
 * full, a `swap` beyond the swap map; the run stops at that line and *json is
 * NULL); *json receives the canonical observation, *errors the messages. */
int rmap_run_trace(rmap_machine *m, const char *text, char **json, char **errors);

int rmap_file_create(rmap_machine *m, const char *name, uint64_t pages);
int rmap_process_create(rmap_machine *m, const char *name);
int rmap_fork(rmap_machine *m, const char *parent, const char *child);
int rmap_exit(rmap_machine *m, const char *name);
/* One operation of the trace language for a process: "mmap 0x100000000000 4 rw
 * anon-private", "write 0x100000000000 2", "madvise ... pageout", "unmap ...". */
int rmap_op(rmap_machine *m, const char *process, const char *line);

/* rmap_walk() over the frame mapped at (process, addr): fn(ctx, process,
 * vma_start, address) per mapping visited; return nonzero to go on.
 * Returns the count visited, or -EFAULT when no frame is mapped there. */
typedef int (*rmap_walk_fn)(void *ctx, const char *process, uint64_t vma_start, uint64_t address);
int rmap_walk(rmap_machine *m, const char *process, uint64_t addr, rmap_walk_fn fn, void *ctx);

/* "P ADDR PAGES[, P ADDR PAGES...]" -> {"tokens":[...],"vmas":[...]} (free it). */
char *rmap_observe(rmap_machine *m, const char *targets);
/* The invariant checker: 0 when clean, else the number of violations. */
int rmap_check(rmap_machine *m, char **report);
/* Statistics of the current state as one JSON object (free it): objects and
 * bytes per arena table, the anon_vma forest, and the rmap walk cost (VMAs
 * visited per mapped frame against those mapping it), as `rmap stats --json`. */
char *rmap_stats_json(rmap_machine *m);

#ifdef __cplusplus
}
#endif
#endif
