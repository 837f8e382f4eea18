/* The C API with bad arguments (issue 17, items 16-21): every call returns an
 * error (or NULL with rmap_last_error() saying why), never crashes.
 *
 * Each case runs in a child process of its own, so a crash or a hang fails
 * that case (with the signal) and the others still run. `make test` builds
 * and runs this program (the Makefile's capi-test target); it prints one line
 * per case and `N passed, M failed`, and exits 1 when any case failed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "rmap.h"

static int failed_checks;

#define EXPECT(cond) do { if (!(cond)) { \
    fprintf(stderr, "    expected: %s (line %d)\n", #cond, __LINE__); failed_checks++; } } while (0)
/* An expectation the rest of the case depends on. */
#define REQUIRE(cond) do { if (!(cond)) { \
    fprintf(stderr, "    required: %s (line %d)\n", #cond, __LINE__); exit(1); } } while (0)

static const uint64_t A = 0x100000000000ull;

/* A machine of `frames` frames after `trace`, which must run cleanly. */
static rmap_machine *machine_after(uint64_t frames, const char *trace)
{
    rmap_machine *m = rmap_machine_create(frames, NULL);
    REQUIRE(m != NULL);
    char *json = NULL, *errors = NULL;
    int rc = rmap_run_trace(m, trace, &json, &errors);
    if (rc != 0) fprintf(stderr, "    %s\n", errors ? errors : "");
    REQUIRE(rc == 0);
    rmap_free(json);
    rmap_free(errors);
    return m;
}

/* A machine with P0 (4 written anon pages) and its child P1 sharing them. */
static rmap_machine *shared_machine(void)
{
    return machine_after(4096, "proc P0\n"
                               "P0 mmap 0x100000000000 4 rw anon-private\n"
                               "P0 write 0x100000000000 4\n"
                               "P1 = fork P0\n");
}

static int count_visit(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    (void)process; (void)vma_start; (void)address;
    (*(int *)ctx)++;
    return 1;
}

static int go_on(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    (void)process; (void)vma_start; (void)address;
    return ctx == NULL;
}

/* ---- item 16: NULL for any pointer argument ---- */

static void null_arguments(void)
{
    rmap_machine *m = shared_machine();
    char err[256] = "";
    char *json = (char *)1, *errors = NULL, *report = NULL;
    int n = 0;

    EXPECT(rmap_machine_open(NULL, err, sizeof err) == NULL);
    EXPECT(err[0] != '\0');
    EXPECT(rmap_machine_open(NULL, NULL, 0) == NULL);
    EXPECT(rmap_machine_open("/nonexistent/rmap.arena", NULL, 0) == NULL);
    EXPECT(rmap_machine_save(NULL, "/tmp/rmap-capi-null.arena") == -EINVAL);
    EXPECT(rmap_machine_save(m, NULL) == -EINVAL);

    EXPECT(rmap_run_trace(NULL, "proc Q\n", &json, &errors) == -EINVAL);
    rmap_free(errors); errors = NULL;
    json = (char *)1;
    EXPECT(rmap_run_trace(m, NULL, &json, &errors) == -EINVAL);
    EXPECT(json == NULL);
    EXPECT(errors != NULL && strstr(errors, "NULL") != NULL);
    rmap_free(errors); errors = NULL;
    EXPECT(rmap_run_trace(m, "proc Q\n", NULL, NULL) == 0);

    EXPECT(rmap_file_create(NULL, "f", 1) == -EINVAL);
    EXPECT(rmap_file_create(m, NULL, 1) == -EINVAL);
    EXPECT(rmap_process_create(NULL, "R") == -EINVAL);
    EXPECT(rmap_process_create(m, NULL) == -EINVAL);
    EXPECT(rmap_fork(NULL, "P0", "C") == -EINVAL);
    EXPECT(rmap_fork(m, NULL, "C") == -EINVAL);
    EXPECT(rmap_fork(m, "P0", NULL) == -EINVAL);
    EXPECT(rmap_exit(NULL, "P1") == -EINVAL);
    EXPECT(rmap_exit(m, NULL) == -EINVAL);
    EXPECT(rmap_op(NULL, "P0", "read 0x100000000000") == -EINVAL);
    EXPECT(rmap_op(m, NULL, "read 0x100000000000") == -EINVAL);
    EXPECT(rmap_op(m, "P0", NULL) == -EINVAL);
    EXPECT(rmap_walk(NULL, "P0", A, count_visit, &n) == -EINVAL);
    EXPECT(rmap_walk(m, NULL, A, count_visit, &n) == -EINVAL);
    EXPECT(rmap_walk(m, "P0", A, NULL, &n) == -EINVAL);
    EXPECT(rmap_walk(m, "P0", A, go_on, NULL) == 2);  /* ctx is the caller's: NULL is fine */
    EXPECT(n == 0);
    EXPECT(rmap_observe(NULL, "P0 0x100000000000 1") == NULL);
    EXPECT(rmap_observe(m, NULL) == NULL);
    EXPECT(strstr(rmap_last_error(m), "NULL") != NULL);
    EXPECT(rmap_check(NULL, &report) == -EINVAL);
    EXPECT(rmap_check(m, NULL) == 0);
    EXPECT(rmap_stats_json(NULL) == NULL);
    EXPECT(strstr(rmap_last_error(NULL), "NULL") != NULL);
    EXPECT(rmap_machine_create(0, "bogus") == NULL);
    EXPECT(strstr(rmap_last_error(NULL), "reuse") != NULL);
    EXPECT(rmap_machine_create(1, NULL) == NULL);
    EXPECT(rmap_machine_create(1u << 30, NULL) == NULL);
    EXPECT(strstr(rmap_last_error(NULL), "frames") != NULL);
    rmap_machine_destroy(NULL);
    rmap_free(NULL);

    /* Nothing above changed the machine: P0 and P1 still share the frames. */
    EXPECT(rmap_walk(m, "P0", A, count_visit, &n) == 2 && n == 2);
    EXPECT(rmap_check(m, NULL) == 0);
    EXPECT(rmap_last_error(m)[0] == '\0'); /* the last call succeeded */
    rmap_machine_destroy(m);
}

/* ---- item 17: a walk callback calling back into the machine ---- */

struct reentry {
    rmap_machine *m;
    rmap_machine *other;
    int results[16];
    char *strings[3];
    int calls;
};

static int reenter(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    (void)process; (void)vma_start; (void)address;
    struct reentry *r = ctx;
    if (r->calls++ > 0) return 1;
    int n = 0;
    char *json = NULL, *errors = NULL;
    r->results[0] = rmap_exit(r->m, "P1");
    r->results[1] = rmap_op(r->m, "P0", "munmap 0x100000000000 4");
    r->results[2] = rmap_walk(r->m, "P0", A, count_visit, &n);
    r->results[3] = rmap_run_trace(r->m, "P1 exit\n", &json, &errors);
    r->results[4] = json == NULL && errors != NULL;
    rmap_free(json);
    rmap_free(errors);
    r->results[5] = rmap_process_create(r->m, "R");
    r->results[6] = rmap_file_create(r->m, "f", 1);
    r->results[7] = rmap_fork(r->m, "P0", "C");
    r->results[8] = rmap_check(r->m, NULL);
    r->results[9] = rmap_machine_save(r->m, "/tmp/rmap-capi-reentry.arena");
    r->strings[0] = rmap_observe(r->m, "P0 0x100000000000 1");
    r->strings[1] = rmap_stats_json(r->m);
    /* Another machine is not busy. */
    r->results[10] = rmap_process_create(r->other, "X");
    r->results[11] = n;
    r->results[12] = strstr(rmap_last_error(r->m), "busy") != NULL;
    return 1;
}

static int destroy_in_callback(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    (void)process; (void)vma_start; (void)address;
    rmap_machine *m = ctx;
    rmap_machine_destroy(m);
    /* Dead from now on, though the walk is still running. */
    return rmap_exit(m, "P1") == RMAP_MISUSE;
}

static void walk_reentry(void)
{
    remove("/tmp/rmap-capi-reentry.arena");
    rmap_machine *m = shared_machine();
    rmap_machine *other = rmap_machine_create(256, NULL);
    REQUIRE(other != NULL);
    struct reentry r = { .m = m, .other = other };
    EXPECT(rmap_walk(m, "P0", A, reenter, &r) == 2);
    EXPECT(r.calls == 2);
    EXPECT(rmap_last_error(m)[0] == '\0'); /* the walk itself succeeded */
    for (int i = 0; i <= 3; i++) {
        if (r.results[i] != -EBUSY) fprintf(stderr, "    call %d from the callback gave %d\n", i, r.results[i]);
        EXPECT(r.results[i] == -EBUSY);
    }
    EXPECT(r.results[4] == 1);
    for (int i = 5; i <= 9; i++) {
        if (r.results[i] != -EBUSY) fprintf(stderr, "    call %d from the callback gave %d\n", i, r.results[i]);
        EXPECT(r.results[i] == -EBUSY);
    }
    EXPECT(r.strings[0] == NULL);
    EXPECT(r.strings[1] == NULL);
    EXPECT(r.results[10] == 0);
    EXPECT(r.results[11] == 0);
    EXPECT(r.results[12] == 1);
    EXPECT(access("/tmp/rmap-capi-reentry.arena", F_OK) != 0);
    /* Nothing ran: P1 is alive, P0's pages are mapped, the state is clean. */
    int n = 0;
    EXPECT(rmap_walk(m, "P1", A, count_visit, &n) == 2 && n == 2);
    EXPECT(rmap_process_create(m, "R") == 0);
    EXPECT(rmap_check(m, NULL) == 0);
    /* After the walk the machine takes calls again. */
    EXPECT(rmap_exit(m, "P1") == 0);
    EXPECT(rmap_check(m, NULL) == 0);
    rmap_machine_destroy(m);
    rmap_machine_destroy(other);

    /* Destroyed from its own walk's callback: the walk ends, then the handle is dead. */
    m = shared_machine();
    EXPECT(rmap_walk(m, "P0", A, destroy_in_callback, m) == 2);
    EXPECT(rmap_op(m, "P0", "read 0x100000000000") == RMAP_MISUSE);
    rmap_machine_destroy(m);
}

/* ---- item 18: destroyed, zeroed and made-up handles ---- */

static void dead_handles(void)
{
    rmap_machine *m = shared_machine();
    rmap_machine_destroy(m);
    int n = 0;
    char *json = NULL, *errors = NULL;
    EXPECT(rmap_op(m, "P0", "read 0x100000000000") == RMAP_MISUSE);
    EXPECT(strstr(rmap_last_error(m), "not a live rmap machine") != NULL);
    EXPECT(rmap_process_create(m, "Q") == RMAP_MISUSE);
    EXPECT(rmap_walk(m, "P0", A, count_visit, &n) == RMAP_MISUSE);
    EXPECT(rmap_run_trace(m, "proc Q\n", &json, &errors) == RMAP_MISUSE);
    EXPECT(json == NULL);
    rmap_free(errors);
    EXPECT(rmap_observe(m, "P0 0x100000000000 1") == NULL);
    EXPECT(rmap_stats_json(m) == NULL);
    EXPECT(rmap_check(m, NULL) == RMAP_MISUSE);
    EXPECT(rmap_machine_save(m, "/tmp/rmap-capi-dead.arena") == RMAP_MISUSE);
    rmap_machine_destroy(m); /* twice: ignored */

    /* Memory that never was a machine: zeroed, on the stack, a string. */
    void *zeroed = calloc(1, 4096);
    REQUIRE(zeroed != NULL);
    uint64_t stack[64] = { 0 };
    rmap_machine *fakes[] = { zeroed, (rmap_machine *)stack, (rmap_machine *)"P0 exit" };
    for (int i = 0; i < 3; i++) {
        EXPECT(rmap_process_create(fakes[i], "Q") == RMAP_MISUSE);
        EXPECT(rmap_op(fakes[i], "P0", "exit") == RMAP_MISUSE);
        EXPECT(rmap_check(fakes[i], NULL) == RMAP_MISUSE);
        EXPECT(rmap_stats_json(fakes[i]) == NULL);
        rmap_machine_destroy(fakes[i]);
    }
    free(zeroed);

    /* A live handle whose memory was overwritten (the library keeps a magic
     * word at its start): refused, never used again. */
    m = shared_machine();
    memset(m, 0, 8);
    EXPECT(rmap_op(m, "P0", "read 0x100000000000") == RMAP_MISUSE);
    EXPECT(strstr(rmap_last_error(m), "overwritten") != NULL);
    EXPECT(rmap_observe(m, "P0 0x100000000000 1") == NULL);
    rmap_machine_destroy(m); /* not released: leaked */
}

/* ---- item 19: names and sizes follow the trace language's rules ---- */

static void names_and_sizes(void)
{
    rmap_machine *m = shared_machine();
    const char *bad[] = { "", "a b", "\xff", "9x", "-x", "P0\n", "Z = fork",
        "x12345678901234567890123456789012345678901234567890123456789012345" /* 65 */ };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (rmap_process_create(m, bad[i]) != -EINVAL) fprintf(stderr, "    process name #%zu accepted\n", i);
        EXPECT(rmap_process_create(m, bad[i]) == -EINVAL);
        EXPECT(rmap_file_create(m, bad[i], 1) == -EINVAL);
        EXPECT(rmap_fork(m, "P0", bad[i]) == -EINVAL);
    }
    const char *reserved[] = { "file", "proc", "swap", "observe", "expect" };
    for (size_t i = 0; i < 5; i++) {
        EXPECT(rmap_process_create(m, reserved[i]) == -EINVAL);
        EXPECT(rmap_fork(m, "P0", reserved[i]) == -EINVAL);
    }
    /* 64 characters and the whole alphabet of names are fine. */
    EXPECT(rmap_process_create(m, "x123456789012345678901234567890123456789012345678901234567890123") == 0);
    EXPECT(rmap_process_create(m, "_a.b-c9") == 0);
    EXPECT(rmap_file_create(m, "lib.so-1_x", 16) == 0);
    EXPECT(rmap_file_create(m, "huge", UINT64_MAX) == -EINVAL);
    EXPECT(rmap_file_create(m, "empty", 0) == -EINVAL);
    EXPECT(rmap_file_create(m, "big", (1ull << 24) + 1) == -EINVAL);
    EXPECT(rmap_file_create(m, "most", 1ull << 24) == 0);

    /* The name of an exited process is used: it cannot name a new one. */
    EXPECT(rmap_exit(m, "P1") == 0);
    EXPECT(rmap_process_create(m, "P1") == -EEXIST);
    EXPECT(rmap_fork(m, "P0", "P1") == -EEXIST);
    EXPECT(rmap_exit(m, "P1") == -ESRCH);
    EXPECT(rmap_check(m, NULL) == 0);

    EXPECT(rmap_process_create(m, "a b") == -EINVAL);
    EXPECT(strstr(rmap_last_error(m), "not a name") != NULL);
    EXPECT(rmap_process_create(m, "proc") == -EINVAL);
    EXPECT(strstr(rmap_last_error(m), "reserved") != NULL);

    /* Whatever the calls above made saves and reopens, and traces may go on. */
    const char *path = "/tmp/rmap-capi-names.arena";
    EXPECT(rmap_machine_save(m, path) == 0);
    rmap_machine_destroy(m);
    char err[512] = "";
    rmap_machine *again = rmap_machine_open(path, err, sizeof err);
    if (again == NULL) fprintf(stderr, "    reopen: %s\n", err);
    REQUIRE(again != NULL);
    EXPECT(rmap_check(again, NULL) == 0);
    char *json = NULL, *errors = NULL;
    EXPECT(rmap_run_trace(again, "_a.b-c9 mmap 0x100000000000 1 r file-private:lib.so-1_x@0\n"
                                 "_a.b-c9 read 0x100000000000\n", &json, &errors) == 0);
    rmap_free(json);
    rmap_free(errors);
    rmap_machine_destroy(again);
    remove(path);
}

/* ---- item 21: a failed save or open says why (strerror), and returns the errno ---- */

static void save_and_open_errors(void)
{
    rmap_machine *m = shared_machine();
    EXPECT(rmap_machine_save(m, "/nonexistent-dir/x.arena") == -ENOENT);
    EXPECT(strstr(rmap_last_error(m), "No such file or directory") != NULL);
    EXPECT(rmap_machine_save(m, "/tmp") == -EISDIR);
    EXPECT(strstr(rmap_last_error(m), "directory") != NULL);
    EXPECT(rmap_check(m, NULL) == 0);
    EXPECT(rmap_last_error(m)[0] == '\0');

    char err[512] = "";
    EXPECT(rmap_machine_open("/nonexistent-dir/x.arena", err, sizeof err) == NULL);
    EXPECT(strstr(err, "No such file or directory") != NULL);
    EXPECT(strstr(rmap_last_error(NULL), "No such file or directory") != NULL);
    EXPECT(rmap_machine_open("/tmp", err, sizeof err) == NULL);
    EXPECT(strstr(err, "directory") != NULL);
    const char *empty = "/tmp/rmap-capi-empty.arena";
    FILE *f = fopen(empty, "w");
    REQUIRE(f != NULL);
    fclose(f);
    EXPECT(rmap_machine_open(empty, err, 8) == NULL);
    EXPECT(strlen(err) == 7); /* truncated to errlen - 1 */
    remove(empty);

    /* rmap_op says which statement gave which result. */
    EXPECT(rmap_op(m, "P0", "mmap 0x100000000000 1 rw anon-private") == -EEXIST);
    EXPECT(strstr(rmap_last_error(m), "EEXIST") != NULL);
    EXPECT(rmap_op(m, "P0", "mmap 0x100000000000 1 rw") == -EINVAL);
    EXPECT(strstr(rmap_last_error(m), "rmap_op:1:") != NULL);
    rmap_machine_destroy(m);
}

/* ---- item 20: one statement per rmap_op, the process name validated ---- */

static void one_statement(void)
{
    rmap_machine *m = shared_machine();
    EXPECT(rmap_process_create(m, "Q") == 0);
    /* A second line is an error, and nothing of the call runs. */
    EXPECT(rmap_op(m, "Q", "mmap 0x200000000000 1 rw anon-private\nQ exit") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "mmap 0x200000000000 1 rw anon-private\rQ exit") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "mmap 0x200000000000 1 rw anon-private\n") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "read 0x200000000000") == RMAP_SIGSEGV); /* no mapping was made */
    EXPECT(rmap_op(m, "Q", "mmap 0x200000000000 1 rw anon-private junk") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "mmap 0x200000000000 1 rw anon-private => ok") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "") == -EINVAL);
    EXPECT(rmap_op(m, "Q", "read 0x200000000000") == RMAP_SIGSEGV);
    /* The process argument is a name, not a piece of a statement. */
    EXPECT(rmap_op(m, "Z = fork", "Q") == -EINVAL);
    EXPECT(rmap_op(m, "Z", "= fork Q") == -ESRCH); /* Z is no process */
    EXPECT(rmap_op(m, "Q", "= fork P0") == -EINVAL);
    EXPECT(rmap_op(m, "P0", "= fork Q") == -EINVAL);
    EXPECT(rmap_op(m, "Q mmap", "0x200000000000 1 rw anon-private") == -EINVAL);
    EXPECT(rmap_process_create(m, "ksm") == 0);
    EXPECT(rmap_op(m, "ksm", "scan") == -EINVAL); /* a statement, not an operation of ksm */
    EXPECT(rmap_process_create(m, "Z") == 0); /* no Z was made above */
    EXPECT(rmap_op(m, "Q", "exit") == 0);
    EXPECT(rmap_op(m, "Q", "exit") == -ESRCH);
    EXPECT(rmap_check(m, NULL) == 0);
    rmap_machine_destroy(m);
}

struct test_case { const char *name; void (*fn)(void); };

/* ---- the walk names each mapping's process (the names are looked up
 * once per walk, not scanned per visit) ---- */

struct seen_names { int count; int seen[8]; int other; };

static int note_name(void *ctx, const char *process, uint64_t vma_start, uint64_t address)
{
    struct seen_names *s = ctx;
    s->count++;
    if (process[0] == 'P' && process[1] >= '0' && process[1] <= '7' && process[2] == 0
        && vma_start == A && address == A + 0x1000)
        s->seen[process[1] - '0']++;
    else
        s->other++;
    return 1;
}

static void walk_names(void)
{
    rmap_machine *m = shared_machine();   /* P0 and its child P1 */
    REQUIRE(rmap_fork(m, "P0", "P2") == 0);
    REQUIRE(rmap_fork(m, "P1", "P3") == 0);
    REQUIRE(rmap_exit(m, "P1") == 0);     /* P3 stays, P1 is gone */
    struct seen_names s = { 0 };
    EXPECT(rmap_walk(m, "P3", A + 0x1000, note_name, &s) == 3);
    EXPECT(s.count == 3 && s.other == 0);
    EXPECT(s.seen[0] == 1 && s.seen[1] == 0 && s.seen[2] == 1 && s.seen[3] == 1);
    rmap_machine_destroy(m);
}

/* ---- the populator thread (CShims/populate.c) and fork ---- */

/* A machine whose frame table passed 8 MiB has a populator thread, which
 * waits on a condition variable once it has caught up. A fork's child has no
 * thread, but its copy of the condition variable still counts the parent's
 * waiter: rmap_machine_destroy in the child must not wait for it (glibc's
 * pthread_cond_destroy would, for ever). The parent's machine is unaffected. */
static void destroy_in_fork_child(void)
{
    rmap_machine *m = machine_after(400000, "proc P\n"
                                            "P mmap 0x100000000000 160000 rw anon-private\n"
                                            "P write 0x100000000000 160000\n");
    usleep(300000); /* the thread (if this host starts one) catches up and waits */
    fflush(NULL);
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        alarm(10);
        rmap_machine_destroy(m);
        _exit(0);
    }
    int st = 0;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {}
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT(rmap_op(m, "P", "munmap 0x100000000000 160000") == 0);
    rmap_machine_destroy(m);
}

int main(int argc, char **argv)
{
    const struct test_case cases[] = {
        { "null-arguments (item 16)", null_arguments },
        { "walk-reentry (item 17)", walk_reentry },
        { "dead-handles (item 18)", dead_handles },
        { "names-and-sizes (item 19)", names_and_sizes },
        { "one-statement (item 20)", one_statement },
        { "save-and-open-errors (item 21)", save_and_open_errors },
        { "walk-names", walk_names },
        { "destroy-in-fork-child", destroy_in_fork_child },
    };
    const char *only = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && strncmp(cases[i].name, only, strlen(only)) != 0) continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            alarm(60);
            cases[i].fn();
            fflush(NULL);
            _exit(failed_checks ? 1 : 0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok      %s\n", cases[i].name);
            passed++;
        } else if (WIFSIGNALED(st)) {
            printf("CRASHED %s (signal %d%s)\n", cases[i].name, WTERMSIG(st),
                   WTERMSIG(st) == SIGALRM ? ": hung" : "");
            failed++;
        } else {
            printf("FAILED  %s\n", cases[i].name);
            failed++;
        }
    }
    printf("c api tests: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
