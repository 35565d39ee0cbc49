#include "compress/codec.h"

#include <limits.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/error.h"

struct lb_codec_ctx {
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    void *lz4_state, *lz4hc_state; /* allocated on first use */
};

lb_status lb_codec_ctx_new(lb_codec_ctx **out, lb_error *err) {
    lb_codec_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->zc = ZSTD_createCCtx()) || !(c->zd = ZSTD_createDCtx())) {
        lb_codec_ctx_free(c);
        return lb_fail(err, LB_ERR_NOMEM, "codec: cannot allocate a compression context");
    }
    *out = c;
    return LB_OK;
}

void lb_codec_ctx_free(lb_codec_ctx *c) {
    if (!c) return;
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
    free(c->lz4_state);
    free(c->lz4hc_state);
    free(c);
}

const char *lb_codec_name(lb_codec c) {
    switch (c) {
    case LB_CODEC_STORED: return "stored";
    case LB_CODEC_ZSTD: return "zstd";
    case LB_CODEC_LZ4: return "lz4";
    }
    return "unknown";
}

size_t lb_codec_bound(lb_codec c, size_t n) {
    size_t b = n;
    if (c == LB_CODEC_ZSTD) b = ZSTD_compressBound(n);
    else if (c == LB_CODEC_LZ4 && n <= LZ4_MAX_INPUT_SIZE) b = (size_t)LZ4_compressBound((int)n);
    return b > n ? b : n;
}

static lb_status store(const void *src, size_t n, void *dst, size_t cap, size_t *out_n,
                       lb_codec *used, lb_error *err) {
    if (cap < n) return lb_fail(err, LB_ERR_ARG, "codec: output buffer of %zu bytes < %zu", cap, n);
    memcpy(dst, src, n);
    *out_n = n;
    *used = LB_CODEC_STORED;
    return LB_OK;
}

lb_status lb_codec_compress(lb_codec_ctx *ctx, lb_codec codec, int level, const void *src,
                            size_t n, void *dst, size_t cap, size_t *out_n, lb_codec *used,
                            lb_error *err) {
    size_t got = 0;
    if (codec == LB_CODEC_ZSTD) {
        got = ZSTD_compressCCtx(ctx->zc, dst, cap, src, n, level);
        if (ZSTD_isError(got)) {
            if (ZSTD_getErrorCode(got) == ZSTD_error_dstSize_tooSmall) got = SIZE_MAX;
            else return lb_fail(err, LB_ERR_ARG, "zstd: %s", ZSTD_getErrorName(got));
        }
    } else if (codec == LB_CODEC_LZ4) {
        if (n > LZ4_MAX_INPUT_SIZE) return lb_fail(err, LB_ERR_ARG, "lz4: %zu bytes is too large", n);
        int icap = cap > INT_MAX ? INT_MAX : (int)cap, r;
        if (level <= 1) {
            if (!ctx->lz4_state && !(ctx->lz4_state = malloc((size_t)LZ4_sizeofState())))
                return lb_fail(err, LB_ERR_NOMEM, "lz4: cannot allocate state");
            r = LZ4_compress_fast_extState(ctx->lz4_state, src, dst, (int)n, icap, 1);
        } else {
            if (!ctx->lz4hc_state && !(ctx->lz4hc_state = malloc((size_t)LZ4_sizeofStateHC())))
                return lb_fail(err, LB_ERR_NOMEM, "lz4: cannot allocate HC state");
            r = LZ4_compress_HC_extStateHC(ctx->lz4hc_state, src, dst, (int)n, icap, level);
        }
        got = r > 0 ? (size_t)r : SIZE_MAX;
    } else if (codec != LB_CODEC_STORED) {
        return lb_fail(err, LB_ERR_ARG, "codec: unknown codec %d", (int)codec);
    } else {
        got = SIZE_MAX;
    }
    if (got >= n) return store(src, n, dst, cap, out_n, used, err);
    *out_n = got;
    *used = codec;
    return LB_OK;
}

lb_status lb_codec_decompress(lb_codec_ctx *ctx, lb_codec codec, const void *src, size_t n,
                              void *dst, size_t want, lb_error *err) {
    if (codec == LB_CODEC_STORED) {
        if (n != want) return lb_fail(err, LB_ERR_CORRUPT, "stored block of %zu bytes, expected %zu", n, want);
        memcpy(dst, src, n);
        return LB_OK;
    }
    if (codec == LB_CODEC_ZSTD) {
        size_t r = ZSTD_decompressDCtx(ctx->zd, dst, want, src, n);
        if (ZSTD_isError(r)) return lb_fail(err, LB_ERR_CORRUPT, "zstd: %s", ZSTD_getErrorName(r));
        if (r != want) return lb_fail(err, LB_ERR_CORRUPT, "zstd: %zu bytes decoded, expected %zu", r, want);
        return LB_OK;
    }
    if (codec == LB_CODEC_LZ4) {
        if (n > INT_MAX || want > INT_MAX) return lb_fail(err, LB_ERR_CORRUPT, "lz4: block too large");
        int r = LZ4_decompress_safe(src, dst, (int)n, (int)want);
        if (r < 0) return lb_fail(err, LB_ERR_CORRUPT, "lz4: malformed block");
        if ((size_t)r != want) return lb_fail(err, LB_ERR_CORRUPT, "lz4: %d bytes decoded, expected %zu", r, want);
        return LB_OK;
    }
    return lb_fail(err, LB_ERR_CORRUPT, "unknown codec id %d", (int)codec);
}
