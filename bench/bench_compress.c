/* .lbz ratio and speed per thread for F32/F16/BF16 (synthetic Gaussian and the shared model
 * files), beside plain zstd -3 and lz4 on the same bytes without byte planes (1 MiB chunks).
 * usage: bench_compress [MiB of synthetic data per dtype, default 64] [max threads, default 2] */
#include <lz4.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "compress/codec.h"
#include "compress/lbz.h"
#include "core/dtype.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static uint64_t g_rng = 7;
static double unif(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(0.02 * sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif())); }

typedef struct data {
    const char *name;
    unsigned char *bytes;
    size_t size, header;
    uint32_t es;
} data;

static void plain(const data *d, int use_lz4, double *ratio, double *cmbs, double *dmbs) {
    size_t chunk = 1 << 20, total = 0, cap = ZSTD_compressBound(chunk) + LZ4_compressBound((int)chunk);
    char *buf = malloc(cap), *back = malloc(chunk);
    size_t *cs = malloc((d->size / chunk + 2) * sizeof *cs);
    char *all = malloc(d->size + (d->size / chunk + 2) * cap / 64 + cap);
    double t0 = now();
    size_t k = 0, pos = 0;
    for (size_t off = 0; off < d->size; off += chunk, k++) {
        size_t m = d->size - off < chunk ? d->size - off : chunk;
        size_t r = use_lz4 ? (size_t)LZ4_compress_default((const char *)d->bytes + off, all + pos, (int)m, (int)cap)
                           : ZSTD_compress(all + pos, cap, d->bytes + off, m, 3);
        cs[k] = r;
        pos += r;
    }
    double t1 = now();
    total = pos;
    pos = 0;
    k = 0;
    for (size_t off = 0; off < d->size; off += chunk, k++) {
        size_t m = d->size - off < chunk ? d->size - off : chunk;
        if (use_lz4) LZ4_decompress_safe(all + pos, back, (int)cs[k], (int)m);
        else ZSTD_decompress(back, m, all + pos, cs[k]);
        pos += cs[k];
    }
    double t2 = now();
    *ratio = (double)d->size / (double)total;
    *cmbs = (double)d->size / 1e6 / (t1 - t0);
    *dmbs = (double)d->size / 1e6 / (t2 - t1);
    free(buf), free(back), free(cs), free(all);
}

static void run(const data *d, int max_threads) {
    char in[] = "/tmp/lb_bench_in.XXXXXX", out[64];
    int fd = mkstemp(in);
    if (fd < 0 || write(fd, d->bytes, d->size) != (ssize_t)d->size) return;
    close(fd);
    snprintf(out, sizeof out, "%s.lbz", in);
    lb_lbz_region r = {d->header, d->size - d->header, d->es};
    double pr, pc, pd;
    plain(d, 0, &pr, &pc, &pd);
    printf("| %-22s | zstd -3, no planes  | 1 | %.3f | %7.0f | %7.0f | %7.0f |\n", d->name, pr, pc, pd, pd);
    plain(d, 1, &pr, &pc, &pd);
    printf("| %-22s | lz4, no planes      | 1 | %.3f | %7.0f | %7.0f | %7.0f |\n", d->name, pr, pc, pd, pd);
    lb_codec codecs[] = {LB_CODEC_ZSTD, LB_CODEC_LZ4};
    int levels[] = {1, 3, 1};
    for (int c = 0; c < 3; c++)
        for (int t = 1; t <= max_threads; t++) {
            lb_lbz_options o = lb_lbz_default_options();
            o.codec = codecs[c == 2];
            o.level = levels[c];
            o.n_threads = t;
            lb_error err;
            double t0 = now();
            if (lb_lbz_compress(in, out, &r, 1, &o, NULL, NULL, &err)) {
                printf("error: %s\n", err.msg);
                break;
            }
            double t1 = now();
            void *buf;
            size_t sz;
            if (lb_lbz_decompress_to_memory(out, t, &buf, &sz, &err) || sz != d->size || memcmp(buf, d->bytes, sz)) {
                printf("error: restore failed: %s\n", err.msg);
                break;
            }
            double t2 = now();
            /* decode alone: into a warm buffer, one thread, best of 3 */
            double best = 1e9;
            lb_lbz *z;
            if (lb_lbz_open(out, NULL, NULL, &z, &err) == LB_OK) {
                for (int rep = 0; rep < 3; rep++) {
                    double a = now();
                    lb_lbz_read(z, 0, sz, buf, &err);
                    double b = now();
                    if (b - a < best) best = b - a;
                }
                lb_lbz_close(z);
            }
            free(buf);
            FILE *f = fopen(out, "rb");
            fseek(f, 0, SEEK_END);
            long zs = ftell(f);
            fclose(f);
            char what[32];
            snprintf(what, sizeof what, "lbz %s -%d", lb_codec_name(o.codec), o.level);
            printf("| %-22s | %-19s | %d | %.3f | %7.0f | %7.0f | %7.0f |\n", d->name, what, t, (double)d->size / (double)zs,
                   (double)d->size / 1e6 / (t1 - t0) / t, (double)d->size / 1e6 / (t2 - t1) / t,
                   t == 1 ? (double)d->size / 1e6 / best : 0.0);
        }
    unlink(out);
    unlink(in);
}

static int load(data *d, const char *name, const char *path, uint32_t es) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    d->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    d->bytes = malloc(d->size);
    if (fread(d->bytes, 1, d->size, f) != d->size) return fclose(f), 0;
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | d->bytes[i];
    d->header = 8 + hl; /* safetensors: u64 length + JSON; all tensors of one dtype here */
    d->size = d->header + (d->size - d->header) / es * es;
    d->name = name;
    d->es = es;
    return 1;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    printf("MB/s per thread = total / threads. compress: lb_lbz_compress file to file (fsync included). restore: "
           "lb_lbz_decompress_to_memory (fresh buffer: page faults, whole-file hash). decode: lb_lbz_read of the whole "
           "file into a warm buffer (chunk checksums verified); plain rows: 1 MiB chunks in memory\n\n");
    printf("| data | method | threads | ratio | compress MB/s/thread | restore to memory MB/s/thread | decode MB/s, 1 thread, warm buffer |\n|---|---|---|---|---|---|---|\n");
    size_t nb = mib << 20;
    const char *names[3] = {"synthetic F32 N(0,.02)", "synthetic F16 N(0,.02)", "synthetic BF16 N(0,.02)"};
    for (int k = 0; k < 3; k++) {
        data d = {names[k], malloc(nb), nb, 0, k == 0 ? 4u : 2u};
        for (size_t i = 0; i < nb / d.es; i++) {
            float v = gauss();
            if (k == 0) memcpy(d.bytes + 4 * i, &v, 4);
            else {
                uint16_t h = k == 1 ? lb_f32_to_fp16(v) : lb_f32_to_bf16(v);
                memcpy(d.bytes + 2 * i, &h, 2);
            }
        }
        run(&d, threads);
        free(d.bytes);
    }
    const char *files[3][3] = {{"tinystories-512d BF16", LB_SHARED_DIR "/models/tinystories-512d/model.safetensors", "2"},
                               {"synth-qwen2-bias F16", LB_SHARED_DIR "/models/synth-qwen2-bias/model.safetensors", "2"},
                               {"stories260K-hf F32", LB_SHARED_DIR "/models/stories260K-hf/model.safetensors", "4"}};
    for (int k = 0; k < 3; k++) {
        data d;
        if (!load(&d, files[k][0], files[k][1], (uint32_t)atoi(files[k][2]))) {
            printf("(missing %s)\n", files[k][1]);
            continue;
        }
        run(&d, threads);
        free(d.bytes);
    }
    return 0;
}
