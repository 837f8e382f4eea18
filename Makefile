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

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

clean:
	rm -rf .build .build-*
