/*
 * populate.c - the arena's populator (see include/rmap_populate.h).
 *
 * One thread per arena, started on demand. The model's thread publishes each
 * table's bump (`frontier`, a byte offset in the arena) every few hundred
 * records; the populator thread populates each table from where it stopped
 * (or from the bump, if the model has gone past it) to the bump plus the
 * table's lead, one 256 KiB-aligned chunk at a time, round robin over the
 * tables, and waits on a condition variable when every table is far enough
 * ahead. The model wakes it when a bump comes within half a lead of where
 * the thread stopped (`wake_at`): one wake per few megabytes, none per
 * record. Nothing here reads or writes the arena's contents.
 */
#include "rmap_populate.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* One populate call: 64 host pages of 4 KiB (a fraction of a millisecond),
 * so that the mmap_lock the call holds for reading is never held long by a
 * thread of the lowest priority (a writer, such as malloc's mmap, would wait
 * for it). */
#define CHUNK (256ull << 10)
#define PAGE 4096ull

struct rmap_populator {
    char *base;
    uint64_t size;
    uint64_t start[RMAP_T_COUNT];   /* the table's first byte (slot 0) */
    uint64_t end[RMAP_T_COUNT];     /* one past its last byte, page-aligned */
    uint64_t record[RMAP_T_COUNT];  /* record size */
    _Atomic uint64_t frontier[RMAP_T_COUNT]; /* the bump noted last, as a byte offset (0: never noted) */
    _Atomic uint64_t wake_at[RMAP_T_COUNT];  /* wake the waiting thread once the frontier reaches this */
    uint64_t done[RMAP_T_COUNT];    /* the thread's own: populated up to here */
    _Atomic int state;              /* RMAP_POPULATOR_* */
    _Atomic int stop;
    _Atomic uint64_t populated;     /* bytes populated */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;         /* the thread waits here for a bump to move */
    pthread_cond_t idle_cv;         /* quiesce waits here for the thread to wait */
    int waiting;                    /* under mu: the thread waits with nothing to do */
    pid_t pid;                      /* the process that started the thread (a fork's child has none) */
    pthread_t thread;
};

rmap_populator *rmap_populator_create(void *base, uint64_t size, const rmap_arena_header *hdr)
{
    const char *env = getenv("RMAP_ARENA_POPULATE");
    if (env && strcmp(env, "0") == 0)
        return NULL;
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) < 2)
        return NULL; /* one CPU: the thread would only take turns with the model */
    /* Only the tables on 4 KiB host pages (measured, docs/benchmarks.md):
     * where a table is on 2 MiB pages, the model overtaking the thread on a
     * huge page zeroes it a second time, and the thread zeroing 2 MiB pages
     * (slow on a host that backs memory on first touch) falls behind on the
     * frame table, the one the model fills fastest. (The page tables were
     * measured both ways: on 2 MiB pages, populated or not, a cold 10-million-
     * frame replay took twice the system time of 4 KiB pages populated.) */
    uint32_t tables = rmap_arena_small_page_tables();
    if (tables == 0)
        return NULL;
    rmap_populator *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base = base;
    p->size = size;
    for (int t = 0; t < RMAP_T_COUNT; t++) {
        uint64_t s = hdr->tables[t].offset;
        uint64_t e = s + (uint64_t)hdr->tables[t].capacity * hdr->tables[t].record_size;
        e = (e + PAGE - 1) & ~(PAGE - 1);
        if (e > size)
            e = size;
        p->start[t] = s;
        p->end[t] = e;
        p->record[t] = hdr->tables[t].record_size;
        atomic_init(&p->frontier[t], 0);
        atomic_init(&p->wake_at[t], UINT64_MAX);
        p->done[t] = s;
        if (!(tables & (1u << t)))
            p->end[t] = s; /* nothing to populate: next_range finds no work */
    }
    atomic_init(&p->state, RMAP_POPULATOR_IDLE);
    atomic_init(&p->stop, 0);
    atomic_init(&p->populated, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    return p;
}

/* The table's lead: a quarter of its bytes in use, within [MIN, MAX]. */
static uint64_t lead(const rmap_populator *p, int t, uint64_t frontier)
{
    uint64_t l = (frontier - p->start[t]) / 4;
    if (l < RMAP_POPULATE_MIN_AHEAD)
        l = RMAP_POPULATE_MIN_AHEAD;
    if (l > RMAP_POPULATE_MAX_AHEAD)
        l = RMAP_POPULATE_MAX_AHEAD;
    return l;
}

/* The next range of table t to populate, [*from, *to), page-aligned and
 * within one chunk; 0 when the table is far enough ahead. */
static int next_range(const rmap_populator *p, int t, uint64_t *from, uint64_t *to)
{
    uint64_t f = atomic_load(&p->frontier[t]);
    if (f == 0)
        return 0;
    uint64_t target = f + lead(p, t, f);
    if (target > p->end[t])
        target = p->end[t];
    uint64_t s = p->done[t] > f ? p->done[t] : f; /* never behind the model */
    s &= ~(PAGE - 1);
    if (s >= target)
        return 0;
    uint64_t e = (s + CHUNK) & ~(CHUNK - 1);
    if (e > target)
        e = (target + PAGE - 1) & ~(PAGE - 1);
    if (e > p->end[t])
        e = p->end[t];
    if (e <= s)
        return 0;
    *from = s;
    *to = e;
    return 1;
}

static void *populator_main(void *arg)
{
    rmap_populator *p = arg;
    /* SCHED_IDLE: the thread runs only on a CPU nothing else wants. On a
     * machine whose CPUs are all busy (others' work) it takes no time from
     * them and the model faults its pages in itself, as without it; where a
     * CPU is idle, it works there. (If the policy cannot be set, it runs at
     * normal priority.) */
    struct sched_param sp = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    for (;;) {
        if (atomic_load_explicit(&p->stop, memory_order_relaxed))
            break;
        int worked = 0;
        for (int t = 0; t < RMAP_T_COUNT; t++) {
            uint64_t s, e;
            if (!next_range(p, t, &s, &e))
                continue;
            if (madvise(p->base + s, (size_t)(e - s), MADV_POPULATE_WRITE) != 0) {
                int err = errno;
                if (err == EINTR)
                    continue; /* tried again on the next round */
                /* EINVAL: no MADV_POPULATE_WRITE in this kernel; ENOMEM,
                 * EFAULT, EHWPOISON: nothing more this thread can do. The
                 * model faults its pages in itself, as without it. */
                atomic_store(&p->state, RMAP_POPULATOR_OFF);
                pthread_mutex_lock(&p->mu);
                pthread_cond_broadcast(&p->idle_cv);
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
            p->done[t] = e;
            atomic_fetch_add_explicit(&p->populated, e - s, memory_order_relaxed);
            worked = 1;
        }
        if (worked)
            continue;
        /* Nothing to do: ask to be woken when a bump has used half of its
         * lead, look once more (a note may have come meanwhile), then wait. */
        pthread_mutex_lock(&p->mu);
        for (int t = 0; t < RMAP_T_COUNT; t++) {
            /* A table not noted yet: its first note wakes the thread; one
             * populated to its end: never. */
            uint64_t f = atomic_load(&p->frontier[t]);
            uint64_t w = 0;
            if (p->done[t] >= p->end[t]) {
                w = UINT64_MAX;
            } else if (f != 0) {
                uint64_t half = lead(p, t, f) / 2;
                w = p->done[t] > half ? p->done[t] - half : 0;
            }
            atomic_store(&p->wake_at[t], w);
        }
        int more = 0;
        for (int t = 0; t < RMAP_T_COUNT && !more; t++) {
            uint64_t s, e;
            more = next_range(p, t, &s, &e);
        }
        if (!more && !atomic_load(&p->stop)) {
            p->waiting = 1;
            pthread_cond_broadcast(&p->idle_cv);
            while (p->waiting && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            p->waiting = 0;
        }
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* Starts the thread with every signal blocked (signals are the model's
 * thread's business). */
static void start(rmap_populator *p)
{
    sigset_t all, old;
    sigfillset(&all);
    /* RUNNING before the thread exists: a thread that fails at once sets
     * OFF, which must stay. */
    atomic_store(&p->state, RMAP_POPULATOR_RUNNING);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, populator_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&p->state, RMAP_POPULATOR_OFF);
        return;
    }
    p->pid = getpid();
}

void rmap_populator_note(rmap_populator *p, int32_t table, uint32_t index)
{
    if (table < 0 || table >= RMAP_T_COUNT || p->end[table] == p->start[table])
        return; /* not a table this populator fills */
    uint64_t f = p->start[table] + (uint64_t)index * p->record[table];
    atomic_store(&p->frontier[table], f);
    int st = atomic_load_explicit(&p->state, memory_order_relaxed);
    if (st != RMAP_POPULATOR_RUNNING) {
        if (st == RMAP_POPULATOR_IDLE && f - p->start[table] >= RMAP_POPULATE_START_BYTES)
            start(p);
        return;
    }
    uint64_t w = atomic_load(&p->wake_at[table]);
    if (f < w)
        return;
    /* One wake per wait: the first note past the mark takes it. */
    if (!atomic_compare_exchange_strong(&p->wake_at[table], &w, UINT64_MAX))
        return;
    if (getpid() != p->pid)
        return; /* a fork's child: no thread, and the mutex may be held for ever */
    pthread_mutex_lock(&p->mu);
    if (p->waiting) {
        p->waiting = 0;
        pthread_cond_signal(&p->work_cv);
    }
    pthread_mutex_unlock(&p->mu);
}

void rmap_populator_quiesce(rmap_populator *p)
{
    if (getpid() != p->pid)
        return;
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->state) == RMAP_POPULATOR_RUNNING && !p->waiting)
        pthread_cond_wait(&p->idle_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void rmap_populator_destroy(rmap_populator *p)
{
    if (!p)
        return;
    /* The thread exists only in the process that started it (after a fork
     * the child has the memory, not the thread). A thread that ended (OFF)
     * is joined too. */
    if (p->pid != 0 && p->pid == getpid()) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_signal(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        struct timespec ts = {0, 0};
        clockid_t cid;
        if (getenv("RMAP_POPULATE_DEBUG") && pthread_getcpuclockid(p->thread, &cid) == 0) clock_gettime(cid, &ts);
        pthread_join(p->thread, NULL);
        if (getenv("RMAP_POPULATE_DEBUG")) fprintf(stderr, "populator: state %d populated %llu MiB cpu %.3f s\n", atomic_load(&p->state), (unsigned long long)(atomic_load(&p->populated) >> 20), ts.tv_sec + ts.tv_nsec / 1e9);
    } else if (p->pid != 0) {
        /* A fork's child: the copies of the mutex and condition variables
         * may show the parent's thread holding or waiting on them (glibc's
         * pthread_cond_destroy waits for that waiter for ever, and a held
         * mutex may not be destroyed). They own no resources: only freed. */
        free(p);
        return;
    }
    pthread_cond_destroy(&p->idle_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int rmap_populator_state(const rmap_populator *p, uint64_t *populated_bytes)
{
    if (populated_bytes)
        *populated_bytes = atomic_load(&((rmap_populator *)p)->populated);
    return atomic_load(&((rmap_populator *)p)->state);
}
