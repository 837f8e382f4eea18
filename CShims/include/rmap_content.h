/*
 * rmap_content.h - the content tokens the model and the kernel oracle share.
 *
 * The model does not keep page data: each frame holds one 64-bit content
 * token. The kernel oracle (Sources/RmapOracle) fills every page it writes
 * or creates with 512 copies of the same token, so two pages hold equal data
 * exactly when the model's tokens are equal (what KSM compares). Both sides
 * compute the tokens with the functions below, so they cannot drift apart.
 * No token is 0: 0 is the content of a zeroed page.
 */
#ifndef RMAP_CONTENT_H
#define RMAP_CONTENT_H

#include <stdint.h>

/* The token of a plain `write` (no value=): a mix (SplitMix64's finaliser)
 * of the writer's mm index in the model's mm table and the page's address,
 * never 0, so different writers or addresses write different data. */
static inline uint64_t rmap_write_token(uint32_t mm, uint64_t addr)
{
    uint64_t z = ((uint64_t)mm << 48) ^ addr ^ 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 1;
}

/* The token of page `index` of the `file`-th trace file (its ordinal among
 * the trace's `file` statements, from 0): what the oracle writes when it
 * creates the file, and what the model's page cache reads in. Every byte is
 * non-zero: 1 + 7 bits of the index (four bytes), 1 + 7 bits of the ordinal
 * (two bytes), then 'F', 'C'. */
static inline uint64_t rmap_file_token(uint64_t file, uint64_t index)
{
    uint64_t t = 0;
    for (int b = 0; b < 4; b++) t |= (1 + ((index >> (7 * b)) & 0x7f)) << (8 * b);
    t |= (1 + (file & 0x7f)) << 32;
    t |= (1 + ((file >> 7) & 0x7f)) << 40;
    t |= (uint64_t)'F' << 48 | (uint64_t)'C' << 56;
    return t;
}

#endif /* RMAP_CONTENT_H */
