/*
 * bench_kernel: the workloads of `make bench-kernel` on this machine's kernel.
 *
 *   bench_kernel [-n PAGES] [-r REPS] [-s | -l [-H]]
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
 * The large-folio workloads (N pages = N/512 THPs or N/16 64 KiB folios):
 *
 *   thp-fault        write one byte per 2 MiB of a 2 MiB-aligned
 *                    MADV_HUGEPAGE region (enabled madvise): one PMD-mapped
 *                    THP per fault; ns per 2 MiB
 *   mthp-fault-64k   write one byte per 64 KiB of a region without madvise,
 *                    with hugepages-64kB/enabled `always` for the run (the old
 *                    value is saved and written back right after, at exit and
 *                    on a fatal signal): one 64 KiB folio per fault; per 64 KiB
 *   thp-cow-split    fork a process with a THP-backed region; the child
 *                    writes one byte per 2 MiB (do_huge_pmd_wp_page splits
 *                    the PMD, do_wp_page copies one small page), timed in the
 *                    child; ns per 2 MiB
 *   hugetlb-fault    write one byte per 2 MiB of a private MAP_HUGETLB mapping
 *                    (hugetlb_no_page: a reserved page from the pool, zeroed);
 *                    ns per 2 MiB
 *   hugetlb-cow      fork a process whose private MAP_HUGETLB mapping is
 *                    written; the child writes one byte per 2 MiB (hugetlb_wp
 *                    copies the whole 2 MiB from the pool), timed in the
 *                    child; ns per 2 MiB
 *
 * The hugetlb workloads set /proc/sys/vm/nr_hugepages so that the pool has
 * 2 * N/512 pages no reservation holds (HugePages_Free - HugePages_Rsvd; a
 * machine's surplus pages become persistent first, as rmap-oracle sizes it),
 * and write the old value back right after, at exit and on a fatal signal
 * (`make bench-kernel` writes it back from its shell trap too). A pool that
 * cannot be had, or a fault that finds no page (SIGBUS), leaves them out.
 *
 * Each checks the folios it got: AnonHugePages of the region in
 * /proc/self/smaps (THP), hugepages-64kB/stats anon_fault_alloc and
 * anon_fault_fallback before and after (mTHP; system-wide counters, so
 * another process's 64 KiB faults can only add). A run where the kernel
 * fell back prints a warning on stderr and the line is left out.
 *
 * -s runs the small-page workloads only, -l the large-folio ones only. The
 * large-folio part runs under an exclusive flock on
 * /tmp/rmap-oracle-large.lock, the lock rmap-oracle holds while it changes
 * the THP settings for a large-page trace, so neither changes them under
 * the other; -H: the caller already holds it (`make bench-kernel` takes it
 * with flock(1) and writes the 64 KiB setting back from a shell trap too,
 * should this process be killed with SIGKILL).
 *
 * Every other anonymous region is MADV_NOHUGEPAGE: the model maps small
 * pages there, and so must the kernel side of the comparison.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define HPAGE (2UL << 20)
#define MTHP (64UL << 10)
#define THP_DIR "/sys/kernel/mm/transparent_hugepage"
#define MTHP64_ENABLED THP_DIR "/hugepages-64kB/enabled"
#define LARGE_LOCK "/tmp/rmap-oracle-large.lock"

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

/* ---- large folios ---- */

/* Set by a large-folio workload when the kernel gave smaller folios than asked. */
static int fell_back;

/* A 2 MiB-aligned private anonymous region of `bytes` (bytes a multiple of 2 MiB). */
static char *map_aligned(size_t bytes)
{
	char *raw = mmap(NULL, bytes + HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap");
	char *p = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	if (p > raw)
		munmap(raw, p - raw);
	munmap(p + bytes, raw + HPAGE - p);
	return p;
}

/* AnonHugePages (kB) of the mapping that starts at `start` in /proc/self/smaps; -1 if not found. */
static long anon_huge_kb(const char *start)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		die("/proc/self/smaps");
	char line[512];
	int in = 0;
	long kb = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = lo == (uintptr_t)start;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static void touch_stride(char *p, size_t bytes, size_t stride)
{
	for (size_t off = 0; off < bytes; off += stride)
		((volatile char *)p)[off] = 1;
}

static double thp_fault(void)
{
	size_t bytes = npages * PAGE, n = bytes / HPAGE;
	char *p = map_aligned(bytes);
	if (madvise(p, bytes, MADV_HUGEPAGE) != 0)
		die("madvise(MADV_HUGEPAGE)");
	uint64_t t0 = now_ns();
	touch_stride(p, bytes, HPAGE);
	uint64_t t1 = now_ns();
	long kb = anon_huge_kb(p);
	if (kb != (long)(bytes >> 10)) {
		fprintf(stderr, "bench_kernel: warning: thp-fault: AnonHugePages %ld kB, want %zu kB: fell back\n",
			kb, bytes >> 10);
		fell_back = 1;
	}
	munmap(p, bytes);
	return (double)(t1 - t0) / n;
}

static unsigned long read_ulong(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long v = 0;
	if (!f || fscanf(f, "%lu", &v) != 1)
		die(path);
	fclose(f);
	return v;
}

static double mthp_fault_64k(void)
{
	size_t bytes = npages * PAGE, n = bytes / MTHP;
	char *p = map_aligned(bytes);
	unsigned long a0 = read_ulong(THP_DIR "/hugepages-64kB/stats/anon_fault_alloc");
	unsigned long f0 = read_ulong(THP_DIR "/hugepages-64kB/stats/anon_fault_fallback");
	uint64_t t0 = now_ns();
	touch_stride(p, bytes, MTHP);
	uint64_t t1 = now_ns();
	unsigned long a1 = read_ulong(THP_DIR "/hugepages-64kB/stats/anon_fault_alloc");
	unsigned long f1 = read_ulong(THP_DIR "/hugepages-64kB/stats/anon_fault_fallback");
	long kb = anon_huge_kb(p);
	if (a1 - a0 < n || f1 != f0 || kb != 0) {
		fprintf(stderr, "bench_kernel: warning: mthp-fault-64k: %lu 64 KiB folios allocated, want %zu; "
			"%lu fallbacks; AnonHugePages %ld kB: fell back\n", a1 - a0, n, f1 - f0, kb);
		fell_back = 1;
	}
	munmap(p, bytes);
	return (double)(t1 - t0) / n;
}

static double thp_cow_split(void)
{
	size_t bytes = npages * PAGE, n = bytes / HPAGE;
	char *p = map_aligned(bytes);
	if (madvise(p, bytes, MADV_HUGEPAGE) != 0)
		die("madvise(MADV_HUGEPAGE)");
	touch_stride(p, bytes, HPAGE);
	long kb = anon_huge_kb(p);
	if (kb != (long)(bytes >> 10)) {
		fprintf(stderr, "bench_kernel: warning: thp-cow-split: parent AnonHugePages %ld kB, want %zu kB: fell back\n",
			kb, bytes >> 10);
		fell_back = 1;
	}
	int fds[2];
	if (pipe(fds) != 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		uint64_t t0 = now_ns();
		touch_stride(p, bytes, HPAGE);
		uint64_t r[2] = { now_ns() - t0, (uint64_t)anon_huge_kb(p) };
		if (write(fds[1], r, sizeof r) != sizeof r)
			_exit(1);
		_exit(0);
	}
	uint64_t r[2] = { 0, 0 };
	if (read(fds[0], r, sizeof r) != sizeof r)
		die("read from child");
	waitpid(pid, NULL, 0);
	close(fds[0]);
	close(fds[1]);
	/* Every PMD of the child was split (AnonHugePages counts PMD-mapped THPs only). */
	if (r[1] != 0) {
		fprintf(stderr, "bench_kernel: warning: thp-cow-split: child AnonHugePages %lu kB after the writes, want 0\n",
			(unsigned long)r[1]);
		fell_back = 1;
	}
	munmap(p, bytes);
	return (double)r[0] / n;
}

/* ---- hugetlb ---- */

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

/* HugePages_<name> of /proc/meminfo; -1 if missing. */
static long meminfo_huge(const char *name)
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		die("/proc/meminfo");
	char line[256], key[64];
	long v = -1;
	snprintf(key, sizeof key, "HugePages_%s: %%ld", name);
	while (fgets(line, sizeof line, f))
		if (sscanf(line, key, &v) == 1)
			break;
	fclose(f);
	return v;
}

/* A private MAP_HUGETLB mapping of `bytes`, NULL when the pool cannot reserve it. */
static char *map_hugetlb(size_t bytes)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* One write per 2 MiB of a private hugetlb mapping: the mapping's reservation
 * (taken at mmap) holds a page for each fault; each takes one from the pool. */
static double hugetlb_fault(void)
{
	size_t bytes = npages * PAGE, n = bytes / HPAGE;
	char *p = map_hugetlb(bytes);
	if (!p) {
		fprintf(stderr, "bench_kernel: warning: hugetlb-fault: mmap: %s\n", strerror(errno));
		fell_back = 1;
		return 0;
	}
	long f0 = meminfo_huge("Free");
	uint64_t t0 = now_ns();
	touch_stride(p, bytes, HPAGE);
	uint64_t t1 = now_ns();
	if (f0 - meminfo_huge("Free") != (long)n) {
		fprintf(stderr, "bench_kernel: warning: hugetlb-fault: HugePages_Free %ld -> %ld, want %zu pages taken\n",
			f0, meminfo_huge("Free"), n);
		fell_back = 1;
	}
	munmap(p, bytes);
	return (double)(t1 - t0) / n;
}

static double hugetlb_cow(void)
{
	size_t bytes = npages * PAGE, n = bytes / HPAGE;
	char *p = map_hugetlb(bytes);
	if (!p) {
		fprintf(stderr, "bench_kernel: warning: hugetlb-cow: mmap: %s\n", strerror(errno));
		fell_back = 1;
		return 0;
	}
	touch_stride(p, bytes, HPAGE);
	int fds[2];
	if (pipe(fds) != 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		long f0 = meminfo_huge("Free");
		uint64_t t0 = now_ns();
		touch_stride(p, bytes, HPAGE);
		uint64_t r[2] = { now_ns() - t0, (uint64_t)(f0 - meminfo_huge("Free")) };
		if (write(fds[1], r, sizeof r) != sizeof r)
			_exit(1);
		_exit(0);
	}
	uint64_t r[2] = { 0, 0 };
	int status = 0;
	ssize_t got = read(fds[0], r, sizeof r);
	waitpid(pid, &status, 0);
	close(fds[0]);
	close(fds[1]);
	/* Each write copied the huge page: one pool page each (a child that
	 * found none died of SIGBUS before writing its result). */
	if (got != sizeof r || r[1] != n) {
		fprintf(stderr, "bench_kernel: warning: hugetlb-cow: the child %s, %lu pool pages taken, want %zu\n",
			WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "ended", (unsigned long)r[1], n);
		fell_back = 1;
	}
	munmap(p, bytes);
	return (double)r[0] / n;
}

/* nr_hugepages as found, written back by restore_pool() (after the runs, at
 * exit and on a fatal signal). */
static char pool_old[32];
static volatile sig_atomic_t pool_changed;

static int write_str(const char *path, const char *v);

static void restore_pool(void)
{
	if (pool_changed && write_str(NR_HUGEPAGES, pool_old) == 0)
		pool_changed = 0;
}

/* hugepages-64kB/enabled: the value found at start, written back by
 * restore_mthp64() (after the run, at exit, and on a fatal signal). */
static char mthp64_old[16];
static volatile sig_atomic_t mthp64_changed;

static int write_str(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, v, strlen(v));
	close(fd);
	return w == (ssize_t)strlen(v) ? 0 : -1;
}

static void restore_mthp64(void)
{
	if (mthp64_changed && write_str(MTHP64_ENABLED, mthp64_old) == 0)
		mthp64_changed = 0;
}

static void on_signal(int sig)
{
	restore_mthp64();
	restore_pool();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Reads the bracketed mode of hugepages-64kB/enabled into mthp64_old. */
static int save_mthp64(void)
{
	FILE *f = fopen(MTHP64_ENABLED, "r");
	char line[128];
	if (!f)
		return -1;
	char *ok = fgets(line, sizeof line, f);
	fclose(f);
	char *a = ok ? strchr(line, '[') : NULL, *b = a ? strchr(a, ']') : NULL;
	if (!b || b - a - 1 >= (long)sizeof mthp64_old)
		return -1;
	memcpy(mthp64_old, a + 1, b - a - 1);
	mthp64_old[b - a - 1] = 0;
	return 0;
}

static void run(const char *name, double (*fn)(void))
{
	double xs[64];
	fell_back = 0;
	fn(); /* warm-up run */
	for (int i = 0; i < reps; i++)
		xs[i] = fn();
	if (fell_back) {
		fprintf(stderr, "bench_kernel: warning: %s left out: the kernel fell back to smaller folios\n", name);
		return;
	}
	printf("%s %.1f\n", name, median(xs, reps));
	fflush(stdout);
}

static void run_mthp_64k(void)
{
	if (save_mthp64() != 0) {
		fprintf(stderr, "bench_kernel: warning: mthp-fault-64k left out: no %s\n", MTHP64_ENABLED);
		return;
	}
	atexit(restore_mthp64);
	int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGSEGV, SIGBUS, SIGABRT, SIGPIPE };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		signal(sigs[i], on_signal);
	mthp64_changed = 1;
	if (write_str(MTHP64_ENABLED, "always") != 0) {
		mthp64_changed = 0;
		fprintf(stderr, "bench_kernel: warning: mthp-fault-64k left out: cannot write %s (%s)\n",
			MTHP64_ENABLED, strerror(errno));
		return;
	}
	run("mthp-fault-64k", mthp_fault_64k);
	restore_mthp64();
	if (mthp64_changed)
		die("restoring " MTHP64_ENABLED);
}

static void run_hugetlb(void)
{
	size_t want = 2 * (npages * PAGE / HPAGE);
	FILE *f = fopen(NR_HUGEPAGES, "r");
	if (!f || !fgets(pool_old, sizeof pool_old, f)) {
		fprintf(stderr, "bench_kernel: warning: hugetlb workloads left out: cannot read %s\n", NR_HUGEPAGES);
		if (f)
			fclose(f);
		return;
	}
	fclose(f);
	pool_old[strcspn(pool_old, "\n")] = 0;
	long persistent = atol(pool_old);
	long avail = meminfo_huge("Free") - meminfo_huge("Rsvd");
	long target = persistent + meminfo_huge("Surp") + (long)want - avail;
	if (target < persistent)
		target = persistent;
	char v[32];
	snprintf(v, sizeof v, "%ld", target);
	atexit(restore_pool);
	int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGSEGV, SIGBUS, SIGABRT, SIGPIPE };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		signal(sigs[i], on_signal);
	pool_changed = 1;
	if (write_str(NR_HUGEPAGES, v) != 0) {
		fprintf(stderr, "bench_kernel: warning: hugetlb workloads left out: cannot write %s (%s)\n", NR_HUGEPAGES,
			strerror(errno));
		restore_pool();
		return;
	}
	long got = meminfo_huge("Free") - meminfo_huge("Rsvd");
	if (got < (long)want)
		fprintf(stderr, "bench_kernel: warning: hugetlb workloads left out: the pool has %ld free pages, want %zu\n",
			got, want);
	else {
		run("hugetlb-fault", hugetlb_fault);
		run("hugetlb-cow", hugetlb_cow);
	}
	restore_pool();
	if (pool_changed)
		die("restoring " NR_HUGEPAGES);
}

int main(int argc, char **argv)
{
	int c, small = 1, large = 1, lock_held = 0;
	while ((c = getopt(argc, argv, "n:r:slH")) != -1) {
		switch (c) {
		case 'n': npages = strtoul(optarg, NULL, 0); break;
		case 'r': reps = atoi(optarg); break;
		case 's': large = 0; break;
		case 'l': small = 0; break;
		case 'H': lock_held = 1; break;
		default:
			fprintf(stderr, "usage: bench_kernel [-n PAGES] [-r REPS] [-s | -l [-H]]\n");
			return 2;
		}
	}
	if (npages == 0 || reps < 1 || reps > 64) {
		fprintf(stderr, "bench_kernel: -n must be > 0, -r in 1..64\n");
		return 2;
	}
	if (small) {
		make_file();
		run("anon-fault", anon_fault);
		run("cow-fault", cow_fault);
		run("file-fault", file_fault);
		run("fork-per-pte", fork_per_pte);
		run("munmap-per-page", munmap_per_page);
		close(file_fd);
	}
	if (!large)
		return 0;
	if (!lock_held) {
		int lfd = open(LARGE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (lfd < 0) {
			fprintf(stderr, "bench_kernel: warning: large-folio workloads left out: %s: %s\n",
				LARGE_LOCK, strerror(errno));
			return 0;
		}
		if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
			fprintf(stderr, "bench_kernel: waiting for %s (an rmap-oracle large-page run)\n", LARGE_LOCK);
			if (flock(lfd, LOCK_EX) != 0)
				die("flock");
		}
		/* held until exit */
	}
	unsigned long c0 = read_ulong(THP_DIR "/khugepaged/pages_collapsed");
	run("thp-fault", thp_fault);
	run_mthp_64k();
	run("thp-cow-split", thp_cow_split);
	run_hugetlb();
	unsigned long c1 = read_ulong(THP_DIR "/khugepaged/pages_collapsed");
	if (c1 != c0)
		fprintf(stderr, "bench_kernel: note: khugepaged collapsed %lu pages during the large-folio runs\n", c1 - c0);
	return 0;
}
