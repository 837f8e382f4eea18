#!/bin/bash -eu
# OSS-Fuzz build script (the form Swift projects use with the base-builder-swift
# image, which sets $SWIFTFLAGS to the fuzzer and sanitizer flags).
cd "$SRC/swift-rmap/Fuzz"
for target in FuzzParser FuzzOps FuzzArena; do
  swift build -c release --product "$target" $SWIFTFLAGS
  cp ".build/release/$target" "$OUT/"
done
cp -r corpus/parser "$OUT/FuzzParser_seed_corpus" 2>/dev/null || true
(cd corpus/parser && zip -q "$OUT/FuzzParser_seed_corpus.zip" * ) || true
(cd corpus/ops && zip -q "$OUT/FuzzOps_seed_corpus.zip" * ) || true
(cd corpus/arena && zip -q "$OUT/FuzzArena_seed_corpus.zip" * ) || true
