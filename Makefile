SHELL := /bin/bash
# swift-rmap: the two commands a new machine needs are `make demo` and `make test`.
SWIFT ?= swift
CC ?= cc

.PHONY: demo test build release oracle-bin clean

## demo: build in release and run the built-in scenario on the default arena.
demo:
	$(SWIFT) build -c release --product rmap
	.build/release/rmap demo

## test: unit tests, the trace corpus, and the differential check against the
## live kernel (skipped, and reported skipped, without root).
test:
	$(SWIFT) build --product rmap-oracle
	$(SWIFT) build --product rmap
	$(SWIFT) test 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}
	$(MAKE) examples
	$(MAKE) capi-test
	$(MAKE) install-check

## oracle: the differential check against this machine's kernel: the kernel corpus
## and 500 random kernel-only traces (seeds 1-500) on the model and on rmap-oracle;
## each difference is minimised into oracle-failures/. Exit 77 without root.
## More: make oracle ORACLE_ARGS="--count 2000 --first-seed 1 --jobs 2"
ORACLE_ARGS ?=
.PHONY: oracle
oracle:
	$(SWIFT) build --product rmap-oracle
	$(SWIFT) build --product rmap
	.build/debug/rmap oracle-check --oracle .build/debug/rmap-oracle $(ORACLE_ARGS)

## hugetlb-leak: the kernel corpus of issue 20 (Tests/Corpus/kernel-hugetlb-leak), on the
## model and on rmap-oracle, each observation compared. NOT run by `make test`: on Linux
## 6.18 every run LEAKS ONE HUGE-PAGE RESERVATION UNTIL REBOOT (HugePages_Rsvd +1; once
## the oracle sets nr_hugepages back, the page stays as a surplus page: HugePages_Total,
## _Free and _Surp +1 too; nr_hugepages still reads 0, measured). Needs root (the oracle); prints /proc/meminfo's HugePages_* around it.
.PHONY: hugetlb-leak
hugetlb-leak:
	$(SWIFT) build --product rmap-oracle
	$(SWIFT) build --product rmap
	@grep HugePages_ /proc/meminfo; echo "nr_hugepages $$(cat /proc/sys/vm/nr_hugepages)"
	@set -e; for t in Tests/Corpus/kernel-hugetlb-leak/*.trace; do \
	  m=$$(.build/debug/rmap replay --observe "$$t"); \
	  o=$$(.build/debug/rmap-oracle "$$t"); \
	  if [ "$$m" = "$$o" ]; then echo "same observation: $$t"; echo "$$o"; \
	  else echo "DIFFERENT: $$t"; echo "model:  $$m"; echo "oracle: $$o"; exit 1; fi; \
	done
	@grep HugePages_ /proc/meminfo; echo "nr_hugepages $$(cat /proc/sys/vm/nr_hugepages)"

## examples: the embedding examples, from Swift and from C (run by `make test`).
SWIFT_LIBDIR = $(shell dirname $$(dirname $$(readlink -f $$(command -v $(SWIFT)))))/lib/swift/linux
.PHONY: examples
examples:
	$(SWIFT) build --product rmap-embed-example
	.build/debug/rmap-embed-example
	$(SWIFT) build --product RmapC
	$(CC) -O2 -Wall -Werror -o .build/c-example Examples/c/example.c -ISources/RmapC \
		-L.build/debug -lRmapC -Wl,-rpath,$(CURDIR)/.build/debug -Wl,-rpath,$(SWIFT_LIBDIR)
	.build/c-example

## capi-test: the C API with bad arguments (Tests/C/capi_test.c, issue 17 items 16-21):
## NULL pointers, walk callbacks calling back in, destroyed and made-up handles,
## names and sizes, one statement per rmap_op, save and open errors. Each case
## runs in a child process, so a crash fails that case. Run by `make test`.
.PHONY: capi-test
capi-test:
	$(SWIFT) build --product RmapC
	$(CC) -O1 -g -Wall -Werror -o .build/capi-test Tests/C/capi_test.c -ISources/RmapC \
		-L.build/debug -lRmapC -Wl,-rpath,$(CURDIR)/.build/debug
	SWIFT_BACKTRACE=enable=no .build/capi-test

## install: the C library (lib/libRmapC.so), its header (include/rmap.h), a
## pkg-config file (lib/pkgconfig/rmap.pc) and the binaries (bin/rmap, and
## bin/rmap-oracle, which `rmap oracle-check` looks for next to rmap) under
## PREFIX (default /usr/local; DESTDIR for staging), built with
## INSTALL_CONFIG (default release). Then a C program builds with
## `cc prog.c $$(pkg-config --cflags --libs rmap)` (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
## when PREFIX is not searched by pkg-config). The library and the binaries
## load the Swift runtime of the toolchain that built them (their RUNPATH).
## uninstall: removes exactly those files.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_CONFIG ?= release
RMAP_VERSION = $(shell git describe --tags --always 2>/dev/null || echo unknown)
.PHONY: install uninstall install-check
install:
	$(SWIFT) build -c $(INSTALL_CONFIG) --product RmapC
	$(SWIFT) build -c $(INSTALL_CONFIG) --product rmap
	$(SWIFT) build -c $(INSTALL_CONFIG) --product rmap-oracle
	bin=$$($(SWIFT) build -c $(INSTALL_CONFIG) --show-bin-path) && \
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/lib/pkgconfig" "$(DESTDIR)$(PREFIX)/include" && \
	install -m 755 "$$bin/rmap" "$$bin/rmap-oracle" "$(DESTDIR)$(PREFIX)/bin/" && \
	install -m 755 "$$bin/libRmapC.so" "$(DESTDIR)$(PREFIX)/lib/libRmapC.so" && \
	install -m 644 Sources/RmapC/rmap.h "$(DESTDIR)$(PREFIX)/include/rmap.h" && \
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(RMAP_VERSION)|' Sources/RmapC/rmap.pc.in \
		> "$(DESTDIR)$(PREFIX)/lib/pkgconfig/rmap.pc"
	@echo "installed under $(DESTDIR)$(PREFIX): bin/rmap bin/rmap-oracle lib/libRmapC.so include/rmap.h lib/pkgconfig/rmap.pc"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/rmap" "$(DESTDIR)$(PREFIX)/bin/rmap-oracle" "$(DESTDIR)$(PREFIX)/lib/libRmapC.so" \
		"$(DESTDIR)$(PREFIX)/include/rmap.h" "$(DESTDIR)$(PREFIX)/lib/pkgconfig/rmap.pc"

## install-check (run by `make test`): an install into a temporary prefix (the
## debug build `make test` has made, INSTALL_CONFIG=debug), the C example built
## there with `cc $$(pkg-config --cflags --libs rmap)` and run, the installed
## rmap run on a corpus trace, then uninstall leaves the prefix empty.
install-check:
	@command -v pkg-config >/dev/null || { echo "make install-check: pkg-config is missing: run make setup first" >&2; exit 1; }
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX="$$tmp/prefix" INSTALL_CONFIG=debug; \
	export PKG_CONFIG_PATH="$$tmp/prefix/lib/pkgconfig"; \
	echo "pkg-config --cflags --libs rmap: $$(pkg-config --cflags --libs rmap)"; \
	test "$$(pkg-config --variable=prefix rmap)" = "$$tmp/prefix"; \
	cd "$$tmp"; \
	$(CC) -O2 -Wall -Werror -o c-example $(CURDIR)/Examples/c/example.c $$(pkg-config --cflags --libs rmap); \
	ldd ./c-example | grep -q "$$tmp/prefix/lib/libRmapC.so" || { echo "c-example does not load the installed libRmapC.so" >&2; ldd ./c-example >&2; exit 1; }; \
	./c-example; \
	"$$tmp/prefix/bin/rmap" replay --check $(CURDIR)/Tests/Corpus/model/hwpoison.trace; \
	cd $(CURDIR); $(MAKE) --no-print-directory uninstall PREFIX="$$tmp/prefix"; \
	left=$$(find "$$tmp/prefix" -type f); test -z "$$left" || { echo "uninstall left: $$left" >&2; exit 1; }; \
	echo "install-check: ok"

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

clean:
	rm -rf .build .build-*

## mutants: mutation testing (scripts/mutants.sh): each Mutants/*.patch, a one-line
## model bug, applied to a copy of the tree; the suite and a bounded fuzz run must
## kill it. Prints `N killed, M survived`. About a minute per mutant.
## One mutant: make mutants MUTANTS_ONLY=swap-in
MUTANTS_ONLY ?=
.PHONY: mutants
mutants:
	bash scripts/mutants.sh $(MUTANTS_ONLY)

## arena-mutations: single mutations of saved arenas (scripts/arena-mutations.sh):
## 2,000 random ones per seed state (two in five in the header), then every 4-byte
## word of the first two records of every table set to each boundary value; each
## loaded with --check and a short trace. Must print 0 crashed, 0 hung. About an hour here
## (2026-12-02: 70,464 rejected, 13,476 usable, 0 crashed, 0 hung, 0 inconsistent; 54 min).
ARENA_MUTATIONS ?= 2000
.PHONY: arena-mutations
arena-mutations:
	$(SWIFT) build --product rmap
	bash scripts/arena-mutations.sh $(ARENA_MUTATIONS)

## fuzz: the libFuzzer targets (parser, operation sequences with the checker, arena files),
## built with -sanitize=fuzzer,address in their own package (Fuzz/), 60 s each.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = --sanitize=fuzzer --sanitize=address --scratch-path $(CURDIR)/.build-fuzz --disable-build-manifest-caching \
	-Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
.PHONY: fuzz fuzz-long
fuzz:
	cd Fuzz && $(SWIFT) build -c debug --product FuzzParser $(FUZZ_FLAGS)
	cd Fuzz && $(SWIFT) build -c debug --product FuzzOps $(FUZZ_FLAGS)
	cd Fuzz && $(SWIFT) build -c debug --product FuzzLargeOps $(FUZZ_FLAGS)
	cd Fuzz && $(SWIFT) build -c debug --product FuzzArena $(FUZZ_FLAGS)
	mkdir -p .build-fuzz/corpus-parser .build-fuzz/corpus-ops .build-fuzz/corpus-large-ops .build-fuzz/corpus-arena fuzz-failures
	SWIFT_BACKTRACE=enable=no .build-fuzz/debug/FuzzParser -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -artifact_prefix=fuzz-failures/ .build-fuzz/corpus-parser Fuzz/corpus/parser
	SWIFT_BACKTRACE=enable=no .build-fuzz/debug/FuzzOps -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -artifact_prefix=fuzz-failures/ .build-fuzz/corpus-ops Fuzz/corpus/ops
	SWIFT_BACKTRACE=enable=no .build-fuzz/debug/FuzzLargeOps -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -artifact_prefix=fuzz-failures/ .build-fuzz/corpus-large-ops Fuzz/corpus/large-ops
	SWIFT_BACKTRACE=enable=no .build-fuzz/debug/FuzzArena -max_len=200000 -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -artifact_prefix=fuzz-failures/ .build-fuzz/corpus-arena Fuzz/corpus/arena

## fuzz-long: an hour per libFuzzer target, then a million-operation campaign per history mode.
fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=3600
	$(SWIFT) build -c release --product rmap
	.build/release/rmap fuzz --seed 1 --ops 1000000 --reuse split
	.build/release/rmap fuzz --seed 1 --ops 1000000 --reuse none
	-.build/release/rmap fuzz --seed 1 --ops 2000000 --reuse degree

## docs: DocC documentation of the Rmap library (articles: the tour, traces, C).
.PHONY: docs
docs:
	$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation --target Rmap \
		--output-path .build/docs --transform-for-static-hosting
	@echo "documentation in .build/docs"

## setup: installs, once, the system packages the Makefile calls that a fresh Debian
## machine with Swift may lack: graphviz (`dot`, for make pictures), gcc (`cc`,
## for make test's C programs and make bench-kernel) and pkgconf (`pkg-config`,
## for make test's install check). Only the missing ones, through
## apt-get (with sudo when not root); says what it installs, and installs nothing
## when every command is there. (`perf`, used by hand for the profiles in
## docs/benchmarks.md, is Debian's linux-perf; no target calls it.)
SETUP_NEEDS = dot:graphviz cc:gcc pkg-config:pkgconf
.PHONY: setup
setup:
	@missing=""; for need in $(SETUP_NEEDS); do \
		cmd=$${need%%:*}; pkg=$${need#*:}; \
		if command -v $$cmd >/dev/null; then echo "setup: $$cmd is there ($$(command -v $$cmd))"; \
		else echo "setup: $$cmd is missing: will install Debian's $$pkg"; missing="$$missing $$pkg"; fi; \
	done; \
	if [ -z "$$missing" ]; then echo "setup: nothing to install"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "setup: no apt-get here: install these packages (Debian names) by hand:$$missing" >&2; exit 1; fi; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then sudo="sudo "; fi; \
	echo "setup: $${sudo}apt-get update && $${sudo}apt-get install -y$$missing"; \
	$${sudo}apt-get update -qq && $${sudo}apt-get install -y -qq$$missing >/dev/null && \
	echo "setup: installed$$missing"

## pictures: Graphviz SVGs of the demo's rmap graph and of the CVE-2022-42703
## double reuse (degree) next to the same trace under split, and the curves of
## the design variants (variants-*.svg: bench-model variants, measured here, log-log).
## Needs Graphviz's `dot`: `make setup` installs it.
.PHONY: pictures
pictures:
	@command -v dot >/dev/null || { echo "make pictures: Graphviz's dot is missing: run make setup first" >&2; exit 1; }
	$(SWIFT) build -c release --product rmap
	mkdir -p .build/pictures
	.build/release/rmap dot --demo > .build/pictures/demo.dot
	.build/release/rmap dot --reuse degree Tests/Corpus/fuzz/cve-2022-42703-degree.trace > .build/pictures/cve-degree.dot
	.build/release/rmap dot --reuse split Tests/Corpus/fuzz/cve-2022-42703-degree.trace > .build/pictures/cve-split.dot
	for f in .build/pictures/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg"; done
	cd Benchmarks && $(SWIFT) build -c release --product bench-model --disable-build-manifest-caching
	Benchmarks/.build/release/bench-model variants -r 3 --svg .build/pictures > .build/pictures/variants.txt
	@ls .build/pictures/*.svg

## bench: the package-benchmark suites (Benchmarks/, their own package), then the
## gate: no malloc on the rmap_walk, try_to_unmap, page_referenced, munmap and exit
## paths (static thresholds in Benchmarks/Thresholds; time is never gated).
BENCH_GATED = --filter 'rmap_walk.*' --filter 'try_to_unmap.*' --filter 'page_referenced.*' \
	--filter 'munmap.*' --filter 'exit.*' --filter 'migrate.*' --filter 'rmap_walk_variant.*'
.PHONY: bench bench-kernel bench-walk bench-variants bench-scale
bench:
	cd Benchmarks && $(SWIFT) package benchmark --no-progress
	cd Benchmarks && $(SWIFT) package benchmark thresholds check --no-progress $(BENCH_GATED)

## bench-kernel: the same workloads on this machine's kernel (a C harness) and on
## the model (bench-model, release), one line per workload: ns per page (or PTE)
## on each side and ratio = kernel/model.
## The large-folio lines (thp-fault, mthp-fault-64k, thp-cow-split, hugetlb-fault,
## hugetlb-cow) run under the lock rmap-oracle takes to change the THP and
## hugetlb settings; the harness sets hugepages-64kB/enabled to `always` for
## mthp-fault-64k and nr_hugepages for the hugetlb lines (two huge pages per 512 of
## BENCH_PAGES: 512 MiB for 65536; over the machine's reserved and surplus pages) and writes the old
## values back itself (exit, fatal signals), and the shell trap here writes them
## back again whatever ends the harness (SIGKILL included), before the lock goes.
BENCH_PAGES ?= 65536
THP_LOCK = /tmp/rmap-oracle-large.lock
MTHP64_ENABLED = /sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled
NR_HUGEPAGES = /proc/sys/vm/nr_hugepages
bench-kernel:
	mkdir -p .build
	$(CC) -O2 -Wall -Werror -o .build/bench_kernel Benchmarks/kernel/bench_kernel.c
	cd Benchmarks && $(SWIFT) build -c release --product bench-model --disable-build-manifest-caching
	.build/bench_kernel -n $(BENCH_PAGES) -s > .build/bench-kernel.txt
	if [ "$$(id -u)" != 0 ]; then .build/bench_kernel -n $(BENCH_PAGES) -l >> .build/bench-kernel.txt; else \
	flock $(THP_LOCK) bash -c 'f=$(MTHP64_ENABLED); old=$$(sed -n "s/.*\[\(.*\)\].*/\1/p" $$f 2>/dev/null); \
		h=$$(cat $(NR_HUGEPAGES)); restore="echo $$h > $(NR_HUGEPAGES)"; \
		if [ -n "$$old" ]; then restore="$$restore; echo $$old > $$f"; fi; trap "$$restore" EXIT; \
		.build/bench_kernel -n $(BENCH_PAGES) -l -H' >> .build/bench-kernel.txt; fi
	Benchmarks/.build/release/bench-model workloads -n $(BENCH_PAGES) > .build/bench-model.txt
	@awk 'NR == FNR { k[$$1] = $$2; next } ($$1 in k) { \
		printf "%s kernel_ns=%s model_ns=%s ratio=%.1f\n", $$1, k[$$1], $$2, k[$$1] / $$2 }' \
		.build/bench-kernel.txt .build/bench-model.txt

## bench-walk: rmap_walk per visited mapping (1..10,000 mappings; small pages, and a
## PMD-mapped THP's head page), try_to_unmap per
## page, and the fork loop's anon_vmas and AVCs per reuse policy, on the model.
bench-walk:
	cd Benchmarks && $(SWIFT) build -c release --product bench-model --disable-build-manifest-caching
	Benchmarks/.build/release/bench-model walk
	Benchmarks/.build/release/bench-model walk-thp
	Benchmarks/.build/release/bench-model forkloop

## bench-scale: the model at 10 million frames and PTEs (issue 16): the replay of
## 10,000 processes writing 1,000 anonymous pages each (`rmap replay --frames
## 10485760` of a generated trace, removed afterwards), the same with 100
## processes, and a 10,000-process fork tree over one 1,000-page region; each in a
## child process: wall, user and system time, peak RSS, host page faults, ns per
## fault or PTE. RMAP_ARENA_SMALL_PAGES=1 keeps the arena on 4 KiB host pages;
## RMAP_ARENA_SMALL_TABLES=1 the frame table alone (page tables on huge pages, the
## layout before); RMAP_ARENA_POPULATE=0 turns the arena's populator off.
bench-scale:
	cd Benchmarks && $(SWIFT) build -c release --product bench-model --disable-build-manifest-caching
	Benchmarks/.build/release/bench-model scale

## bench-check: the invariant checker's cost (issue 17 item 8): `rmap replay
## --check` (the checker after every statement) of P mapping and writing 16
## pages and forking N times, N = 500, 1,000, 2,000, 10,000 (release build;
## scripts/bench-check.sh, traces generated in a temporary folder and removed).
## Prints wall and user CPU seconds with --check, and wall seconds without.
## Other counts: make bench-check BENCH_CHECK_FORKS="100 200".
BENCH_CHECK_FORKS ?= 500 1000 2000 10000
.PHONY: bench-check
bench-check:
	$(SWIFT) build -c release --product rmap
	scripts/bench-check.sh .build/release/rmap $(BENCH_CHECK_FORKS)

## bench-variants: the reverse-map designs of issue #6 behind the same walk API:
## anon_vma (the kernel), per-page PV lists (FreeBSD pmap, Linux 2.5 pte_chains)
## and no reverse map (Linux 2.4: scan every page table). Walk, fork, exit and
## bytes per mapping as sharing grows, printed as tables (Sources/RmapVariants,
## Benchmarks/Sources/bench-model/Variants.swift).
bench-variants:
	cd Benchmarks && $(SWIFT) build -c release --product bench-model --disable-build-manifest-caching
	Benchmarks/.build/release/bench-model variants

## workloads: re-records the real-workload corpus (Tests/Corpus/workloads/*.trace.gz)
## with `rmap record` (root and tracefs; docs/recording.md): a shell fork+exec loop,
## make -j2, a python3 import, git init/add/commit, cc -O2, a threaded program.
## One workload: make workloads WORKLOAD=threads
WORKLOAD ?=
.PHONY: workloads
workloads:
	$(SWIFT) build --product rmap
	bash scripts/record-workloads.sh $(WORKLOAD)

## workload-study: the recorded workloads on the model (release): replay throughput,
## the rmap designs (anon_vma, PV lists, full scan) at each workload's busiest moment,
## fork/exit with and without PV lists, RSS at exits against kmem:rss_stat.
.PHONY: workload-study
workload-study:
	$(SWIFT) build -c release --product rmap
	mkdir -p .build/workloads
	for f in Tests/Corpus/workloads/*.trace.gz; do gzip -dc "$$f" > .build/workloads/$$(basename "$$f" .gz); done
	.build/release/rmap workload-study .build/workloads/*.trace | tee .build/workloads/study.txt
	python3 scripts/workload-table.py .build/workloads/study.txt .build/workloads/*.trace
