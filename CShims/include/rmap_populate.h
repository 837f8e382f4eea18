/*
 * rmap_populate.h - the arena's populator: a host thread that faults in the
 * arena's memory a few megabytes ahead of where the model allocates.
 *
 * Models nothing of the kernel: it is about the host memory under the
 * arena. Each table of the arena is used from its start upwards (the bump
 * of rmap_table_desc), every record first written when it is first
 * allocated, so the first touch of each host page of the arena (a host page
 * fault, and zeroing of the page) falls on the model's own thread, one host
 * fault per 64 frame records or per page-table page. With two or more CPUs,
 * the populator takes that work to another CPU: MADV_POPULATE_WRITE of the
 * next few megabytes of each table that grows, ahead of its bump. Only the
 * tables on 4 KiB host pages (rmap_arena_small_page_tables: the frame table,
 * 64 bytes a frame, and the page-table pages, most of the memory a large run
 * touches); the tables on 2 MiB pages are left to the model (measured slower
 * when populated too: docs/benchmarks.md). The
 * arena's contents never change (populating faults in pages as zero-filled
 * memory, or leaves pages already there as they are); only when the host
 * pays for them does.
 *
 * It starts only once one table has grown past RMAP_POPULATE_START_BYTES
 * (small machines, the tests' and most traces', never start a thread), and
 * stays off where it cannot help: one CPU, a kernel without
 * MADV_POPULATE_WRITE (Linux < 5.14: the thread's first call fails with
 * EINVAL and it ends, the model going on as without it), a file-backed arena
 * (`--save`: populating would allocate the file's blocks beyond its state;
 * the caller does not create one), or RMAP_ARENA_POPULATE=0 in the
 * environment (for measurements). RMAP_POPULATE_DEBUG=1 prints, when the
 * arena goes, the thread's state, the bytes it populated and its CPU time
 * (stderr; for measurements).
 */
#ifndef RMAP_POPULATE_H
#define RMAP_POPULATE_H

#include <stdint.h>

#include "rmap_arena.h"

/* The bytes one table must have in use before the thread starts. */
#define RMAP_POPULATE_START_BYTES (8ull << 20)
/* How far ahead of a table's bump the thread populates: a quarter of the
 * bytes the table has in use, at least 1 MiB and at most 8 MiB (so the
 * memory populated and not yet used is at most 8 MiB per table, and a
 * quarter of what the table uses). */
#define RMAP_POPULATE_MIN_AHEAD (1ull << 20)
#define RMAP_POPULATE_MAX_AHEAD (8ull << 20)
/* The model tells the populator where each table's bump is every this many
 * records allocated from the bump (a power of two). */
#define RMAP_POPULATE_NOTE_EVERY 256u

typedef struct rmap_populator rmap_populator;

/* A populator for the anonymous arena of `size` bytes at `base` whose tables
 * `hdr` describes (the layout is read once: it never changes). NULL when it
 * is off (one CPU, RMAP_ARENA_POPULATE=0, no memory): the caller then never
 * calls the functions below. No thread is started here. */
rmap_populator *rmap_populator_create(void *base, uint64_t size, const rmap_arena_header *hdr);

/* Table `table`'s bump has reached record `index` (called by the model every
 * RMAP_POPULATE_NOTE_EVERY records, and for each large folio taken from the
 * bump). Starts the thread once the table's bytes in use pass
 * RMAP_POPULATE_START_BYTES; wakes it when it waits and the bump has come
 * within half its lead of where it stopped. A store, a load and a compare
 * when there is nothing to do. */
void rmap_populator_note(rmap_populator *p, int32_t table, uint32_t index);

/* Stops the thread (if it runs, in this process) and frees the populator.
 * Called before the arena is unmapped: no populate call runs after it. In a
 * fork's child (no thread) it only frees: the copied mutex and condition
 * variables are not destroyed (they may show the parent's thread waiting). */
void rmap_populator_destroy(rmap_populator *p);

/* What the populator has done, for tests and reports: its state
 * (RMAP_POPULATOR_*) and the bytes it has populated so far. */
enum {
    RMAP_POPULATOR_IDLE = 0,      /* no thread yet: no table past the start size */
    RMAP_POPULATOR_RUNNING = 1,   /* the thread runs (or waits for the bump to move) */
    RMAP_POPULATOR_OFF = 2        /* it ended: MADV_POPULATE_WRITE unsupported, or no thread could start */
};
int rmap_populator_state(const rmap_populator *p, uint64_t *populated_bytes);

/* Waits until the populator has no work left for the bumps noted so far
 * (tests: the state is then deterministic) or is off. */
void rmap_populator_quiesce(rmap_populator *p);

#endif
