/* lowbit delta create | apply | info: fine-tunes stored as deltas against their base. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: lowbit delta create BASE FINETUNED -o OUT.delta [--bits B | --threshold T | --int8 | --raw] [-t N] [-q]\n"
          "       lowbit delta apply BASE DELTA -o OUT\n"
          "       lowbit delta info DELTA [-v]\n\n"
          "A delta stores a fine-tune as the changes to its base model, in a safetensors file whose\n"
          "metadata names every base tensor (dtype, shape, xxh64), so it is never applied to another\n"
          "base. BASE and FINETUNED: GGUF files, safetensors files, or Hugging Face folders with one\n"
          "model.safetensors. `lowbit run -m BASE --delta DELTA` applies it while loading.\n\n"
          "  default         lossless: bit-pattern differences as zstd-coded byte planes, checked\n"
          "                  per chunk; the fine-tune comes back bit for bit\n"
          "  --level N       zstd level of the lossless planes (default 3, 1..22)\n"
          "  --raw           lossless as plain XOR values of the changed elements (version 1 file)\n"
          "  --bits B        lossy, matrices only (1-D tensors stay lossless): B = 1 stores the sign\n"
          "                  of each change and one scale per row (mean |change|, as BitDelta); B in\n"
          "                  (1, 9] also gives int8 rows to the fraction (B - 1) / 8 of each matrix's\n"
          "                  rows with the largest sign error (mixed precision, ~B bits per element)\n"
          "  --threshold T   keep only |fine - base| > T, as f32 differences (lossy)\n"
          "  --int8          store the kept differences as int8 with per-64 scales (lossy)\n"
          "  -o PATH         output (apply: a GGUF for a GGUF base, a folder with model.safetensors\n"
          "                  plus the base's config and tokenizer files for a folder base)\n"
          "  -t, --threads N create: threads encoding the lossless planes (default: all cores;\n"
          "                  apply always uses all cores)\n"
          "  -q              create: no per-tensor lines\n"
          "  -v              info: list every tensor\n"
          "  -h, --help      this help\n", f);
}

static void report(void *ud, const lb_delta_tensor_report *r) {
    if (*(int *)ud) return;
    char b[32];
    fprintf(stderr, "  %-40s %-5s %10" PRIu64 " / %-10" PRIu64 " kept %6.2f%% %s %9s  max|err| %.3g  rms %.3g\n", r->name,
            r->dtype, r->n_kept, r->n, r->n ? 100.0 * (double)r->n_kept / (double)r->n : 0, r->dense ? "dense " : "sparse",
            cli_human_bytes(r->bytes, b, sizeof b), r->max_abs_err, r->rms_err);
}

static int create(int argc, char **argv) {
    const char *pos[2] = {0}, *out = NULL;
    int np = 0, quiet = 0;
    lb_delta_options o = lb_delta_default_options();
    o.n_threads = cli_default_threads();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), CLI_OK;
        else if (!strcmp(a, "-o")) {
            if (!(out = v)) return fprintf(stderr, "lowbit: -o needs a value\n"), CLI_USAGE;
            i++;
        } else if (!strcmp(a, "--threshold")) {
            if (!cli_float(a, v, &d) || !(d >= 0) || isinf(d))
                return fprintf(stderr, "lowbit: --threshold must be a number >= 0\n"), CLI_USAGE;
            i++, o.threshold = (float)d;
        } else if (!strcmp(a, "--bits")) {
            if (!cli_float(a, v, &d) || !(d == 1 || (d > 1 && d <= 9)))
                return fprintf(stderr, "lowbit: --bits must be 1 or a number in (1, 9]\n"), CLI_USAGE;
            i++, o.bits = (float)d;
        } else if (!strcmp(a, "--level")) {
            if (!cli_float(a, v, &d) || d < 1 || d > 22 || d != floor(d))
                return fprintf(stderr, "lowbit: --level must be an integer 1..22\n"), CLI_USAGE;
            i++, o.level = (int)d;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_threads(a, v, &o.n_threads)) return CLI_USAGE;
            i++;
        } else if (!strcmp(a, "--raw")) o.raw = 1;
        else if (!strcmp(a, "--int8")) o.int8 = 1;
        else if (!strcmp(a, "-q")) quiet = 1;
        else if (a[0] == '-' && a[1]) return fprintf(stderr, "lowbit: delta create: unknown option '%s'\n", a), CLI_USAGE;
        else if (np < 2) pos[np++] = a;
        else return fprintf(stderr, "lowbit: delta create: unexpected argument '%s'\n", a), CLI_USAGE;
    }
    if (np < 2 || !out) return fprintf(stderr, "lowbit: delta create: BASE, FINETUNED and -o OUT are required\n"), CLI_USAGE;
    if (o.bits > 0 && (o.int8 || o.threshold > 0 || o.raw))
        return fprintf(stderr, "lowbit: delta create: --bits excludes --threshold, --int8 and --raw\n"), CLI_USAGE;
    cli_progress_state ps = {0};
    ps.label = "scanned";
    o.report = report, o.report_ud = &quiet;
    if (quiet) o.progress = cli_progress, o.progress_ud = &ps;
    lb_delta_summary s;
    lb_error err;
    double t0 = cli_now();
    if (lb_delta_create(pos[0], pos[1], out, &o, &s, &err)) return cli_error(&err);
    double dt = cli_now() - t0;
    char b1[32], b2[32];
    fprintf(stderr, "lowbit: %s: %s mode, %" PRIu64 " of %" PRIu64 " tensors changed, %" PRIu64 " of %" PRIu64
                    " elements kept (%.2f%%)\n"
                    "lowbit: %s -> %s, ratio %.2f; max|err| %.3g, rms err %.3g; %.2f s (%.2f GB/s of base + fine-tune)\n",
            out, o.bits > 1 ? "mixed sign/int8" : o.bits > 0 ? "1-bit sign" : o.int8 ? "int8" : o.threshold > 0 ? "float"
                 : o.raw ? "lossless (xor)" : "lossless (zstd planes)", s.n_changed, s.n_tensors, s.n_kept,
            s.n_elements, s.n_elements ? 100.0 * (double)s.n_kept / (double)s.n_elements : 0,
            cli_human_bytes(s.dense_bytes, b1, sizeof b1), cli_human_bytes(s.delta_bytes, b2, sizeof b2),
            s.delta_bytes ? (double)s.dense_bytes / (double)s.delta_bytes : 0, s.max_abs_err, s.rms_err, dt,
            dt > 0 ? 2.0 * (double)s.dense_bytes / dt / 1e9 : 0);
    return CLI_OK;
}

static int apply(int argc, char **argv) {
    const char *pos[2] = {0}, *out = NULL;
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), CLI_OK;
        else if (!strcmp(a, "-o")) {
            if (!(out = i + 1 < argc ? argv[++i] : NULL)) return fprintf(stderr, "lowbit: -o needs a value\n"), CLI_USAGE;
        } else if (a[0] == '-' && a[1]) return fprintf(stderr, "lowbit: delta apply: unknown option '%s'\n", a), CLI_USAGE;
        else if (np < 2) pos[np++] = a;
        else return fprintf(stderr, "lowbit: delta apply: unexpected argument '%s'\n", a), CLI_USAGE;
    }
    if (np < 2 || !out) return fprintf(stderr, "lowbit: delta apply: BASE, DELTA and -o OUT are required\n"), CLI_USAGE;
    cli_progress_state ps = {0};
    ps.label = "applied to";
    lb_error err;
    double t0 = cli_now();
    if (lb_delta_apply(pos[0], pos[1], out, cli_progress, &ps, &err)) return cli_error(&err);
    fprintf(stderr, "lowbit: wrote %s in %.2f s\n", out, cli_now() - t0);
    return CLI_OK;
}

static int info(int argc, char **argv) {
    const char *path = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), CLI_OK;
        else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) verbose = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return fprintf(stderr, "lowbit: delta info: unknown option '%s'\n", argv[i]), CLI_USAGE;
        else path = argv[i];
    }
    if (!path) return fprintf(stderr, "lowbit: delta info: DELTA is required\n"), CLI_USAGE;
    lb_delta *d;
    lb_error err;
    if (lb_delta_open(path, &d, &err)) return cli_error(&err);
    lb_delta_info in;
    lb_delta_get_info(d, &in);
    char b1[32], b2[32];
    printf("%s: %s delta (version %d%s), %zu tensors, %zu changed; %s of data for %s of weights (ratio %.2f); "
           "max|err| %.3g; base %s %016" PRIx64 " (checked)\n",
           path, lb_delta_mode_name(in.mode), in.version, in.lossless ? ", lossless" : "", in.n_tensors, in.n_changed,
           cli_human_bytes(in.data_bytes, b1, sizeof b1), cli_human_bytes(in.weight_bytes, b2, sizeof b2),
           in.data_bytes ? (double)in.weight_bytes / (double)in.data_bytes : 0, in.max_err, in.base_format,
           in.base_fingerprint);
    lb_delta_tensor_info t;
    for (size_t i = 0; verbose && i < in.n_tensors && !lb_delta_get_tensor(d, i, &t, &err); i++) {
        uint64_t by = t.data_bytes;
        printf("  %-40s %-5s %-6s %10s  ratio %7.2f  max|err| %.3g  rms %.3g\n", t.name, t.dtype, t.encoding,
               cli_human_bytes(by, b1, sizeof b1), by ? (double)t.weight_bytes / (double)by : 0, t.max_err, t.rms_err);
    }
    lb_delta_close(d);
    return CLI_OK;
}

int cmd_delta(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "create")) return create(argc - 1, argv + 1);
    if (!strcmp(argv[1], "apply")) return apply(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
    fprintf(stderr, "lowbit: delta: unknown subcommand '%s' (create, apply, info)\n", argv[1]);
    return CLI_USAGE;
}
