/* .lbz: lossless container for model files (public API in lowbit.h, format in docs/lbz.md).
 *
 *   offset 0      preamble, 64 bytes
 *                   magic "\x89LBZ\r\n\x1a\n", u32 version (1), u32 preamble size (64),
 *                   u64 original file size, u64 header_len, u64 xxh64(header),
 *                   u64 chunk size, u64 reserved (0), u64 xxh64(preamble bytes 0..55)
 *   64            the original file's first header_len bytes, verbatim
 *   64+header_len chunk payloads in original order, back to back; a chunk of elem_size e is
 *                   e plane records {u32 coded size, u8 method, 3 zero bytes} followed by the
 *                   e coded byte planes (plane p = byte p of every element), method 0 stored,
 *                   1 zstd, 2 lz4
 *   index_offset  n_chunks entries of 40 bytes: u64 original offset, u64 payload offset,
 *                   u32 original size, u32 payload size, u64 xxh64(original bytes),
 *                   u8 elem_size, u8 codec, 6 zero bytes
 *   size - 48     footer: u64 index_offset, u64 n_chunks, u64 xxh64(index),
 *                   u64 xxh64(whole original file), u64 xxh64(footer bytes 0..31),
 *                   magic "LBZINDEX"
 * All integers little-endian. Chunks tile [header_len, original size) and the payloads tile
 * [64 + header_len, index_offset) exactly; a reader checks both. */
#ifndef LB_COMPRESS_LBZ_H
#define LB_COMPRESS_LBZ_H
#include "lowbit.h"

#define LB_LBZ_VERSION 1
#define LB_LBZ_PREAMBLE_SIZE 64
#define LB_LBZ_FOOTER_SIZE 48
#define LB_LBZ_ENTRY_SIZE 40
#define LB_LBZ_MIN_CHUNK 4096u
#define LB_LBZ_MAX_CHUNK (64u << 20)

/* Chunk i's original offset and size, elem size and payload size (for tests and tools). */
typedef struct lb_lbz_chunk_info {
    uint64_t offset, payload_offset;
    uint32_t size, payload_size, elem_size, codec;
} lb_lbz_chunk_info;
int lb_lbz_chunk(const lb_lbz *z, size_t i, lb_lbz_chunk_info *out);

#endif
