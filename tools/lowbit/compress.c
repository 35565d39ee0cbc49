/* lowbit compress: a model file into a .lbz container (byte planes + zstd/lz4, checksums). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: lowbit compress IN OUT [options]\n\n"
          "Losslessly compresses a model file into a .lbz container: header kept verbatim, tensor data\n"
          "in ~1 MiB chunks split into byte planes by dtype (F32, F16, BF16) and coded with zstd or\n"
          "LZ4, an xxh64 checksum per chunk and for the whole file. `lowbit decompress` restores it\n"
          "bit for bit; `lowbit run -m OUT` loads it directly.\n\n"
          "IN is a GGUF or safetensors file (a Hugging Face folder: its model.safetensors; put the\n"
          "result beside config.json and the tokenizer, e.g. as model.safetensors.lbz).\n\n"
          "  --codec zstd|lz4   entropy coder (default zstd)\n"
          "  --level N          zstd level (default 1); lz4: 1 fast, 2+ high compression\n"
          "  --chunk BYTES      chunk size (default 1M; 4K..64M)\n"
          "  -t, --threads N    threads (default: all cores)\n"
          "  -h, --help         this help\n", f);
}

int cmd_compress(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    lb_lbz_options opt = lb_lbz_default_options();
    opt.n_threads = cli_default_threads();
    int level_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), CLI_OK;
        else if (!strcmp(a, "--codec")) {
            if (!v) return fprintf(stderr, "lowbit: --codec needs a value\n"), CLI_USAGE;
            i++;
            if (!strcmp(v, "zstd")) opt.codec = LB_CODEC_ZSTD;
            else if (!strcmp(v, "lz4")) opt.codec = LB_CODEC_LZ4;
            else return fprintf(stderr, "lowbit: --codec must be zstd or lz4\n"), CLI_USAGE;
        } else if (!strcmp(a, "--level")) {
            if (!cli_int(a, v, -7, 22, &n)) return CLI_USAGE;
            i++, opt.level = (int)n, level_set = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_threads(a, v, &opt.n_threads)) return CLI_USAGE;
            i++;
        } else if (!strcmp(a, "--chunk")) {
            uint64_t b;
            if (!v || lb_size_parse(v, &b, NULL) != LB_OK || b < 4096 || b > ((uint64_t)64 << 20))
                return fprintf(stderr, "lowbit: --chunk must be between 4K and 64M\n"), CLI_USAGE;
            i++, opt.chunk_size = (uint32_t)b;
        } else if (cli_in_out_arg("compress", a, &in, &out)) return CLI_USAGE;
    }
    if (cli_in_out_given("compress", in, out)) return CLI_USAGE;
    if (opt.codec == LB_CODEC_LZ4 && !level_set) opt.level = 1;

    lb_error err;
    lb_model_regions *r;
    if (lb_model_regions_open(in, &r, &err)) return cli_error(&err);
    if (strstr(lb_model_regions_format(r), ".lbz")) {
        lb_model_regions_free(r);
        return cli_fail("%s is already a .lbz container", in);
    }
    size_t n;
    const lb_lbz_region *reg = lb_model_regions_get(r, &n);
    opt.header_len = lb_model_regions_header_len(r);
    opt.name_at = lb_model_regions_name_at;
    opt.name_ud = r;
    const char *file = lb_model_regions_file(r);
    cli_progress_state ps = {0};
    ps.label = "compressed";
    double t0 = cli_now();
    lb_status s = lb_lbz_compress(file, out, reg, n, &opt, cli_progress, &ps, &err);
    double dt = cli_now() - t0;
    if (!s) {
        struct stat a, b;
        char h1[32], h2[32];
        if (stat(file, &a) == 0 && stat(out, &b) == 0 && b.st_size > 0)
            fprintf(stderr, "lowbit: %s (%s, %zu tensors) -> %s: %s -> %s, ratio %.3f, %.1f s, %.0f MB/s\n", file,
                    lb_model_regions_format(r), lb_model_regions_n_tensors(r), out,
                    cli_human_bytes((uint64_t)a.st_size, h1, sizeof h1), cli_human_bytes((uint64_t)b.st_size, h2, sizeof h2),
                    (double)a.st_size / (double)b.st_size, dt, dt > 0 ? a.st_size / dt / 1e6 : 0);
    }
    lb_model_regions_free(r);
    return s ? cli_error(&err) : CLI_OK;
}
