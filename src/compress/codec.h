/* One-shot chunk coding over libzstd and liblz4 with a reusable per-thread context: one
 * lb_codec_ctx per worker thread, never one per chunk. */
#ifndef LB_COMPRESS_CODEC_H
#define LB_COMPRESS_CODEC_H
#include <stddef.h>

#include "lowbit.h"

typedef struct lb_codec_ctx lb_codec_ctx;

lb_status lb_codec_ctx_new(lb_codec_ctx **out, lb_error *err);
void lb_codec_ctx_free(lb_codec_ctx *c);

const char *lb_codec_name(lb_codec c);
/* Worst-case coded size of n bytes (>= n, so "stored" always fits). */
size_t lb_codec_bound(lb_codec c, size_t n);

/* Codes src[0..n) into dst (capacity cap >= lb_codec_bound). *used is codec, or
 * LB_CODEC_STORED (a plain copy) when coding would not make the data smaller. */
lb_status lb_codec_compress(lb_codec_ctx *ctx, lb_codec codec, int level, const void *src,
                            size_t n, void *dst, size_t cap, size_t *out_n, lb_codec *used,
                            lb_error *err);
/* Decodes exactly want bytes into dst (capacity want); any other size is LB_ERR_CORRUPT. Safe
 * on hostile input: never writes past dst + want. */
lb_status lb_codec_decompress(lb_codec_ctx *ctx, lb_codec codec, const void *src, size_t n,
                              void *dst, size_t want, lb_error *err);

#endif
