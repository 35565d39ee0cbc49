/* Speculative decoding (lb_generate with a draft session or prompt lookup) against independent
 * truths: greedy output equals the reference ids of every stories260K and tinystories-512d
 * prompt (../shared/reference) and plain decoding token for token, whatever the draft; sampled
 * output has plain sampling's distribution (two-sample chi-square over fixed seeds, with a
 * check that the same bound does tell the draft's own distribution apart); bad options fail.
 * The lookup drafter and the choice of k against known answers; a long greedy story, which
 * tinystories-512d fills with its own repeated sentences, keeps lookup drafts and plain's ids. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref_json.h"
#include "lowbit.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define TINY SHARED("models/tinystories-512d")
#define DOGS SHARED("models/stories260K-ft-dogs")
#define N_SEEDS 1500
#define N_POS 3 /* sampled positions compared: the 2nd to 4th token (the 1st is not drafted) */

typedef struct model {
    lb_model *m;
    lb_session *s;
} model;

static int open_model(const char *path, model *o) {
    lb_error err = {0};
    lb_session_params sp = lb_session_default_params();
    sp.kv_type = LB_KV_F32;
    sp.n_threads = 1;
    sp.n_ctx = 512;
    memset(o, 0, sizeof *o);
    if (lb_model_load(path, NULL, &o->m, &err) || lb_session_new(o->m, &sp, &o->s, &err)) {
        CHECK(0, "%s: %s", path, err.msg);
        return 0;
    }
    return 1;
}

static void close_model(model *o) {
    lb_session_free(o->s);
    lb_model_free(o->m);
}

/* One speculative configuration: a draft session or lookup, and its limits. */
typedef struct mode {
    const char *name;
    lb_session *draft;
    int lookup, draft_max;
    float min_p;
} mode;

static lb_generate_params params_for(const mode *md, int max_tokens) {
    lb_generate_params p = lb_generate_default_params();
    p.max_tokens = max_tokens;
    p.draft = md->draft;
    p.lookup = md->lookup;
    p.draft_max = md->draft_max;
    p.draft_min_p = md->min_p;
    return p;
}

/* Every reference prompt of ref_path: greedy ids equal the reference and plain decoding's. */
static void greedy_case(model *t, const char *ref_path, const mode *md, size_t *drafted, size_t *accepted) {
    cJSON *ref = load_json(ref_path);
    CHECK(ref && cJSON_GetArraySize(ref) >= 3, "%s", ref_path);
    for (int k = 0; ref && k < cJSON_GetArraySize(ref); k++) {
        cJSON *c = cJSON_GetArrayItem(ref, k), *g = cJSON_GetObjectItem(c, "greedy_ids");
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        lb_generate_params p = params_for(md, cJSON_GetArraySize(g));
        lb_generate_result r;
        lb_error err = {0};
        if (lb_generate(t->s, prompt, &p, &r, &err)) {
            CHECK(0, "%s prompt %d: %s", md->name, k, err.msg);
            continue;
        }
        CHECK(ids_equal(g, r.ids, r.n_ids) && r.stop == LB_STOP_LENGTH, "%s, %s prompt %d: greedy ids differ (%zu ids)",
              md->name, ref_path, k, r.n_ids);
        CHECK(r.n_accepted <= r.n_drafted, "%s: %zu accepted of %zu", md->name, r.n_accepted, r.n_drafted);
        *drafted += r.n_drafted;
        *accepted += r.n_accepted;
        lb_generate_result_free(&r);
    }
    cJSON_Delete(ref);
}

/* Ids of a plain and a speculative run that must be equal: short limits (the last verification
 * clipped), and a conversation continued with keep (the draft follows the session). */
static void greedy_edges(model *t, const mode *md) {
    const char *turns[] = {"Once upon a time", " Lily saw a cat.", " The cat"};
    for (int n = 1; n <= 6; n++) {
        lb_generate_params a = params_for(&(mode){"plain", NULL, 0, 0, 0}, n), b = params_for(md, n);
        lb_generate_result ra, rb;
        lb_error err = {0};
        CHECK(lb_generate(t->s, turns[0], &a, &ra, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_generate(t->s, turns[0], &b, &rb, &err) == LB_OK, "%s", err.msg);
        CHECK(ra.n_ids == rb.n_ids && !memcmp(ra.ids, rb.ids, ra.n_ids * sizeof *ra.ids), "%s: %d tokens differ", md->name, n);
        lb_generate_result_free(&ra), lb_generate_result_free(&rb);
    }
    int32_t plain[3][40];
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 3; k++) {
            lb_generate_params p = params_for(pass ? md : &(mode){"plain", NULL, 0, 0, 0}, 40);
            p.keep = k > 0;
            lb_generate_result r;
            lb_error err = {0};
            CHECK(lb_generate(t->s, turns[k], &p, &r, &err) == LB_OK && r.n_ids == 40, "%s", err.msg);
            if (!pass) memcpy(plain[k], r.ids, sizeof plain[k]);
            else CHECK(r.n_ids == 40 && !memcmp(plain[k], r.ids, sizeof plain[k]), "%s: turn %d of a kept session differs", md->name, k);
            lb_generate_result_free(&r);
        }
}

static void test_greedy(void) {
    model s, t, d;
    if (!open_model(STORIES, &s) || !open_model(TINY, &t) || !open_model(DOGS, &d)) return;
    struct {
        model *target;
        const char *ref;
        mode md;
    } cases[] = {
        {&s, SHARED("reference/stories260K/greedy.json"), {"plain", NULL, 0, 0, 0}},
        {&s, SHARED("reference/stories260K/greedy.json"), {"lookup 3", NULL, 3, 0, 0}},
        {&s, SHARED("reference/stories260K/greedy.json"), {"lookup 1, k 2", NULL, 1, 2, 0}},
        {&s, SHARED("reference/stories260K/greedy.json"), {"draft tinystories-512d", t.s, 0, 0, 0}},
        {&s, SHARED("reference/stories260K/greedy.json"), {"draft ft-dogs", d.s, 0, 5, 0}},
        {&t, SHARED("reference/tinystories-512d/greedy.json"), {"plain", NULL, 0, 0, 0}},
        {&t, SHARED("reference/tinystories-512d/greedy.json"), {"lookup 2", NULL, 2, 0, 0}},
        {&t, SHARED("reference/tinystories-512d/greedy.json"), {"draft stories260K", s.s, 0, 0, 0}},
        {&t, SHARED("reference/tinystories-512d/greedy.json"), {"draft ft-dogs, k 8", d.s, 0, 8, 0}},
        {&t, SHARED("reference/tinystories-512d/greedy.json"), {"draft ft-dogs, min-p 0.6", d.s, 0, 0, 0.6f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t drafted = 0, accepted = 0;
        greedy_case(cases[i].target, cases[i].ref, &cases[i].md, &drafted, &accepted);
        if (cases[i].md.draft || cases[i].md.lookup) /* the test must verify drafts, not skip them */
            CHECK(accepted > 0 && accepted < drafted + (cases[i].md.draft == s.s), "%s: %zu of %zu drafts accepted",
                  cases[i].md.name, accepted, drafted);
        printf("  %-28s on %-16s %4zu drafted, %4zu accepted\n", cases[i].md.name,
               cases[i].target == &s ? "stories260K" : "tinystories-512d", drafted, accepted);
    }
    greedy_edges(&t, &(mode){"draft ft-dogs", d.s, 0, 4, 0});
    greedy_edges(&s, &(mode){"lookup 2", NULL, 2, 3, 0});
    close_model(&s), close_model(&t), close_model(&d);
}

/* counts[pos][id] of the tokens at positions 1 .. N_POS over N_SEEDS seeds. */
static void sample_counts(model *t, const char *prompt, const mode *md, int *counts) {
    lb_sampler_params sp = lb_sampler_default_params();
    sp.temperature = 1.0f;
    for (int seed = 0; seed < N_SEEDS; seed++) {
        lb_generate_params p = params_for(md, N_POS + 1);
        p.sampling = sp;
        p.sampling.seed = (uint64_t)seed * 7919 + 1;
        lb_generate_result r;
        lb_error err = {0};
        if (lb_generate(t->s, prompt, &p, &r, &err)) {
            CHECK(0, "%s seed %d: %s", md->name, seed, err.msg);
            return;
        }
        for (int i = 1; i <= N_POS && i < (int)r.n_ids; i++) counts[(i - 1) * 512 + r.ids[i]]++;
        lb_generate_result_free(&r);
    }
}

/* Two-sample chi-square of equal sample sizes (bins with fewer than 10 in both pooled) against
 * its 1e-4 quantile (Wilson-Hilferty): 1 when the samples look alike. */
static int alike(const int *a, const int *b, double *x2_out, double *crit_out) {
    double x2 = 0, pa = 0, pb = 0;
    int bins = 0;
    for (int i = 0; i < 512; i++) {
        if (a[i] + b[i] < 10) {
            pa += a[i], pb += b[i];
            continue;
        }
        x2 += (double)(a[i] - b[i]) * (a[i] - b[i]) / (a[i] + b[i]);
        bins++;
    }
    if (pa + pb > 0) x2 += (pa - pb) * (pa - pb) / (pa + pb), bins++;
    double df = bins > 1 ? bins - 1 : 1, z = 3.719, h = 2.0 / (9 * df);
    double crit = df * pow(1 - h + z * sqrt(h), 3);
    *x2_out = x2, *crit_out = crit;
    return x2 < crit;
}

static void compare(const char *what, const int *a, const int *b, int want_alike) {
    for (int pos = 0; pos < N_POS; pos++) {
        double x2, crit;
        int same = alike(a + pos * 512, b + pos * 512, &x2, &crit);
        CHECK(same == want_alike, "%s, token %d: chi-square %.1f, bound %.1f", what, pos + 2, x2, crit);
        printf("  %-40s token %d: chi-square %6.1f (bound %.1f)\n", what, pos + 2, x2, crit);
    }
}

static void test_distribution(void) {
    model s, d;
    if (!open_model(STORIES, &s) || !open_model(DOGS, &d)) return;
    const char *story = "Once upon a time";
    const char *copy = "Tom had a red ball. Tom had a red ball. Tom had a red";
    int *c = calloc(5 * N_POS * 512, sizeof *c);
    int *plain = c, *spec = c + N_POS * 512, *dogs = c + 2 * N_POS * 512, *plain2 = c + 3 * N_POS * 512,
        *look = c + 4 * N_POS * 512;
    mode none = {"plain", NULL, 0, 0, 0};
    sample_counts(&s, story, &none, plain);
    sample_counts(&s, story, &(mode){"draft ft-dogs", d.s, 0, 4, 0}, spec);
    sample_counts(&d, story, &none, dogs);
    sample_counts(&s, copy, &none, plain2);
    sample_counts(&s, copy, &(mode){"lookup 3", NULL, 3, 4, 0}, look);
    compare("draft ft-dogs vs plain", spec, plain, 1);
    compare("lookup 3 vs plain (copying prompt)", look, plain2, 1);
    compare("ft-dogs itself vs stories260K (power)", dogs, plain, 0);
    free(c);
    close_model(&s), close_model(&d);
}

static void test_bad(void) {
    model s, g;
    if (!open_model(STORIES, &s) || !open_model(SHARED("models/synth-llama3-gqa"), &g)) return;
    struct {
        mode md;
        const char *msg;
    } bad[] = {
        {{"k 64", NULL, 2, 64, 0}, "draft_max is 64"},
        {{"lookup -1", NULL, -1, 0, 0}, "lookup is -1"},
        {{"min-p 2", NULL, 1, 0, 2.0f}, "draft_min_p is 2"},
        {{"self", s.s, 0, 0, 0}, "the target session itself"},
        {{"both", g.s, 2, 0, 0}, "not both"},
        {{"vocab", g.s, 0, 0, 0}, "vocabulary has 32000 tokens, the target's 512"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lb_generate_params p = params_for(&bad[i].md, 8);
        lb_generate_result r;
        lb_error err = {0};
        CHECK(lb_generate(s.s, "Once", &p, &r, &err) == LB_ERR_ARG && strstr(err.msg, bad[i].msg) && !r.ids,
              "%s: %s", bad[i].md.name, err.msg);
    }
    close_model(&s), close_model(&g);
}

/* lb_lookup_draft on contexts whose answer is worked out by hand. */
static void test_lookup_draft(void) {
    static const int32_t a[] = {5, 1, 2, 3, 9, 1, 2, 3};              /* "1 2 3" matched, 3 long */
    static const int32_t b[] = {7, 8, 3, 4, 1, 8, 3, 5, 9, 7, 8, 3};  /* "7 8 3" beats the later "8 3" */
    static const int32_t c[] = {1, 2, 1, 2, 1, 2};                    /* a loop: the draft goes on */
    static const int32_t d[] = {4, 9, 5, 9, 6, 9};                    /* a tie of 1: the latest */
    static const int32_t e[] = {1, 2, 3};                             /* no match */
    struct {
        const int32_t *ctx;
        size_t n;
        int min_match, k, want_n;
        int32_t want[4];
    } cases[] = {
        {a, 8, 1, 16, 3, {9, 1, 2}}, {a, 8, 3, 2, 2, {9, 1}}, {a, 8, 4, 16, 0, {0}},
        {b, 12, 1, 16, 3, {4, 1, 8}}, {c, 6, 2, 16, 4, {1, 2, 1, 2}}, {d, 6, 1, 16, 1, {6}},
        {e, 3, 1, 16, 0, {0}}, {a, 1, 1, 16, 0, {0}}, {NULL, 0, 1, 16, 0, {0}}, {a, 8, 1, 0, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t out[16] = {0};
        int got = lb_lookup_draft(cases[i].ctx, cases[i].n, cases[i].min_match, cases[i].k, out);
        CHECK(got == cases[i].want_n && !memcmp(out, cases[i].want, (size_t)got * sizeof *out),
              "lookup case %zu: %d drafts (%d %d %d %d), want %d", i, got, out[0], out[1], out[2], out[3], cases[i].want_n);
    }
}

/* lb_spec_best_k against the expected tokens per unit of time written out for every k. */
static void test_best_k(void) {
    static const double accept[] = {0, 0.2, 0.5, 0.8, 0.95, 1}, cost[] = {0.02, 0.1, 0.3, 1};
    for (size_t i = 0; i < sizeof accept / sizeof *accept; i++)
        for (size_t j = 0; j < sizeof cost / sizeof *cost; j++) {
            int want = 0;
            double best = 1.02;
            for (int k = 1; k <= 16; k++) {
                double tokens = 0;
                for (int t = 0; t <= k; t++) tokens += pow(accept[i], t);
                if (tokens / (1 + cost[j] * k) > best) best = tokens / (1 + cost[j] * k), want = k;
            }
            int got = lb_spec_best_k(accept[i], cost[j], 16);
            CHECK(got == want, "best k at acceptance %g, cost %g: %d, want %d", accept[i], cost[j], got, want);
        }
    CHECK(lb_spec_best_k(0.5, 0.1, 16) == 2 && lb_spec_best_k(0, 0.01, 16) == 0 && lb_spec_best_k(1, 0.1, 16) == 16 &&
          lb_spec_best_k(1, 0.1, 0) == 0, "best k: worked examples");
}

/* 300 greedy tokens of a story: the model repeats its own sentences, so lookup drafts are kept,
 * and the ids are plain decoding's. How many are drafted depends on the timed cost of drafting
 * (a loaded machine drafts fewer), so only that some are kept is asked. */
static void test_long_story(void) {
    model t;
    if (!open_model(TINY, &t)) return;
    lb_generate_params p = params_for(&(mode){"plain", NULL, 0, 0, 0}, 300), q = params_for(&(mode){"lookup 1", NULL, 1, 0, 0}, 300);
    lb_generate_result a, b;
    lb_error err = {0};
    if (lb_generate(t.s, "Once upon a time", &p, &a, &err) || lb_generate(t.s, "Once upon a time", &q, &b, &err)) {
        CHECK(0, "long story: %s", err.msg);
    } else {
        CHECK(a.n_ids == b.n_ids && !memcmp(a.ids, b.ids, a.n_ids * sizeof *a.ids), "long story: lookup ids = plain ids");
        CHECK(b.n_accepted > 0 && b.n_drafted >= b.n_accepted, "long story: %zu of %zu drafts kept", b.n_accepted, b.n_drafted);
        lb_generate_result_free(&a), lb_generate_result_free(&b);
    }
    close_model(&t);
}

int main(void) {
    test_lookup_draft();
    test_best_k();
    test_long_story();
    test_greedy();
    test_distribution();
    test_bad();
    return test_summary();
}
