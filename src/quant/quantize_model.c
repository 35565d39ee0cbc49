/* lowbit quantize: any loaded model -> GGUF with quantized matrices.
 *
 * Metadata, tokenizer and the Q/K row order come from the converter (io/convert.h), so a
 * quantized file follows the same GGUF conventions as a converted one. Tensors stream through
 * the GGUF writer in chunks of rows: each chunk is read (dequantized, permuted), quantized by
 * all threads (rows split between them) and written, so memory stays bounded by the chunk size
 * whatever the model size. */
#include "quant/quantize_model.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/threads.h"
#include "io/convert.h"
#include "io/gguf_meta.h"
#include "io/gguf.h"
#include "io/imatrix.h"
#include "quant/gptq.h"
#include "quant/quant.h"

enum { MIX_NONE = 0, MIX_Q3_K_M, MIX_Q3_K_L, MIX_Q4_K_S, MIX_Q4_K_M, MIX_Q5_K_M };

static const lb_qrecipe g_recipes[] = {
    {"q8_0", LB_Q8_0, 7, MIX_NONE},   {"q4_0", LB_Q4_0, 2, MIX_NONE},     {"q4_1", LB_Q4_1, 3, MIX_NONE},
    {"q5_0", LB_Q5_0, 8, MIX_NONE},   {"q5_1", LB_Q5_1, 9, MIX_NONE},     {"q2_k", LB_Q2_K, 10, MIX_NONE},
    {"q3_k", LB_Q3_K, 11, MIX_NONE},  {"q4_k", LB_Q4_K, 14, MIX_NONE},    {"q5_k", LB_Q5_K, 16, MIX_NONE},
    {"q6_k", LB_Q6_K, 18, MIX_NONE},  {"tq1_0", LB_TQ1_0, 36, MIX_NONE},  {"tq2_0", LB_TQ2_0, 37, MIX_NONE},
    {"f16", LB_F16, 1, MIX_NONE},     {"bf16", LB_BF16, 32, MIX_NONE},    {"f32", LB_F32, 0, MIX_NONE},
    {"q3_k_s", LB_Q3_K, 11, MIX_NONE}, {"q3_k_m", LB_Q3_K, 12, MIX_Q3_K_M}, {"q3_k_l", LB_Q3_K, 13, MIX_Q3_K_L},
    {"q4_k_s", LB_Q4_K, 14, MIX_Q4_K_S}, {"q4_k_m", LB_Q4_K, 15, MIX_Q4_K_M}, {"q5_k_s", LB_Q5_K, 16, MIX_NONE},
    {"q5_k_m", LB_Q5_K, 17, MIX_Q5_K_M}, {"iq4_nl", LB_IQ4_NL, 25, MIX_NONE}, {"iq4_xs", LB_IQ4_XS, 30, MIX_NONE},
};
#define N_RECIPES (sizeof g_recipes / sizeof *g_recipes)

const char *const *lb_quantize_type_names(void) {
    static const char *names[N_RECIPES + 1];
    if (!names[0]) /* idempotent: every caller writes the same pointers */
        for (size_t i = 0; i < N_RECIPES; i++) names[i] = g_recipes[i].name;
    return names;
}

const lb_qrecipe *lb_qrecipe_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_RECIPES; i++) {
        const char *a = g_recipes[i].name, *b = name;
        while (*a && tolower((unsigned char)*b) == *a) a++, b++; /* names are lower case; accept Q4_K_M too */
        if (!*a && !*b) return &g_recipes[i];
    }
    return NULL;
}

lb_quantize_params lb_quantize_default_params(void) {
    lb_quantize_params p;
    memset(&p, 0, sizeof p);
    p.type = "q8_0";
    return p;
}

static int is_ternary(lb_dtype t) { return t == LB_TQ1_0 || t == LB_TQ2_0; }
static int is_float(lb_dtype t) { return t == LB_F32 || t == LB_F16 || t == LB_BF16; }

lb_dtype lb_quant_fallback(lb_dtype t, int64_t n) {
    const lb_dtype_traits *tr = lb_dtype_get(t);
    if (!tr || n % tr->block_size == 0) return t;
    lb_dtype f;
    switch (t) { /* a 32-block type with at least the bits of the K-quant it replaces */
    case LB_Q2_K: case LB_Q3_K: f = LB_Q4_0; break;
    case LB_Q4_K: f = LB_Q5_0; break;
    case LB_Q5_K: f = LB_Q5_1; break;
    case LB_Q6_K: f = LB_Q8_0; break;
    case LB_IQ4_XS: f = LB_IQ4_NL; break; /* the same levels in blocks of 32 */
    default: return LB_F16;
    }
    return n % 32 == 0 ? f : LB_F16;
}

/* llama.cpp's choice of layers that get more bits in its _M recipes: the first and last eighth
 * and every third layer between. */
static int more_bits(int l, int n) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; }

/* blk.N.<what>.weight -> N and what; -1 for tensors outside the blocks. */
static int layer_of(const char *name, const char **what) {
    int l = -1, k = 0;
    *what = name;
    if (sscanf(name, "blk.%d.%n", &l, &k) == 1 && k > 0) *what = name + k;
    else l = -1;
    return l;
}

static lb_dtype mixed(int mix, lb_dtype base, const char *what, int l, int n_layers) {
    int v = !strcmp(what, "attn_v.weight"), down = !strcmp(what, "ffn_down.weight"), o = !strcmp(what, "attn_output.weight");
    switch (mix) {
    case MIX_Q3_K_M:
        if (v) return l < 2 ? LB_Q5_K : LB_Q4_K;
        if (down) return l < n_layers / 16 ? LB_Q5_K : LB_Q4_K;
        if (o) return LB_Q4_K;
        break;
    case MIX_Q3_K_L:
        if (v || down || o) return LB_Q5_K;
        break;
    case MIX_Q4_K_S:
        if (v && l < 4) return LB_Q5_K;
        if (down && l < n_layers / 8) return LB_Q5_K;
        break;
    case MIX_Q4_K_M: case MIX_Q5_K_M:
        if ((v || down) && more_bits(l, n_layers)) return LB_Q6_K;
        break;
    }
    return base;
}

static void note(lb_qplan *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(lb_qplan *q, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->note, sizeof q->note, fmt, ap);
    va_end(ap);
}

static void plan_one(const lb_model *m, const lb_qrecipe *r, const lb_quantize_params *p, const lb_tensor *t, lb_qplan *q) {
    memset(q, 0, sizeof *q);
    if (t->n_dims < 2) { /* norms and biases */
        q->type = LB_F32;
        return;
    }
    const char *what;
    int l = layer_of(t->name, &what);
    int head = !strcmp(t->name, "output.weight") || (!lb_model_find_tensor(m, "output.weight") && !strcmp(t->name, "token_embd.weight"));
    int embd = !strcmp(t->name, "token_embd.weight");
    lb_dtype base = r->base, want = base;
    /* the source type when it is a float type, else F16: what "full precision" keeps */
    lb_dtype keep = is_float(t->type) ? t->type : LB_F16;
    if (p->keep_output_f16 && head) {
        q->type = LB_F16;
        note(q, "output head kept in F16 (--keep-output-f16)");
        return;
    }
    if (is_ternary(base) && !p->pure && l < 0) {
        q->type = keep; /* BitNet: embeddings and head stay full precision */
        note(q, "%s stays %s (ternary types apply to the blocks' linear layers)", embd ? "embedding" : "output head",
             lb_dtype_name(keep));
        return;
    }
    if (!p->pure && !is_float(base) && !is_ternary(base)) {
        if (head && base != LB_Q8_0 && base != LB_Q6_K) {
            want = LB_Q6_K;
            note(q, "output head at Q6_K (recipe; --pure keeps it at %s)", lb_dtype_name(base));
        } else if (l >= 0 && r->mix) {
            want = mixed(r->mix, base, what, l, m->cfg.n_layers);
            if (want != base) note(q, "%s recipe keeps it at %s", r->name, lb_dtype_name(want));
        }
    }
    q->type = want;
    q->ternarize = is_ternary(want);
    /* fp16 block scales round the absmean by up to 5e-4, which int8 activation rounding turns
     * into about 1e-2 relative error in BitNet logits: keep it exact in a scale tensor */
    q->scale_tensor = q->ternarize && m->cfg.arch == LB_ARCH_BITNET;
    lb_dtype fb = lb_quant_fallback(want, t->ne[0]);
    if (fb != want) {
        /* a ternary fallback stays lossless: the codes themselves, exact in a float type, with the
         * scale in the scale tensor (BitNet), else the values code x scale */
        note(q, "rows of %lld do not fit %s blocks of %d: %s%s", (long long)t->ne[0], lb_dtype_name(want),
             lb_dtype_get(want)->block_size, lb_dtype_name(fb),
             q->scale_tensor ? " holding the ternary codes (exact), scale beside" : q->ternarize ? " holding the ternary values" : "");
        q->type = fb;
    }
}

/* NAME.scale for NAME.weight (cap >= 128); 0 when the name does not end in .weight */
static int scale_name(const char *w, char *out, size_t cap) {
    size_t n = strlen(w);
    if (n < 7 || strcmp(w + n - 7, ".weight") || n - 7 + 7 >= cap) return 0;
    memcpy(out, w, n - 7);
    strcpy(out + n - 7, ".scale");
    return 1;
}

/* 1 for a one-element NAME.scale tensor that belongs to a NAME.weight of m */
static int is_scale_of_weight(const lb_model *m, const lb_tensor *t) {
    size_t n = strlen(t->name);
    char w[256];
    if (lb_tensor_nelements(t) != 1 || n < 6 || n + 2 >= sizeof w || strcmp(t->name + n - 6, ".scale")) return 0;
    memcpy(w, t->name, n - 6);
    strcpy(w + n - 6, ".weight");
    return lb_model_find_tensor(m, w) != NULL;
}

/* The value of NAME.scale in the source (1 when absent): folded into the weights read. */
static float source_scale(const lb_model *m, const lb_tensor *t) {
    char nm[256];
    const lb_tensor *s = scale_name(t->name, nm, sizeof nm) ? lb_model_find_tensor(m, nm) : NULL;
    float g = 1.0f;
    if (s && lb_tensor_nelements(s) == 1 && lb_dtype_get(s->type) && lb_dtype_get(s->type)->to_float)
        lb_dtype_get(s->type)->to_float(s->data, &g, 1);
    return g;
}

static lb_status unknown_type(const char *type, lb_error *err) {
    char list[512] = "";
    for (size_t i = 0; i < N_RECIPES; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " " : "", g_recipes[i].name);
    return lb_fail(err, LB_ERR_ARG, "unknown quantization type '%s' (known: %s)", type ? type : "(null)", list);
}

/* The recipe of p->type, or with p->like and no type, of the like file's general.file_type. */
static lb_status recipe_of(const lb_quantize_params *p, const lb_qrecipe **out, lb_error *err) {
    if (p->type || !p->like) return (*out = lb_qrecipe_find(p->type)) ? LB_OK : unknown_type(p->type, err);
    lb_gguf *g;
    lb_status s = lb_gguf_open(p->like, &g, err);
    if (s) return s;
    int64_t ft = -1;
    lb_error e2;
    if (lb_gguf_get_int(g, "general.file_type", &ft, &e2)) ft = -1;
    lb_gguf_close(g);
    for (size_t i = 0; i < N_RECIPES; i++)
        if (g_recipes[i].ftype == ft) return *out = &g_recipes[i], LB_OK;
    return lb_fail(err, LB_ERR_ARG, "%s: general.file_type %lld names no quantization type lowbit knows: give the type too",
                   p->like, (long long)ft);
}

/* With p->like: every tensor takes the type the like file gives the tensor of the same name. */
static lb_status plan_like(const lb_model *m, const lb_quantize_params *p, lb_qplan *plan, lb_error *err) {
    lb_gguf *g;
    lb_status s = lb_gguf_open(p->like, &g, err);
    for (size_t i = 0; i < m->n_tensors && !s; i++) {
        const lb_tensor *t = &m->tensors[i], *u = lb_gguf_find_tensor(g, t->name);
        int same = u && u->n_dims == t->n_dims;
        for (int k = 0; same && k < t->n_dims; k++) same = u->ne[k] == t->ne[k];
        if (!same) {
            s = lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s of %s is %s there (not the same model shape)", p->like, t->name,
                        m->path, u ? "of another shape" : "missing");
            break;
        }
        lb_qplan *q = &plan[i];
        if (q->type == u->type) continue;
        if (!is_float(u->type) && !lb_quant_can_write(u->type)) {
            s = lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: lowbit cannot write type %s", p->like, t->name,
                        lb_dtype_name(u->type));
            break;
        }
        q->type = u->type;
        q->ternarize = is_ternary(u->type);
        q->scale_tensor = q->ternarize && m->cfg.arch == LB_ARCH_BITNET;
        note(q, "%s as in %s", lb_dtype_name(u->type), p->like);
    }
    if (g) lb_gguf_close(g);
    return s;
}

lb_status lb_quantize_plan(const lb_model *m, const lb_quantize_params *p, lb_qplan *plan, lb_error *err) {
    const lb_qrecipe *r;
    lb_status s0 = recipe_of(p, &r, err);
    if (s0) return s0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const lb_tensor *t = &m->tensors[i];
        const lb_dtype_traits *tr = lb_dtype_get(t->type);
        if (!tr || !tr->to_float)
            return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: tensor %s: cannot read type %s", m->path, t->name, lb_dtype_name(t->type));
        plan_one(m, r, p, t, &plan[i]);
    }
    return p->like ? plan_like(m, p, plan, err) : LB_OK;
}

/* ---- streaming writer ----------------------------------------------------------------- */
enum { CHUNK_BYTES = 8 << 20 }; /* float rows per chunk: bounded memory, large enough to share */

void lb_f16_row_to_f32_avx2(const void *src, float *dst, int64_t n); /* convert_avx2.c */

typedef struct qctx {
    const lb_model *m;
    lb_to_float_fn f16_to_float; /* F16C when the CPU has it */
    lb_rope_layout from, to;
    lb_pool *pool;
    int nth;
    float *rows;    /* nth float rows of the widest tensor */
    int64_t widest;
    uint8_t *out;   /* one chunk of output rows */
    size_t out_cap;
    lb_progress_fn progress;
    void *user;
    uint64_t done, total;
    double gptq_damp;
    const lb_gptq *gptq;
    float **gptq_U;  /* per input: its factor while matrices reading it remain */
    int *gptq_users; /* per input: matrices not yet written */
} qctx;

typedef struct qtensor {
    qctx *c;
    const lb_tensor *src;
    lb_qplan plan;
    float src_scale; /* the source's NAME.scale, folded in */
    float scale;     /* the ternary absmean, once the tensor is written */
    const lb_imatrix_entry *im; /* NULL, or the tensor's importance matrix entry */
    const lb_gptq_in *gp;    /* NULL, or the second moment of its input (GPTQ) */
} qtensor;

/* A job over rows [r0, r1) of one tensor. */
typedef struct qjob {
    qctx *c;
    const lb_tensor *t;
    const lb_qplan *plan;
    int permute;
    int64_t r0, r1;
    float scale;      /* ternary absmean */
    float g;          /* source scale folded into every value */
    double *partial;  /* per-thread sums for the absmean pass */
    const float *im;  /* NULL, or each column's mean squared activation */
    const float *U;   /* NULL, or the GPTQ factor of the input (quant/gptq.h) */
    int64_t bad[256]; /* per thread: 1 + the flat index of the first value refused (0: none) */
    float bad_val[256];
} qjob;

/* The largest magnitude a written type holds: beyond it F16 and the F16 block scales of the
 * quantized types overflow to inf (or NaN, or 0 in q6_k), so such values are refused, not written. */
static float type_limit(lb_dtype ty) { return ty == LB_F32 || ty == LB_BF16 ? 3.4028235e38f : 65504.0f; }

/* Records the first value of row r that is not finite or exceeds the type's range. */
static void check_row(qjob *j, int ith, int64_t r, const float *x, int64_t n, float limit) {
    if (j->bad[ith]) return;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= limit)) { /* also true for NaN */
            j->bad[ith] = 1 + r * n + i;
            j->bad_val[ith] = x[i];
            return;
        }
}

static int64_t src_row(const qjob *j, int64_t r) {
    return j->permute ? lb_rope_permute_row(r, j->c->m->cfg.head_dim, j->c->from, j->c->to) : r;
}

static void absmean_job(void *arg, int ith, int nth) {
    qjob *j = arg;
    int64_t n = j->t->ne[0], a, b;
    lb_split_range(j->r1 - j->r0, 1, ith, nth, &a, &b);
    float *x = j->c->rows + (size_t)ith * (size_t)j->c->widest;
    const lb_dtype_traits *tr = lb_dtype_get(j->t->type);
    size_t in_row = lb_dtype_row_size(j->t->type, n);
    double s = 0, mx = 0, mn = INFINITY;
    for (int64_t r = j->r0 + a; r < j->r0 + b; r++) {
        tr->to_float((const uint8_t *)j->t->data + (size_t)r * in_row, x, n);
        for (int64_t i = 0; i < n; i++) {
            double v = fabs((double)(x[i] * j->g));
            s += v;
            mx = v > mx ? v : mx;
            if (v > 0 && v < mn) mn = v;
        }
    }
    j->partial[ith] = s;
    j->partial[256 + ith] = mx;
    j->partial[512 + ith] = mn;
}

static void from_float(lb_dtype t, const float *x, void *out, int64_t n) {
    if (t == LB_F32) memcpy(out, x, (size_t)n * 4);
    else if (t == LB_F16) for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = lb_f32_to_fp16(x[i]);
    else for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = lb_f32_to_bf16(x[i]);
}

static void quant_job(void *arg, int ith, int nth) {
    qjob *j = arg;
    const lb_tensor *t = j->t;
    lb_dtype ty = j->plan->type;
    int64_t n = t->ne[0], a, b;
    lb_split_range(j->r1 - j->r0, 1, ith, nth, &a, &b);
    float *x = j->c->rows + (size_t)ith * (size_t)j->c->widest;
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    lb_to_float_fn to_float = t->type == LB_F16 ? j->c->f16_to_float : tr->to_float;
    size_t in_row = lb_dtype_row_size(t->type, n), out_row = lb_dtype_row_size(ty, n);
    int copy = ty == t->type && !j->plan->ternarize && j->g == 1.0f && !j->U;
    float scratch[3 * 256];
    float inv = j->scale > 0 ? 1.0f / j->scale : 0;
    int unit = j->plan->scale_tensor;
    for (int64_t r = j->r0 + a; r < j->r0 + b; r++) {
        const uint8_t *p = (const uint8_t *)t->data + (size_t)src_row(j, r) * in_row;
        uint8_t *y = j->c->out + (size_t)(r - j->r0) * out_row;
        if (copy) {
            memcpy(y, p, out_row);
            continue;
        }
        to_float(p, x, n);
        if (j->g != 1.0f)
            for (int64_t i = 0; i < n; i++) x[i] *= j->g;
        check_row(j, ith, src_row(j, r), x, n, type_limit(ty));
        if (unit) /* round(x * (1 / absmean)) exactly as BitNet does, stored with d = 1 */
            for (int64_t i = 0; i < n; i++) x[i] *= inv;
        if (ty == LB_TQ1_0) lb_quantize_row_tq1_0(x, y, n, unit ? 1.0f : j->scale);
        else if (ty == LB_TQ2_0) lb_quantize_row_tq2_0(x, y, n, unit ? 1.0f : j->scale);
        else if (is_float(ty)) {
            if (j->plan->ternarize) /* the fallback of a ternary type: the same values, unpacked */
                for (int64_t i = 0; i < n; i++) {
                    float q = roundf(unit ? x[i] : x[i] * inv); /* with a scale tensor, x is already x / scale */
                    q = q > 1 ? 1 : q < -1 ? -1 : q;
                    x[i] = unit ? q : q * lb_fp16_to_f32(lb_f32_to_fp16(j->scale));
                }
            from_float(ty, x, y, n);
        } else if (j->U) lb_gptq_quantize_row(ty, j->U, n, x, y, j->im, scratch);
        else lb_quantize(ty, x, y, 1, n, j->im);
    }
}

static lb_status fill_1d(qtensor *qt, lb_gguf_sink *sink, lb_error *err) {
    qctx *c = qt->c;
    const lb_tensor *t = qt->src;
    int64_t n = t->ne[0];
    float *x = malloc((size_t)n * 2 * sizeof *x);
    if (!x) return lb_fail(err, LB_ERR_NOMEM, "out of memory for tensor %s", t->name);
    lb_dtype_get(t->type)->to_float(t->data, x, n);
    const float *w = x;
    if (lb_is_rope_tensor(t->name) && c->from != c->to) { /* a Q/K bias: its elements are the rows */
        for (int64_t r = 0; r < n; r++) x[n + r] = x[lb_rope_permute_row(r, c->m->cfg.head_dim, c->from, c->to)];
        w = x + n;
    }
    lb_status s = lb_gguf_sink_write(sink, w, (size_t)n * 4, err);
    free(x);
    c->done += t->nbytes;
    if (c->progress) c->progress(c->user, t->name, c->done, c->total);
    return s;
}

/* Pages of a tensor read from the model's read-only file mappings leave this process once it
 * is written, so resident memory stays about one tensor whatever the model size. Only file
 * mappings qualify: dropping pages of a heap buffer would lose its data. */
static void release_source(const lb_model *m, const void *data, size_t nbytes) {
    uintptr_t a = (uintptr_t)data, b = a + nbytes, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < m->n_maps; i++) {
        uintptr_t ms = (uintptr_t)m->maps[i].data, me = ms + m->maps[i].size;
        if (a < ms || b > me) continue;
        uintptr_t s0 = (a + pg - 1) / pg * pg, e0 = b / pg * pg; /* whole pages inside the tensor */
        if (e0 > s0) madvise((void *)s0, e0 - s0, MADV_DONTNEED);
        return;
    }
}

/* The error for the first refused value of a chunk, naming the tensor and the index. */
static lb_status refused(const qjob *j, int nth, lb_dtype ty, lb_error *err) {
    for (int i = 0; i < nth; i++)
        if (j->bad[i]) {
            float v = j->bad_val[i];
            if (!isfinite(v))
                return lb_fail(err, LB_ERR_FORMAT, "tensor %s: element %lld is %s (not finite): the weights are corrupt",
                               j->t->name, (long long)(j->bad[i] - 1), isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf");
            return lb_fail(err, LB_ERR_RANGE, "tensor %s: element %lld is %g, beyond the %g that %s can hold",
                           j->t->name, (long long)(j->bad[i] - 1), (double)v, (double)type_limit(ty), lb_dtype_name(ty));
        }
    return LB_OK;
}

/* The GPTQ factor of qt's input into *U (k x k floats; computed once per input and kept until
 * the last matrix reading that input is written) and, when no imatrix gives them, the search
 * weights diag(H) / tokens into *im. */
static lb_status gptq_prepare(const qtensor *qt, float **U, float **im, lb_error *err) {
    const lb_gptq_in *gp = qt->gp;
    qctx *c = qt->c;
    size_t idx = (size_t)(gp - c->gptq->in);
    int64_t k = gp->k;
    if (!*im) {
        if (!(*im = malloc((size_t)k * sizeof **im))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < k; i++) (*im)[i] = (float)(gp->H[(size_t)i * (size_t)k + (size_t)i] / (double)gp->n_tok);
    }
    if (!c->gptq_U[idx]) {
        if (!(c->gptq_U[idx] = malloc((size_t)k * (size_t)k * sizeof **U)))
            return lb_fail(err, LB_ERR_NOMEM, "out of memory for the GPTQ factor of tensor %s", qt->src->name);
        lb_status s = lb_gptq_factor(gp->H, k, c->gptq_damp, c->gptq_U[idx], qt->src->name, err);
        if (s) {
            free(c->gptq_U[idx]);
            c->gptq_U[idx] = NULL;
            return s;
        }
    }
    *U = c->gptq_U[idx];
    return LB_OK;
}

/* One matrix reading input gp is written: the last one frees its factor. */
static void gptq_release(qctx *c, const lb_gptq_in *gp) {
    size_t idx = (size_t)(gp - c->gptq->in);
    if (--c->gptq_users[idx] == 0) {
        free(c->gptq_U[idx]);
        c->gptq_U[idx] = NULL;
    }
}

static lb_status fill(void *user, const lb_tensor *dst, lb_gguf_sink *sink, lb_error *err) {
    qtensor *qt = user;
    qctx *c = qt->c;
    const lb_tensor *t = qt->src;
    if (t->n_dims < 2) return fill_1d(qt, sink, err);
    int64_t n = t->ne[0], rows = lb_tensor_nrows(t);
    size_t out_row = lb_dtype_row_size(dst->type, n), in_row = lb_dtype_row_size(t->type, n);
    qjob j = {c, t, &qt->plan, lb_is_rope_tensor(t->name) && c->from != c->to, 0, rows, 0, qt->src_scale, NULL, NULL, NULL,
              {0}, {0}};
    /* stored values are mean squares x ncall; the search wants the means. Columns are inputs, so
     * the Q/K row permutation leaves them where they are. */
    float *im = NULL;
    if (qt->im && !(im = malloc((size_t)n * sizeof *im)))
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for the importance of tensor %s", t->name);
    for (int64_t i = 0; im && i < n; i++) im[i] = qt->im->values[i] / (float)qt->im->ncall;
    float *U = NULL;
    if (qt->gp) { /* GPTQ: the factor of the input's second moment; without an imatrix, diag(H) weights the search */
        lb_status gs = gptq_prepare(qt, &U, &im, err);
        if (gs) {
            free(im);
            return gs;
        }
    }
    j.im = im;
    j.U = U;
    if (qt->plan.ternarize) {
        double part[768] = {0}, sum = 0, mx = 0, mn = INFINITY;
        j.partial = part;
        lb_pool_run(c->pool, absmean_job, &j);
        for (int i = 0; i < c->nth; i++) {
            sum += part[i];
            mx = part[256 + i] > mx ? part[256 + i] : mx;
            mn = part[512 + i] < mn ? part[512 + i] : mn;
        }
        /* weights that are ternary already (a ternary type, or floats that are all -s, 0 or s, as
         * converted BitNet checkpoints hold) keep their scale s: their absmean is smaller */
        int already = is_ternary(t->type) || (mx > 0 && mn == mx);
        j.scale = already ? (float)mx : (float)(sum / (double)lb_tensor_nelements(t));
        qt->scale = j.scale;
    }
    int64_t chunk = (int64_t)(c->out_cap / out_row);
    lb_status s = LB_OK;
    for (int64_t r0 = 0; r0 < rows && !s; r0 += chunk) {
        j.r0 = r0, j.r1 = r0 + chunk < rows ? r0 + chunk : rows;
        lb_pool_run_n(c->pool, quant_job, &j, j.r1 - j.r0 >= 4 ? c->nth : 1);
        if ((s = refused(&j, c->nth, qt->plan.type, err))) break;
        s = lb_gguf_sink_write(sink, c->out, (size_t)(j.r1 - j.r0) * out_row, err);
        c->done += (uint64_t)(j.r1 - j.r0) * in_row;
        if (c->progress) c->progress(c->user, t->name, c->done, c->total);
        if (!j.permute) /* rows done (permuted Q/K rows are read out of order: whole tensor below) */
            release_source(c->m, (const uint8_t *)t->data + (size_t)j.r0 * in_row, (size_t)(j.r1 - j.r0) * in_row);
    }
    release_source(c->m, t->data, t->nbytes);
    free(im);
    if (qt->gp) gptq_release(c, qt->gp);
    return s;
}

static lb_status fill_scale(void *user, const lb_tensor *dst, lb_gguf_sink *sink, lb_error *err) {
    (void)dst;
    const qtensor *qt = user; /* its weight, written just before: scale is known */
    return lb_gguf_sink_write(sink, &qt->scale, 4, err);
}

/* The importance entry of matrix t, checked against its row length (a file of another model). */
static lb_status imatrix_of(const lb_model *m, const lb_imatrix *im, const lb_tensor *t, const lb_imatrix_entry **out,
                            lb_error *err) {
    const lb_imatrix_entry *e = lb_imatrix_get(im, t->name);
    *out = NULL;
    if (!e) return LB_OK;
    if (e->nval != t->ne[0])
        return lb_fail(err, LB_ERR_MISMATCH, "%s: the importance matrix has %d columns for tensor %s, whose rows have %lld "
                       "(computed on another model?)", m->path ? m->path : "model", (int)e->nval, t->name, (long long)t->ne[0]);
    *out = e;
    return LB_OK;
}

/* The GPTQ input of matrix t when it gets compensation: a block type, calibration seen, not the
 * tied embedding unless asked (its rows are also looked up, where the moved error is no help). */
static lb_status gptq_of(const lb_model *m, const lb_quantize_params *p, const lb_tensor *t, lb_qplan *q,
                         const lb_gptq_in **out, lb_error *err) {
    *out = NULL;
    const lb_gptq_in *gp = lb_gptq_get(p->gptq, t->name);
    if (!gp) return LB_OK;
    if (gp->k != t->ne[0])
        return lb_fail(err, LB_ERR_MISMATCH, "%s: the GPTQ statistics have %lld inputs for tensor %s, whose rows have %lld "
                       "(computed on another model?)", m->path ? m->path : "model", (long long)gp->k, t->name,
                       (long long)t->ne[0]);
    if (gp->n_tok == 0) return LB_OK;
    if (t == m->tok_embd && !p->gptq_tied) {
        if (!q->note[0]) note(q, "tied embedding: no GPTQ compensation (its rows are looked up too)");
        return LB_OK;
    }
    if (!lb_gptq_applies(q->type) || q->ternarize) {
        if (!q->note[0]) note(q, "%s has no GPTQ compensation", lb_dtype_name(q->type));
        return LB_OK;
    }
    *out = gp;
    return LB_OK;
}

static void report(const lb_quantize_params *p, const lb_tensor *t, const lb_qplan *q) {
    if (p->on_tensor) p->on_tensor(p->on_tensor_user, t->name, lb_dtype_name(q->type), q->note[0] ? q->note : NULL);
}

lb_status lb_quantize_model(const lb_model *m, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                            void *user, lb_error *err) {
    lb_quantize_params d = lb_quantize_default_params();
    if (!p) p = &d;
    const lb_qrecipe *r;
    lb_status s0 = recipe_of(p, &r, err);
    if (!s0) s0 = lb_output_check(out, (const char *const *)&m->path, 1, 0, err);
    if (s0) return s0;
    qtensor *qts = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *qts);
    lb_qplan *plan = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *plan);
    if (!qts || !plan) {
        free(qts), free(plan);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_status s = lb_quantize_plan(m, p, plan, err);
    qctx c = {.m = m, .from = m->cfg.rope_layout, .to = lb_gguf_arch_rope(lb_gguf_arch_out(m->cfg.arch)),
              .progress = progress, .user = user, .widest = 1, .gptq_damp = p->gptq_damp > 0 ? p->gptq_damp : 0.01};
    c.f16_to_float = lb_dtype_get(LB_F16)->to_float;
    if (lb_cpu_has_avx2()) c.f16_to_float = lb_f16_row_to_f32_avx2;
    lb_gguf_writer *w = NULL;
    size_t widest_out = 1;
    for (size_t i = 0; i < m->n_tensors && !s; i++) {
        const lb_tensor *t = &m->tensors[i];
        if (t->ne[0] > c.widest) c.widest = t->ne[0];
        size_t ro = lb_dtype_row_size(plan[i].type, t->ne[0]);
        if (ro > widest_out) widest_out = ro;
    }
    c.gptq = p->gptq;
    if (!s && p->gptq) {
        c.gptq_U = calloc(p->gptq->n + 1, sizeof *c.gptq_U);
        c.gptq_users = calloc(p->gptq->n + 1, sizeof *c.gptq_users);
        if (!c.gptq_U || !c.gptq_users) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    if (!s) {
        int nth = p->n_threads > 0 ? p->n_threads : 0;
        c.pool = lb_pool_new(nth > 256 ? 256 : nth);
        c.nth = lb_pool_size(c.pool);
        if (c.nth > 256) c.nth = 256;
        c.out_cap = CHUNK_BYTES > widest_out * (size_t)c.nth ? CHUNK_BYTES : widest_out * (size_t)c.nth;
        c.rows = malloc((size_t)c.nth * (size_t)c.widest * sizeof(float));
        c.out = malloc(c.out_cap);
        w = lb_gguf_writer_new();
        if (!c.pool || !c.rows || !c.out || !w) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    char name[256];
    const char *base = m->path ? strrchr(m->path, '/') : NULL;
    snprintf(name, sizeof name, "%s (%s)", base && base[1] ? base + 1 : m->path ? m->path : "model", r ? r->name : "");
    if (!s) s = lb_convert_set_meta(w, m, name, err);
    /* RoPE frequencies travel as rope_freqs.weight. Their rounding to the checkpoint dtype is an
     * artefact of transformers keeping its buffers in that dtype; its quantized models (BitNet's
     * reference) compute them in f32, so quantized files keep only the scaling (llama3). */
    float rope_factors[2048];
    if (!s && !m->rope_freqs) {
        lb_config rc = m->cfg;
        if (!is_float(r->base)) rc.rope_freq_type = LB_F32;
        s = lb_gguf_add_rope_freqs(w, &rc, rope_factors, err);
    }
    if (!s) s = lb_gguf_set_u32(w, "general.file_type", (uint32_t)r->ftype, err);
    if (!s) s = lb_gguf_set_u32(w, "general.quantization_version", 2, err);
    for (size_t i = 0; i < m->n_tensors && !s; i++) {
        const lb_tensor *t = &m->tensors[i];
        if (is_scale_of_weight(m, t)) continue; /* folded into its weight, written anew when needed */
        qts[i] = (qtensor){&c, t, plan[i], t->n_dims >= 2 ? source_scale(m, t) : 1.0f, 0, NULL, NULL};
        if (t->n_dims >= 2) s = imatrix_of(m, p->imatrix, t, &qts[i].im, err);
        if (!s && t->n_dims >= 2) s = gptq_of(m, p, t, &plan[i], &qts[i].gp, err);
        if (s) break;
        if (qts[i].gp) c.gptq_users[qts[i].gp - p->gptq->in]++;
        c.total += t->nbytes;
        report(p, t, &plan[i]);
        s = lb_gguf_add_tensor_lazy(w, t->name, plan[i].type, t->n_dims, t->ne, fill, &qts[i], err);
        char nm[256];
        int64_t one = 1;
        if (!s && plan[i].scale_tensor && scale_name(t->name, nm, sizeof nm))
            s = lb_gguf_add_tensor_lazy(w, nm, LB_F32, 1, &one, fill_scale, &qts[i], err);
    }
    if (!s) s = lb_gguf_write(w, out, err);
    lb_gguf_writer_free(w);
    lb_pool_free(c.pool);
    for (size_t i = 0; c.gptq_U && i < p->gptq->n; i++) free(c.gptq_U[i]); /* after a failed write */
    free(c.gptq_U), free(c.gptq_users);
    free(c.rows);
    free(c.out);
    free(qts);
    free(plan);
    return s;
}

lb_status lb_quantize_file(const char *in, const char *out, const lb_quantize_params *p, lb_progress_fn progress,
                           void *user, lb_error *err) {
    lb_quantize_params d = lb_quantize_default_params();
    if (!p) p = &d;
    const lb_qrecipe *r;
    lb_status s = recipe_of(p, &r, err); /* before loading a large model */
    if (s) return s;
    const char *ins[] = {in, p->tokenizer_path, p->like};
    s = lb_output_check(out, ins, p->like ? 3 : 2, 0, err);
    if (s) return s;
    lb_model *m;
    if ((s = lb_convert_load(in, p->tokenizer_path, p->no_tokenizer, &m, err))) return s;
    s = lb_quantize_model(m, out, p, progress, user, err);
    lb_model_free(m);
    return s;
}
