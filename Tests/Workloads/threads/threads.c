/* The multi-threaded workload (scripts/record-workloads.sh): 4 threads each
 * fault in their own 256 KiB of a shared heap region and a private malloc'd
 * buffer, then the main thread forks once; the child writes half of one
 * thread's region (copy-on-write) and exits. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define PER_THREAD (256 * 1024)

static char *region;

static void *work(void *arg) {
    long i = (long)arg;
    char *mine = region + i * PER_THREAD;
    for (long off = 0; off < PER_THREAD; off += 4096) mine[off] = (char)(i + 1);
    char *buf = malloc(64 * 1024);
    memset(buf, (int)i, 64 * 1024);
    volatile long sum = 0;
    for (long off = 0; off < PER_THREAD; off += 4096) sum += mine[off];
    free(buf);
    return NULL;
}

int main(void) {
    region = mmap(NULL, THREADS * PER_THREAD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return 1;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pid_t c = fork();
    if (c == 0) {
        for (long off = 0; off < PER_THREAD / 2; off += 4096) region[off] = 42;
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    munmap(region, THREADS * PER_THREAD);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
