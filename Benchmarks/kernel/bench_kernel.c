/*
 * bench_kernel: the workloads of `make bench-kernel` on this machine's kernel.
 *
 *   bench_kernel [-n PAGES] [-r REPS]
 *
 * Prints one line `NAME NS` per workload: the median over REPS runs of the
 * nanoseconds per page (or per PTE copied), CLOCK_MONOTONIC around the
 * measured part only.
 *
 *   anon-fault       write-touch N fresh private anonymous pages
 *   cow-fault        fork a process with N written pages; the child writes
 *                    each page (wp_page_copy), timed in the child
 *   file-fault       read-touch a MAP_PRIVATE mapping of an N-page file
 *                    whose pages are in the page cache (fault-around
 *                    included: about one fault per 16 pages); per page
 *   fork-per-pte     fork() of a process with N written pages, timed in the
 *                    parent until fork returns; per PTE
 *   munmap-per-page  munmap() of N written pages
 *
 * Every anonymous region is MADV_NOHUGEPAGE: the model maps small pages
 * only, and so must the kernel side of the comparison.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static size_t npages = 65536;
static int reps = 7;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_kernel: %s: %s\n", what, strerror(errno));
	exit(1);
}

static char *map_anon(size_t pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (madvise(p, pages * PAGE, MADV_NOHUGEPAGE) != 0)
		die("madvise(MADV_NOHUGEPAGE)");
	return p;
}

static void touch_write(char *p, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		((volatile char *)p)[i * PAGE] = 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *xs, int n)
{
	qsort(xs, n, sizeof *xs, cmp_double);
	return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

static double anon_fault(void)
{
	char *p = map_anon(npages);
	uint64_t t0 = now_ns();
	touch_write(p, npages);
	uint64_t t1 = now_ns();
	munmap(p, npages * PAGE);
	return (double)(t1 - t0) / npages;
}

static double cow_fault(void)
{
	char *p = map_anon(npages);
	touch_write(p, npages);
	int fds[2];
	if (pipe(fds) != 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		uint64_t t0 = now_ns();
		touch_write(p, npages);
		uint64_t dt = now_ns() - t0;
		if (write(fds[1], &dt, sizeof dt) != sizeof dt)
			_exit(1);
		_exit(0);
	}
	uint64_t dt = 0;
	if (read(fds[0], &dt, sizeof dt) != sizeof dt)
		die("read from child");
	waitpid(pid, NULL, 0);
	close(fds[0]);
	close(fds[1]);
	munmap(p, npages * PAGE);
	return (double)dt / npages;
}

static int file_fd = -1;

static void make_file(void)
{
	char path[] = "/var/tmp/bench_kernel.XXXXXX";
	file_fd = mkstemp(path);
	if (file_fd < 0)
		die("mkstemp");
	unlink(path);
	if (ftruncate(file_fd, npages * PAGE) != 0)
		die("ftruncate");
	/* Write every page so the page cache holds them all (as the model's
	 * files are resident), then read once through a mapping to warm it. */
	char *w = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, file_fd, 0);
	if (w == MAP_FAILED)
		die("mmap file");
	touch_write(w, npages);
	munmap(w, npages * PAGE);
}

static double file_fault(void)
{
	char *p = mmap(NULL, npages * PAGE, PROT_READ, MAP_PRIVATE, file_fd, 0);
	if (p == MAP_FAILED)
		die("mmap file");
	volatile char sink = 0;
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < npages; i++)
		sink += ((volatile char *)p)[i * PAGE];
	uint64_t t1 = now_ns();
	(void)sink;
	munmap(p, npages * PAGE);
	return (double)(t1 - t0) / npages;
}

static double fork_per_pte(void)
{
	char *p = map_anon(npages);
	touch_write(p, npages);
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	uint64_t t1 = now_ns();
	if (pid < 0)
		die("fork");
	waitpid(pid, NULL, 0);
	munmap(p, npages * PAGE);
	return (double)(t1 - t0) / npages;
}

static double munmap_per_page(void)
{
	char *p = map_anon(npages);
	touch_write(p, npages);
	uint64_t t0 = now_ns();
	if (munmap(p, npages * PAGE) != 0)
		die("munmap");
	uint64_t t1 = now_ns();
	return (double)(t1 - t0) / npages;
}

static void run(const char *name, double (*fn)(void))
{
	double xs[64];
	fn(); /* warm-up run */
	for (int i = 0; i < reps; i++)
		xs[i] = fn();
	printf("%s %.1f\n", name, median(xs, reps));
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "n:r:")) != -1) {
		switch (c) {
		case 'n': npages = strtoul(optarg, NULL, 0); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_kernel [-n PAGES] [-r REPS]\n");
			return 2;
		}
	}
	if (npages == 0 || reps < 1 || reps > 64) {
		fprintf(stderr, "bench_kernel: -n must be > 0, -r in 1..64\n");
		return 2;
	}
	make_file();
	run("anon-fault", anon_fault);
	run("cow-fault", cow_fault);
	run("file-fault", file_fault);
	run("fork-per-pte", fork_per_pte);
	run("munmap-per-page", munmap_per_page);
	close(file_fd);
	return 0;
}
