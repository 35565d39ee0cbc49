/* lowbit quantize: any model the engine loads -> GGUF with quantized weights. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct tensor_log {
    int verbose;
    int n_notes;
} tensor_log;

/* Every tensor whose type differs from the requested one says why (fallbacks, recipe choices);
 * with -v every tensor is listed. */
static void on_tensor(void *user, const char *name, const char *type, const char *note) {
    tensor_log *l = user;
    if (note) l->n_notes++;
    if (note || l->verbose) fprintf(stderr, "lowbit: %-28s %-5s%s%s\n", name, type, note ? "  " : "", note ? note : "");
}

static void usage_types(FILE *f) {
    const char *const *t = lb_quantize_type_names();
    for (int i = 0; t[i]; i++) fprintf(f, "%s%s", i ? " " : "", t[i]);
    fputc('\n', f);
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    lb_quantize_params p = lb_quantize_default_params();
    p.type = NULL;
    long long threads = 0;
    tensor_log log = {0};
    const char *imatrix = NULL, *gptq = NULL;
    long long gptq_chunks = 0, ctx = 512, max_mib = 4096;
    double damp = 0.01;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit quantize IN OUT.gguf --type TYPE [--keep-output-f16] [--pure] [-t THREADS]\n"
                 "                       [--tokenizer FILE] [--no-tokenizer] [--imatrix FILE] [--like GGUF] [-v]\n"
                 "                       [--gptq TEXT [--gptq-chunks N] [-c CTX] [--gptq-damp F] [--gptq-max-mib M] [--gptq-tied]]\n\n"
                 "Writes IN (GGUF, Hugging Face folder, llama2.c or ak42 BitNet) as GGUF with quantized\n"
                 "matrices, with the metadata, tokenizer and tensor layout `lowbit convert` writes. The\n"
                 "output is written atomically; tensors stream through one chunk at a time.\n\n"
                 "Rules: norms and biases stay F32. Block types put the output head at Q6_K (as llama.cpp\n"
                 "does); --pure puts every matrix, embeddings and head included, in TYPE. The _s/_m/_l recipes\n"
                 "keep some attn_v / ffn_down / attn_output layers at higher precision. Ternary types (tq1_0,\n"
                 "tq2_0) apply to the blocks' linear layers; embeddings and head keep full precision. A tensor\n"
                 "whose rows do not fit the type's block gets a named fallback (printed).\n"
                 "iq4_nl / iq4_xs: 4-bit codes into GGUF's fixed non-linear table of 16 levels (blocks of\n"
                 "32 with an fp16 scale / super-blocks of 256 with 6-bit sub-scales), as llama.cpp writes them.\n"
                 "--keep-output-f16 keeps the output head in F16. -v lists every tensor's type.\n"
                 "--imatrix FILE (from `lowbit imatrix` or llama-imatrix): each matrix's scale search weights\n"
                 "the rounding error of column j by the mean squared activation the column met in calibration\n"
                 "(every block type but tq1_0/tq2_0; matrices the file lacks are quantized without).\n"
                 "--gptq TEXT: GPTQ error compensation. IN runs over TEXT (chunks of CTX tokens, default 512;\n"
                 "--gptq-chunks N uses the first N, default all) to collect the full second moment H of every\n"
                 "matmul input; each matrix is then quantized block by block (the type's block: 32 columns, or\n"
                 "256 for K-quants and iq4_xs) and each block's rounding error is pushed onto the columns not\n"
                 "yet quantized through the Cholesky factor of (H + lambda I)^-1, lambda = F x mean diag(H)\n"
                 "(--gptq-damp, default 0.01). The scale search weights columns by diag(H), or by --imatrix when\n"
                 "given. The file format is unchanged (llama.cpp reads it). H takes 8 k^2 bytes per input (k its\n"
                 "columns); more than --gptq-max-mib (default 4096) is refused. A tied embedding (also the head) is\n"
                 "compensated only with --gptq-tied (its looked-up rows then err more).\n"
                 "--like GGUF gives every tensor the type it has in GGUF (a model of the same shape, e.g. the\n"
                 "quantized base of a fine-tune, so `lowbit delta create BASE.gguf OUT.gguf` codes only what the\n"
                 "fine-tune changed); --type may then be left out (GGUF's general.file_type).\n"
                 "A model without a tokenizer is refused before any work (`run` could not use the output)\n"
                 "unless --no-tokenizer writes it without one (for logits and perplexity by ids).\n\n"
                 "Types:");
            usage_types(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--keep-output-f16")) { p.keep_output_f16 = 1; continue; }
        if (!strcmp(a, "--pure")) { p.pure = 1; continue; }
        if (!strcmp(a, "--gptq-tied")) { p.gptq_tied = 1; continue; }
        if (!strcmp(a, "--no-tokenizer")) { p.no_tokenizer = 1; continue; }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { log.verbose = 1; continue; }
        if (a[0] == '-' && a[1]) {
            if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
            i++;
            if (!strcmp(a, "--type")) p.type = v;
            else if (!strcmp(a, "--tokenizer")) p.tokenizer_path = v;
            else if (!strcmp(a, "--imatrix")) imatrix = v;
            else if (!strcmp(a, "--like")) p.like = v;
            else if (!strcmp(a, "--gptq")) gptq = v;
            else if (!strcmp(a, "--gptq-chunks")) { if (!cli_int(a, v, 1, 1 << 30, &gptq_chunks)) return CLI_USAGE; }
            else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, v, 2, 1 << 20, &ctx)) return CLI_USAGE; }
            else if (!strcmp(a, "--gptq-max-mib")) { if (!cli_int(a, v, 1, 1ll << 30, &max_mib)) return CLI_USAGE; }
            else if (!strcmp(a, "--gptq-damp")) {
                char *e;
                damp = strtod(v, &e);
                if (*e || !(damp > 0 && damp <= 10))
                    return fprintf(stderr, "lowbit: --gptq-damp wants a number in (0, 10], not '%s'\n", v), CLI_USAGE;
            }
            else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 256, &threads)) return CLI_USAGE; }
            else return fprintf(stderr, "lowbit: quantize: unknown option '%s'\n", a), CLI_USAGE;
        } else if (!in) in = a;
        else if (!out) out = a;
        else return fprintf(stderr, "lowbit: quantize: unexpected argument '%s'\n", a), CLI_USAGE;
    }
    if (!in || !out || (!p.type && !p.like)) {
        fprintf(stderr, "usage: lowbit quantize IN OUT.gguf --type TYPE [--keep-output-f16] [--pure] [-t THREADS] (see --help)\n");
        return CLI_USAGE;
    }
    p.n_threads = (int)threads;
    p.on_tensor = on_tensor;
    p.on_tensor_user = &log;
    lb_error err = {0};
    cli_progress_state ps = {.label = "quantized"};
    double t0 = cli_now();
    lb_imatrix *im = NULL;
    if (imatrix && lb_imatrix_load(imatrix, &im, &err)) return cli_error(&err);
    if (im)
        fprintf(stderr, "lowbit: importance matrix %s: %zu matrices, %d chunks of %s\n", imatrix, lb_imatrix_n_entries(im),
                lb_imatrix_n_chunks(im), lb_imatrix_dataset(im)[0] ? lb_imatrix_dataset(im) : "(unnamed text)");
    p.imatrix = im;
    lb_gptq *g = NULL;
    lb_status s = LB_OK;
    if (gptq) {
        const char *ins[] = {in, gptq, p.tokenizer_path};
        s = lb_output_check(out, ins, 3, 0, &err); /* before the calibration, not after */
        lb_model *m = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        if (!s) s = cli_text_ids(in, p.tokenizer_path, (int)threads, gptq, &m, &ids, &n, &err);
        if (!s) {
            lb_gptq_params gp = lb_gptq_default_params();
            gp.n_ctx = (int)ctx;
            gp.n_chunks = (int)gptq_chunks;
            gp.n_threads = (int)threads;
            gp.max_bytes = (uint64_t)max_mib << 20;
            fprintf(stderr, "lowbit: GPTQ statistics over %s: %.1f MiB of second moments\n", gptq,
                    (double)lb_gptq_bytes_needed(m) / 1048576.0);
            double tg = cli_now();
            s = lb_gptq_compute(m, ids, n, lb_tokenizer_bos(lb_model_tokenizer(m)), &gp, cli_chunk_bar, &tg, &g, &err);
        }
        free(ids);
        lb_model_free(m);
        p.gptq = g;
        p.gptq_damp = damp;
    }
    if (!s) s = lb_quantize_file(in, out, &p, cli_progress, &ps, &err);
    lb_imatrix_free(im);
    lb_gptq_free(g);
    if (s) return cli_error(&err);
    fprintf(stderr, "lowbit: wrote %s (%s) in %.2f s\n", out, p.type ? p.type : p.like, cli_now() - t0);
    return CLI_OK;
}
