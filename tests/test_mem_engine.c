/* Engine memory accounting: lb_model_mem_report against the tensor table, the model's shapes
 * (KV formula), the file size and the session's buffers; the plan input against what a session
 * really allocates; the pressure guard on fake /proc trees. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/model.h"
#include "engine/session.h"
#include "mem/budget.h"
#include "lowbit.h"
#include "tokenizer/tokenizer.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define LLAMA3_BF16 SHARED("models/synth-llama3-gqa")
#define T512 SHARED("models/tinystories-512d") /* head_dim 64: a Q8_0 KV cache fits */

/* The runtime estimate against /proc read here: the baseline lies between 0 and the RSS now
 * (statm), the code is the test binary's executable mappings (/proc/self/maps, page-rounded),
 * the stacks follow the thread count, the total is the sum. */
static void runtime_parts(const lb_model *m, int n_threads, const lb_mem_runtime *got) {
    lb_mem_runtime rt;
    lb_model_mem_runtime(m, n_threads, &rt);
    CHECK(!memcmp(&rt, got, sizeof rt), "the report's runtime part is lb_model_mem_runtime's");
    unsigned long long vsz = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f && fscanf(f, "%llu %llu", &vsz, &rss) == 2);
    if (f) fclose(f);
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    CHECK(rt.baseline > 0 && rt.baseline <= rss * page, "baseline %llu, RSS now %llu", (unsigned long long)rt.baseline,
          rss * page);
    char exe[4096], line[4096 + 128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    uint64_t text = 0;
    int segs = 0;
    f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long a, b;
        char perm[8], path[4096] = "";
        if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %4095s", &a, &b, perm, path) >= 3 && perm[2] == 'x' && !strcmp(path, exe))
            text += b - a, segs++;
    }
    if (f) fclose(f);
    CHECK(segs > 0 && rt.code <= text && rt.code + 2 * page * (uint64_t)segs > text, "code %llu vs the binary's executable mappings %llu",
          (unsigned long long)rt.code, (unsigned long long)text);
    CHECK(rt.stacks == (uint64_t)n_threads * LB_MEM_THREAD_STACK && rt.heap == LB_MEM_HEAP_SLACK);
    CHECK(rt.total == rt.baseline + rt.code + rt.stacks + rt.heap);
}

static lb_model *load(const char *path) {
    lb_error err = {0};
    lb_model *m = NULL;
    CHECK(lb_model_load(path, NULL, &m, &err) == LB_OK, "%s: %s", path, err.msg);
    return m;
}

/* Model part: weight bytes = sum of tensor sizes, split by dtype and by backing. */
static void test_model_part(const char *path, int expect_owned) {
    lb_model *m = load(path);
    if (!m) return;
    lb_mem_report r;
    lb_error err = {0};
    CHECK(lb_model_mem_report(m, NULL, &r, &err) == LB_OK, "%s", err.msg);
    lb_model_info info;
    lb_model_get_info(m, &info);
    uint64_t sum = 0, dt = 0;
    for (size_t i = 0; i < info.n_tensors; i++) {
        lb_tensor_info ti;
        CHECK(lb_model_tensor_info(m, i, &ti, &err) == LB_OK);
        sum += ti.nbytes;
    }
    CHECK(r.weight_bytes == sum && r.n_tensors == info.n_tensors, "%s: %llu vs %llu", path,
          (unsigned long long)r.weight_bytes, (unsigned long long)sum);
    uint32_t nt = 0;
    for (int i = 0; i < r.n_dtypes; i++) {
        dt += r.by_dtype[i].bytes, nt += r.by_dtype[i].n_tensors;
        if (i) CHECK(r.by_dtype[i - 1].bytes >= r.by_dtype[i].bytes, "largest first");
    }
    CHECK(dt == sum && nt == info.n_tensors && r.n_dtypes >= 1);
    CHECK(r.mapped_weight_bytes + r.owned_weight_bytes == sum);
    CHECK(r.owned_bytes == info.converted_bytes && r.n_owned == m->n_bufs);
    CHECK(expect_owned ? r.owned_weight_bytes > 0 : r.owned_weight_bytes == 0, "%s: owned %llu", path,
          (unsigned long long)r.owned_weight_bytes);
    /* mapped bytes: the files themselves */
    uint64_t files = 0;
    for (size_t i = 0; i < m->n_maps; i++) {
        struct stat st;
        if (stat(m->maps[i].path, &st) == 0) files += (uint64_t)st.st_size;
    }
    CHECK(r.mapped_bytes == files && files >= r.mapped_weight_bytes, "%llu vs %llu", (unsigned long long)r.mapped_bytes,
          (unsigned long long)files);
    /* read every weight byte: the mapping is then resident (a small file stays in the cache) */
    volatile unsigned char acc = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        for (size_t b = 0; b < m->tensors[i].nbytes; b += 512) acc ^= ((const unsigned char *)m->tensors[i].data)[b];
    (void)acc;
    CHECK(lb_model_mem_report(m, NULL, &r, &err) == LB_OK && r.mapped_resident_known);
    CHECK(r.mapped_resident_bytes >= r.mapped_weight_bytes && r.mapped_resident_bytes <= r.mapped_bytes,
          "resident %llu, mapped weights %llu", (unsigned long long)r.mapped_resident_bytes,
          (unsigned long long)r.mapped_weight_bytes);
    CHECK(!r.has_session && r.kv_bytes == 0 && r.total_bytes == r.weight_bytes + r.tokenizer_bytes + r.process.total);
    runtime_parts(m, 1, &r.process);
    CHECK(m->tok ? r.tokenizer_bytes >= (uint64_t)m->tok->n_vocab * 40 : r.tokenizer_bytes == 0);
    CHECK(r.proc_rss > 0 && r.proc_peak_rss >= r.proc_rss);
    lb_model_free(m);
}

/* Session part: KV = 2 x layers x ctx x kv_heads x head_dim x element size; tracker tags add up
 * to what the session says it allocated; the plan input predicts it exactly. */
static void test_session_part(lb_kv_type kv, int n_threads) {
    lb_model *m = load(STORIES);
    if (!m) return;
    lb_error err = {0};
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 100;
    sp.n_threads = n_threads;
    sp.kv_type = kv;
    lb_session *s = NULL;
    CHECK(lb_session_new(m, &sp, &s, &err) == LB_OK, "%s", err.msg);
    if (!s) {
        lb_model_free(m);
        return;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    uint64_t elem = kv == LB_KV_F16 ? 2 : 4;
    uint64_t per_tok = 2ull * info.n_layers * info.n_kv_heads * info.head_dim * elem;
    int32_t ids[7] = {1, 403, 407, 261, 378, 291, 260};
    CHECK(lb_session_eval(s, ids, 7, NULL, 0, &err) == LB_OK, "%s", err.msg);

    lb_mem_report r;
    CHECK(lb_model_mem_report(m, s, &r, &err) == LB_OK, "%s", err.msg);
    CHECK(r.has_session && r.n_ctx == 100 && r.n_past == 7 && r.n_threads == lb_session_n_threads(s));
    CHECK(!strcmp(r.kv_type, kv == LB_KV_F16 ? "f16" : "f32"));
    CHECK(r.kv_bytes_per_token == per_tok && r.kv_bytes == per_tok * 100 && r.kv_used_bytes == per_tok * 7,
          "kv %llu per token %llu", (unsigned long long)r.kv_bytes, (unsigned long long)r.kv_bytes_per_token);
    CHECK(r.kv_bytes == lb_session_kv_bytes(s));
    CHECK(r.kv_resident_bytes > 0 && r.kv_resident_bytes <= r.kv_bytes);
    CHECK(r.logits_bytes == (uint64_t)info.n_vocab * 4);
    CHECK(r.attention_bytes == (uint64_t)lb_session_n_threads(s) * 100 * 4);
    CHECK(r.scratch_bytes + r.logits_bytes + r.attention_bytes == lb_session_scratch_bytes(s));
    CHECK(r.runtime.live_bytes == r.kv_bytes + lb_session_scratch_bytes(s) && r.runtime.n_allocs == 16,
          "live %llu, %llu allocs", (unsigned long long)r.runtime.live_bytes, (unsigned long long)r.runtime.n_allocs);
    CHECK(r.total_bytes == r.weight_bytes + r.tokenizer_bytes + r.kv_bytes + lb_session_scratch_bytes(s) + r.process.total);
    runtime_parts(m, lb_session_n_threads(s), &r.process);

    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, lb_session_n_threads(s), &in);
    CHECK(in.weight_bytes == r.weight_bytes && in.kv_bytes_per_token[kv == LB_KV_F16 ? LB_MEM_KV_F16 : LB_MEM_KV_F32] == per_tok);
    CHECK(in.kv_bytes_per_token[LB_MEM_KV_Q8_0] == 0, "no Q8_0 KV cache for head_dim %d", info.head_dim);
    CHECK(in.scratch_bytes + in.scratch_bytes_per_token * 100 == lb_session_scratch_bytes(s),
          "plan %llu + %llu x 100 vs session %zu", (unsigned long long)in.scratch_bytes,
          (unsigned long long)in.scratch_bytes_per_token, lb_session_scratch_bytes(s));
    CHECK(in.overhead_bytes == r.tokenizer_bytes + r.process.total);
    CHECK(in.n_ctx_train == (uint32_t)info.ctx_train && in.kv_forced == -1);

    /* a session of another model is refused */
    lb_model *m2 = load(STORIES);
    if (m2) {
        CHECK(lb_model_mem_report(m2, s, &r, &err) == LB_ERR_ARG);
        lb_model_free(m2);
    }
    CHECK(lb_model_mem_report(NULL, NULL, &r, &err) == LB_ERR_ARG);
    lb_session_free(s);
    lb_model_free(m);
}

/* The planner over a real model's input: the exact total fits, one byte less does not, and the
 * refusal names weights and the KV cache. */
static void test_plan_edges(void) {
    lb_model *m = load(STORIES);
    if (!m) return;
    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, 1, &in);
    in.n_ctx_requested = 256;
    in.ctx_strict = 1;
    uint64_t need = lb_mem_plan_total(&in, 256, LB_MEM_KV_F16, NULL, NULL);
    lb_mem_plan p;
    lb_error err = {0};
    in.budget = need;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.n_ctx == 256 && p.kv_dtype == LB_MEM_KV_F16, "%s", err.msg);
    in.budget = need - 1;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_ERR_BUDGET && strstr(err.msg, "weights") && strstr(err.msg, "KV cache"),
          "%s", err.msg);
    in.ctx_strict = 0; /* now it may shrink, and the shrunk plan still fits */
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.shrunk && p.n_ctx < 256 && p.total_bytes <= need - 1);
    in.n_ctx_requested = in.n_ctx_train + 1;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_ERR_RANGE);
    lb_model_free(m);
}

/* Q8_0 KV cache: 34 bytes per 32 values per head row; the session allocates exactly that, the
 * report names it, the plan input offers it, and a budget that fits Q8_0 but not F16 picks it.
 * A model whose head_dim is not a multiple of 32 is refused with a message naming head_dim. */
static void test_q8_0_kv(void) {
    lb_error err = {0};
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 100;
    sp.n_threads = 1;
    sp.kv_type = LB_KV_Q8_0;
    lb_session *s = NULL;
    lb_model *m = load(STORIES);
    if (m) {
        CHECK(lb_session_new(m, &sp, &s, &err) == LB_ERR_UNSUPPORTED && !s && strstr(err.msg, "head_dim"), "%s", err.msg);
        CHECK(lb_session_kv_bytes_per_token(m, LB_KV_Q8_0) == 0);
        lb_model_free(m);
    }
    if (!(m = load(T512))) return;
    lb_model_info info;
    lb_model_get_info(m, &info);
    uint64_t per_tok = 2ull * info.n_layers * info.n_kv_heads * (info.head_dim / 32) * 34;
    CHECK(info.head_dim % 32 == 0 && lb_session_kv_bytes_per_token(m, LB_KV_Q8_0) == per_tok);
    CHECK(lb_session_new(m, &sp, &s, &err) == LB_OK, "%s", err.msg);
    if (s) {
        int32_t ids[5] = {1, 403, 407, 261, 378};
        CHECK(lb_session_eval(s, ids, 5, NULL, 0, &err) == LB_OK, "%s", err.msg);
        lb_mem_report r;
        CHECK(lb_model_mem_report(m, s, &r, &err) == LB_OK, "%s", err.msg);
        CHECK(!strcmp(r.kv_type, "q8_0") && r.kv_bytes_per_token == per_tok && r.kv_bytes == per_tok * 100 &&
                  lb_session_kv_bytes(s) == per_tok * 100 && r.kv_used_bytes == per_tok * 5,
              "%s %llu", r.kv_type, (unsigned long long)r.kv_bytes);
        lb_session_free(s);
    }
    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, 1, &in);
    CHECK(in.kv_bytes_per_token[LB_MEM_KV_Q8_0] == per_tok && in.kv_bytes_per_token[LB_MEM_KV_F16] * 17 == per_tok * 32);
    in.n_ctx_requested = 256;
    in.ctx_strict = 1;
    in.budget = lb_mem_plan_total(&in, 256, LB_MEM_KV_Q8_0, NULL, NULL);
    CHECK(lb_mem_plan_total(&in, 256, LB_MEM_KV_F16, NULL, NULL) > in.budget);
    lb_mem_plan p;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.n_ctx == 256 && p.kv_dtype == LB_MEM_KV_Q8_0 && p.kv_fallback,
          "%s", err.msg);
    lb_model_free(m);
}

/* ---- guard on fake trees ------------------------------------------------------------------ */

static void put(const char *root, const char *rel, const char *text) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s%s", root, rel);
    for (char *s = p + strlen(root) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    FILE *f = fopen(p, "w"); /* truncates in place: the monitor's open descriptor sees the change */
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void meminfo(const char *root, int avail_pct) {
    char t[256];
    snprintf(t, sizeof t, "MemTotal: 1000000 kB\nMemFree: %d kB\nMemAvailable: %d kB\nCached: 1000 kB\n"
             "SwapTotal: 0 kB\nSwapFree: 0 kB\n", avail_pct * 10000, avail_pct * 10000);
    put(root, "/proc/meminfo", t);
}

static void test_guard(void) {
    char root[] = "/tmp/lb_test_guard_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0, "mkdtemp");
        return;
    }
    meminfo(root, 50);
    put(root, "/proc/self/statm", "5000 3000 1000 10 0 2000 0\n");
    put(root, "/proc/self/status", "VmHWM:\t 20000 kB\n");
    put(root, "/proc/self/cgroup", "0::/\n"); /* no cgroup: not an error */
    lb_mem_guard *g = NULL;
    lb_error err = {0};
    CHECK(lb_mem_guard_open(root, 1, &g, &err) == LB_OK, "%s", err.msg);
    if (g) {
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_CONTINUE && lb_mem_guard_level(g) == LB_MEM_PRESSURE_NONE);
        meminfo(root, 12); /* MEDIUM: nothing to do */
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_CONTINUE && lb_mem_guard_level(g) == LB_MEM_PRESSURE_MEDIUM);
        meminfo(root, 5); /* HIGH: warn once */
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_WARN && strstr(lb_mem_guard_reason(g), "available"), "%s",
              lb_mem_guard_reason(g));
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_CONTINUE, "the warning is given once");
        meminfo(root, 2); /* CRITICAL: stop, every time it is asked */
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_STOP && lb_mem_guard_level(g) == LB_MEM_PRESSURE_CRITICAL);
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_STOP);
        meminfo(root, 60);
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_CONTINUE && lb_mem_guard_level(g) == LB_MEM_PRESSURE_NONE);
        CHECK(lb_mem_guard_polls(g) == 7, "one poll a step");
        lb_mem_guard_close(g);
    }
    /* polling every 4 steps: 10 steps poll 3 times, and pressure is seen only at a poll */
    CHECK(lb_mem_guard_open(root, 4, &g, &err) == LB_OK);
    if (g) {
        int stops = 0;
        for (int i = 0; i < 10; i++) {
            if (i == 1) meminfo(root, 1);
            stops += lb_mem_guard_step(g) == LB_MEM_GUARD_STOP;
        }
        CHECK(lb_mem_guard_polls(g) == 3 && stops == 2, "polls %lu stops %d", lb_mem_guard_polls(g), stops);
        lb_mem_guard_close(g);
    }
    /* a cgroup v2 limit nearly reached stops generation though the host has plenty */
    meminfo(root, 80);
    put(root, "/proc/self/cgroup", "0::/job\n");
    put(root, "/sys/fs/cgroup/job/memory.max", "1000000000\n");
    put(root, "/sys/fs/cgroup/job/memory.current", "990000000\n");
    put(root, "/sys/fs/cgroup/job/memory.stat", "anon 900000000\nfile 90000000\ninactive_file 1000000\n");
    CHECK(lb_mem_guard_open(root, 1, &g, &err) == LB_OK);
    if (g) {
        CHECK(lb_mem_guard_step(g) == LB_MEM_GUARD_STOP && strstr(lb_mem_guard_reason(g), "cgroup"), "%s",
              lb_mem_guard_reason(g));
        lb_mem_guard_close(g);
    }
    /* a broken tree is an error at open, not a crash later */
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    CHECK(lb_mem_guard_open(root, 1, &g, &err) != LB_OK && g == NULL && strstr(err.msg, "meminfo"), "%s", err.msg);
    CHECK(lb_mem_guard_step(NULL) == LB_MEM_GUARD_CONTINUE);
}

int main(void) {
    test_model_part(STORIES, 0);
    test_model_part(LLAMA3_BF16, 1);
    test_session_part(LB_KV_F32, 1);
    test_session_part(LB_KV_F16, 2);
    test_plan_edges();
    test_q8_0_kv();
    test_guard();
    return test_summary();
}
