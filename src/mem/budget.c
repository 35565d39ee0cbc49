/* Memory budget planner: pure arithmetic over the sizes the caller measured. The order of
 * preference is documented at lb_mem_plan_make in lowbit.h. */
#include "mem/budget.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

__extension__ typedef unsigned __int128 u128;

const char *lb_mem_kv_dtype_name(lb_mem_kv_dtype t) {
    switch (t) {
    case LB_MEM_KV_F32: return "f32";
    case LB_MEM_KV_F16: return "f16";
    case LB_MEM_KV_Q8_0: return "q8_0";
    case LB_MEM_KV_Q4_0: return "q4_0";
    default: return "unknown";
    }
}

static uint64_t sat(u128 v) { return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v; }

uint64_t lb_mem_plan_total(const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv, uint64_t *kv_out,
                           uint64_t *scratch_out) {
    u128 kvb = (u128)in->kv_bytes_per_token[kv] * n_ctx;
    u128 scr = (u128)in->scratch_bytes + (u128)in->scratch_bytes_per_token * n_ctx;
    if (kv_out) *kv_out = sat(kvb);
    if (scratch_out) *scratch_out = sat(scr);
    return sat((u128)in->weight_bytes + kvb + scr + in->overhead_bytes);
}

/* n in the unit chosen for the whole line, so that the parts visibly add up to the total. */
static const char *in_unit(uint64_t n, int shift, char *buf, size_t cap) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (shift == 0) snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else snprintf(buf, cap, "%.2f %s", (double)n / (double)(1ull << shift), unit[shift / 10]);
    return buf;
}

static int unit_for(uint64_t n) {
    int shift = 0;
    while (shift < 60 && n >= (1ull << (shift + 10))) shift += 10;
    return shift;
}

/* "weights 3.56 GiB + KV cache (4096 tokens, f16) 2.00 GiB + scratch 0.10 GiB = 5.66 GiB
 * > budget 4.00 GiB" (the comparison op, then the budget) */
static int breakdown(char *buf, size_t cap, const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv,
                     const char *op) {
    char w[32], k[32], s[32], o[32], t[32], b[32], ov[48] = "";
    uint64_t kvb, scr, total = lb_mem_plan_total(in, n_ctx, kv, &kvb, &scr);
    int u = unit_for(total > in->budget ? total : in->budget);
    if (in->overhead_bytes) snprintf(ov, sizeof ov, " + runtime %s", in_unit(in->overhead_bytes, u, o, sizeof o));
    return snprintf(buf, cap, "weights %s + KV cache (%u tokens, %s) %s + scratch %s%s = %s %s budget %s",
                    in_unit(in->weight_bytes, u, w, sizeof w), n_ctx, lb_mem_kv_dtype_name(kv),
                    in_unit(kvb, u, k, sizeof k), in_unit(scr, u, s, sizeof s), ov, in_unit(total, u, t, sizeof t), op,
                    /* its own unit: a budget far below the total must not read "0.00 MiB" */
                    in_unit(in->budget, unit_for(in->budget), b, sizeof b));
}

/* Appends printf text to buf at its current end. */
static void append(char *buf, size_t cap, const char *fmt, ...) LB_PRINTF(3, 4);
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* The largest context <= limit that fits with KV type kv (0 when not even one token does). */
static uint32_t max_ctx(const lb_mem_plan_in *in, lb_mem_kv_dtype kv, uint32_t limit) {
    u128 fixed = (u128)in->weight_bytes + in->scratch_bytes + in->overhead_bytes;
    if (fixed >= in->budget) return 0;
    u128 per = (u128)in->kv_bytes_per_token[kv] + in->scratch_bytes_per_token;
    u128 n = per ? (in->budget - fixed) / per : limit;
    uint32_t align = in->n_ctx_align ? in->n_ctx_align : 1;
    uint32_t r = n > limit ? limit : (uint32_t)n;
    return r - r % align;
}

static void fill(lb_mem_plan *out, const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv) {
    out->n_ctx = n_ctx;
    out->kv_dtype = kv;
    out->weight_bytes = in->weight_bytes;
    out->overhead_bytes = in->overhead_bytes;
    out->budget = in->budget;
    out->total_bytes = lb_mem_plan_total(in, n_ctx, kv, &out->kv_bytes, &out->scratch_bytes);
}

/* Bytes beside the streamed window at n_ctx with KV type kv: fixed weights, KV, scratch, runtime. */
static uint64_t stream_base(const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv) {
    lb_mem_plan_in rest = *in;
    rest.weight_bytes = in->stream_fixed_bytes;
    return lb_mem_plan_total(&rest, n_ctx, kv, NULL, NULL);
}

/* Resident bytes of a window of w units: the head is one of them at worst. */
static uint64_t window_bytes(const lb_mem_plan_in *in, uint32_t w) {
    uint64_t big = in->stream_head_bytes > in->stream_unit_bytes ? in->stream_head_bytes : in->stream_unit_bytes;
    return w ? (uint64_t)(w - 1) * in->stream_unit_bytes + big : 0;
}

/* Units that fit beside the base (capped at all of them); 0 when not even one does. */
static uint32_t stream_fit(const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv) {
    uint64_t base = stream_base(in, n_ctx, kv), one = window_bytes(in, 1);
    if (base >= in->budget || !in->stream_unit_bytes || in->budget - base < one) return 0;
    uint64_t w = 1 + (in->budget - base - one) / in->stream_unit_bytes;
    return w > in->stream_units ? in->stream_units : (uint32_t)w;
}

/* Streaming when the weights do not fit: the first KV candidate with a window of two units
 * (reading one while computing another), else the first with one. 1: out filled. */
static int plan_stream(const lb_mem_plan_in *in, const lb_mem_kv_dtype *cand, int nc, uint32_t req, lb_mem_plan *out) {
    int pick = -1;
    for (int i = 0; i < nc && pick < 0; i++)
        if (stream_fit(in, req, cand[i]) >= 2) pick = i;
    for (int i = 0; i < nc && pick < 0; i++)
        if (stream_fit(in, req, cand[i]) >= 1) pick = i;
    if (pick < 0) return 0;
    uint32_t w = stream_fit(in, req, cand[pick]);
    lb_mem_plan_in win = *in;
    win.weight_bytes = in->stream_fixed_bytes + window_bytes(in, w);
    fill(out, &win, req, cand[pick]);
    out->kv_fallback = pick > 0;
    out->streaming = 1;
    out->stream_window = w;
    out->stream_window_bytes = window_bytes(in, w);
    char a[32], b[32], c[32], d[32];
    int n = snprintf(out->summary, sizeof out->summary,
                     "plan: streaming: window %u layers, %s (of %s weights: %u layers of up to %s, head %s); %u tokens, %s KV: ", w,
                     lb_size_format(out->stream_window_bytes, a, sizeof a), lb_size_format(in->weight_bytes, b, sizeof b),
                     in->stream_units - 1, lb_size_format(in->stream_unit_bytes, c, sizeof c),
                     lb_size_format(in->stream_head_bytes, d, sizeof d), req, lb_mem_kv_dtype_name(cand[pick]));
    breakdown(out->summary + n, sizeof out->summary - (size_t)n, &win, req, cand[pick], "<=");
    return 1;
}

/* Why streaming did not help, appended to a refusal. */
static void stream_refusal(char *buf, size_t cap, const lb_mem_plan_in *in, uint32_t req, lb_mem_kv_dtype kv) {
    char a[32], b[32];
    if (!in->stream_units || !in->stream_allowed) return;
    if (in->stream_refusal[0]) {
        append(buf, cap, "; cannot stream: %s", in->stream_refusal);
        return;
    }
    append(buf, cap, "; streaming needs one unit %s (a layer or the head) + the rest (KV, scratch, runtime, fixed weights) %s, over the budget",
           lb_size_format(window_bytes(in, 1), a, sizeof a), lb_size_format(stream_base(in, req, kv), b, sizeof b));
}

lb_status lb_mem_plan_make(const lb_mem_plan_in *in, lb_mem_plan *out, lb_error *err) {
    if (!in || !out) return lb_fail(err, LB_ERR_ARG, "lb_mem_plan_make: NULL argument");
    memset(out, 0, sizeof *out);
    char b2[32];
    if (!in->budget) return lb_fail(err, LB_ERR_ARG, "memory budget is zero");
    uint32_t req = in->n_ctx_requested ? in->n_ctx_requested : in->n_ctx_train;
    if (!req) return lb_fail(err, LB_ERR_ARG, "no context length: none requested and the model's trained context is unknown");
    if (in->n_ctx_train && in->n_ctx_requested > in->n_ctx_train)
        return lb_fail(err, LB_ERR_RANGE, "context %u exceeds the model's trained context %u", in->n_ctx_requested,
                       in->n_ctx_train);

    /* candidate KV types, most preferred first */
    lb_mem_kv_dtype cand[LB_MEM_KV_COUNT];
    int nc = 0;
    if (in->kv_forced >= 0) {
        if (in->kv_forced >= LB_MEM_KV_COUNT || !in->kv_bytes_per_token[in->kv_forced])
            return lb_fail(err, LB_ERR_ARG, "KV cache type %d is not available for this model", in->kv_forced);
        cand[nc++] = (lb_mem_kv_dtype)in->kv_forced;
    } else {
        static const lb_mem_kv_dtype order[] = {LB_MEM_KV_F16, LB_MEM_KV_Q8_0, LB_MEM_KV_F32};
        for (int i = 0; i < 3; i++)
            if (in->kv_bytes_per_token[order[i]] && (order[i] != LB_MEM_KV_F32 || nc == 0)) cand[nc++] = order[i];
        if (!nc) return lb_fail(err, LB_ERR_ARG, "no KV cache type has a per-token size");
    }

    int found = 0;
    for (int i = 0; i < nc && !found; i++) {
        if (lb_mem_plan_total(in, req, cand[i], NULL, NULL) > in->budget) continue;
        fill(out, in, req, cand[i]);
        out->kv_fallback = i > 0;
        found = 1;
    }
    /* shrink with the smallest per-token type: it buys the longest context */
    lb_mem_kv_dtype small = cand[nc - 1];
    uint32_t min_ctx = in->n_ctx_min ? in->n_ctx_min : 16;
    if (min_ctx > req) min_ctx = req;
    uint32_t fit = max_ctx(in, small, req);
    if (!found && !in->ctx_strict && fit >= min_ctx && fit > 0) {
        found = 1;
        fill(out, in, fit, small);
        out->shrunk = 1;
        out->kv_fallback = small != cand[0];
    }
    /* weights that leave no room for the smallest useful context stream from the file; a
     * context that does not fit beside resident weights is the user's trade, not ours */
    if (!found && fit < min_ctx && in->stream_allowed && in->stream_units && !in->stream_refusal[0] && plan_stream(in, cand, nc, req, out)) return LB_OK;

    if (found) {
        out->lock_weights = in->memlock_limit && in->memlock_limit >= in->weight_bytes;
        /* the repacked copy takes the bytes its mapped pages give back, but each matrix is
         * held twice while it is copied */
        out->repack = in->repack_bytes && out->total_bytes + in->repack_peak_bytes <= in->budget;
        int n = snprintf(out->summary, sizeof out->summary, "plan: %u tokens, %s KV: ", out->n_ctx,
                         lb_mem_kv_dtype_name(out->kv_dtype));
        breakdown(out->summary + n, sizeof out->summary - (size_t)n, in, out->n_ctx, out->kv_dtype, "<=");
        if (out->shrunk) append(out->summary, sizeof out->summary, "; context shrunk from %u", req);
        if (out->kv_fallback)
            append(out->summary, sizeof out->summary, "; %s KV would need %s", lb_mem_kv_dtype_name(cand[0]),
                   lb_size_format(lb_mem_plan_total(in, req, cand[0], NULL, NULL), b2, sizeof b2));
        return LB_OK;
    }

    /* refuse, naming what needs how much */
    breakdown(out->summary, sizeof out->summary, in, req, cand[0], ">");
    for (int i = 1; i < nc; i++)
        append(out->summary, sizeof out->summary, "; with %s KV %s", lb_mem_kv_dtype_name(cand[i]),
               lb_size_format(lb_mem_plan_total(in, req, cand[i], NULL, NULL), b2, sizeof b2));
    if (in->ctx_strict && fit > 0)
        append(out->summary, sizeof out->summary, "; at most %u tokens fit (%s KV): ask for a smaller context or a larger budget",
               fit, lb_mem_kv_dtype_name(small));
    else if (fit == 0)
        append(out->summary, sizeof out->summary, "; weights, scratch and runtime alone leave no room for a KV cache");
    else
        append(out->summary, sizeof out->summary, "; only %u tokens fit, fewer than the minimum %u", fit, min_ctx);
    if (fit < min_ctx) stream_refusal(out->summary, sizeof out->summary, in, req, small);
    out->budget = in->budget;
    return lb_fail(err, LB_ERR_BUDGET, "%s", out->summary);
}
