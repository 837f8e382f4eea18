/* Embedding swift-rmap from C: make a machine, run trace text, walk the
 * reverse map of a shared frame, observe, check, save and reopen.
 * Built and run by `make test` (see the Makefile's c-example target). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rmap.h"

static int visit(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    int *n = ctx;
    (*n)++;
    printf("  mapped by %s at %#llx (VMA at %#llx)\n", process, (unsigned long long)address,
           (unsigned long long)vma_start);
    return 1;
}

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAILED: %s (line %d)\n", #cond, __LINE__); return 1; } } while (0)

int main(void)
{
    rmap_machine *m = rmap_machine_create(0, "split");
    CHECK(m != NULL);
    char *json = NULL, *errors = NULL;
    int rc = rmap_run_trace(m,
        "file lib 16\n"
        "proc P0\n"
        "P0 mmap 0x100000000000 4 rw anon-private\n"
        "P0 write 0x100000000000 4\n"
        "P0 mmap 0x100000010000 16 r file-shared:lib@0\n"
        "P0 read 0x100000010000\n"
        "P1 = fork P0\n"
        "P1 read 0x100000010000\n"
        "observe P0 0x100000000000 2, P1 0x100000000000 2\n", &json, &errors);
    CHECK(rc == 0);
    printf("trace: %s\n", json);
    rmap_free(json);
    rmap_free(errors);

    CHECK(rmap_process_create(m, "P9") == 0);
    CHECK(rmap_op(m, "P9", "mmap 0x100000000000 1 r anon-private") == 0);
    CHECK(rmap_op(m, "P9", "write 0x100000000000") == RMAP_SIGSEGV);
    CHECK(rmap_op(m, "P9", "mmap 0x100000000000 1 r anon-private") == -17); /* EEXIST */
    printf("rmap_last_error: %s\n", rmap_last_error(m)); /* the statement and its result */
    CHECK(rmap_op(m, "P9", "read 0x100000000000\nP9 exit") == -22); /* EINVAL: one statement per call */
    printf("rmap_last_error: %s\n", rmap_last_error(m));

    int n = 0;
    printf("rmap_walk of the anon frame at P0 0x100000000000:\n");
    CHECK(rmap_walk(m, "P0", 0x100000000000ull, visit, &n) == 2 && n == 2);
    n = 0;
    printf("rmap_walk of the file frame at P1 0x100000010000:\n");
    CHECK(rmap_walk(m, "P1", 0x100000010000ull, visit, &n) == 2 && n == 2);
    CHECK(rmap_walk(m, "P9", 0x100000000000ull, visit, &n) == -14); /* zero page: no frame */

    char *obs = rmap_observe(m, "P0 0x100000000000 2, P1 0x100000010000 1");
    CHECK(obs != NULL && strstr(obs, "\"A1:2\"") != NULL);
    printf("observe: %s\n", obs);
    rmap_free(obs);

    char *report = NULL;
    CHECK(rmap_check(m, &report) == 0);
    rmap_free(report);

    /* 4 anon frames shared by P0 and its child P1, 16 file frames mapped by
     * both (fault-around): 20 frames, 40 mappings, and no COW yet, so every
     * VMA a walk visits maps the frame. */
    char *stats = rmap_stats_json(m);
    CHECK(stats != NULL);
    CHECK(strstr(stats, "\"mapped_frames\":{\"anon\":4,\"file\":16},\"mappings\":40") != NULL);
    CHECK(strstr(stats, "\"walk_hits\":40,\"walk_visits\":40") != NULL);
    printf("stats: %s\n", stats);
    rmap_free(stats);

    const char *path = "/tmp/rmap-c-example.arena";
    CHECK(rmap_machine_save(m, path) == 0);
    rmap_machine_destroy(m);
    char err[256];
    rmap_machine *again = rmap_machine_open(path, err, sizeof err);
    CHECK(again != NULL);
    n = 0;
    CHECK(rmap_walk(again, "P0", 0x100000000000ull, visit, &n) == 2);
    rmap_machine_destroy(again);
    remove(path);
    printf("c embedding example: ok\n");
    return 0;
}
