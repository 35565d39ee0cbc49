/* lowbit inspect: format, architecture, hyperparameters, tokenizer and tensor table. */
#include <math.h>
#include <string.h>

#include "cli.h"

/* --check: one line per tensor with non-finite weights, then a verdict on stdout and stderr */
static int check_weights(const lb_model *m, size_t n) {
    uint64_t bad = 0, tensors = 0;
    lb_error err = {0};
    for (size_t i = 0; i < n; i++) {
        lb_tensor_info ti;
        lb_tensor_check c;
        if (lb_model_tensor_info(m, i, &ti, &err) || lb_model_tensor_check(m, i, &c, &err)) return cli_error(&err);
        if (!c.n_bad) continue;
        printf("not finite: %s: %llu of its values, the first %s at element %lld\n", ti.name, (unsigned long long)c.n_bad,
               isnan(c.first_value) ? "NaN" : c.first_value > 0 ? "inf" : "-inf", (long long)c.first);
        bad += c.n_bad;
        tensors++;
    }
    if (!bad) return puts("check: every weight is finite"), CLI_OK;
    fprintf(stderr, "lowbit: inspect --check: %llu weights in %llu tensors are NaN or inf: the model is corrupt\n",
            (unsigned long long)bad, (unsigned long long)tensors);
    return CLI_ERR;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *tokenizer = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: lowbit inspect MODEL [--tokenizer PATH] [--check]\n\n"
                 "Shows the model's format, architecture, hyperparameters, tokenizer and every tensor\n"
                 "(name, dtype, shape innermost first, bytes), with the total size.\n"
                 "--check  also reads every weight and names each tensor holding NaN or inf values\n"
                 "         (count, first index); exits 1 when there is any.");
            return CLI_OK;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokenizer = argv[++i];
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (argv[i][0] == '-') return fprintf(stderr, "lowbit: inspect: unknown option '%s'\n", argv[i]), CLI_USAGE;
        else if (!path) path = argv[i];
        else return fprintf(stderr, "lowbit: inspect: one MODEL only\n"), CLI_USAGE;
    }
    if (!path) return fprintf(stderr, "usage: lowbit inspect MODEL (see --help)\n"), CLI_USAGE;
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = tokenizer;
    mp.n_threads = 1;
    lb_model *m;
    if (lb_model_load(path, &mp, &m, &err)) return cli_error(&err);
    lb_model_info in;
    lb_model_get_info(m, &in);
    char b[32];
    printf("model:          %s\nformat:         %s\narchitecture:   %s\n", path, in.format, in.arch);
    printf("vocab:          %d\ndim:            %d\nffn dim:        %d\nlayers:         %d\n", in.n_vocab, in.dim,
           in.hidden_dim, in.n_layers);
    printf("heads:          %d (kv %d, head dim %d)\ncontext:        %d\nnorm eps:       %g\n", in.n_heads,
           in.n_kv_heads, in.head_dim, in.ctx_train, in.norm_eps);
    if (in.sliding_window) printf("attention:      sliding window of %d positions\n", in.sliding_window);
    printf("rope:           theta %g, %s, scaling %s", in.rope_theta, in.rope_layout, in.rope_scaling);
    if (strcmp(in.rope_scaling, "none")) printf(" (factor %g)", in.rope_factor);
    printf("\nactivation:     %s\nembeddings:     %s\n", in.activation, in.tied_embeddings ? "tied to the output head" : "separate output head");
    if (in.qkv_bias) puts("biases:         q, k, v");
    if (in.sub_norms) puts("sub-norms:      attention and ffn (BitNet)");
    const lb_tokenizer *t = lb_model_tokenizer(m);
    if (t) printf("tokenizer:      %s, %d tokens\n", lb_tokenizer_kind(t), lb_tokenizer_n_vocab(t));
    else puts("tokenizer:      none");
    const char *tmpl = lb_model_chat_template(m);
    printf("chat template:  %s\n", tmpl ? "yes" : "none");
    printf("\n%-40s %-6s %-24s %14s\n", "tensor", "dtype", "shape", "bytes");
    for (size_t i = 0; i < in.n_tensors; i++) {
        lb_tensor_info ti;
        if (lb_model_tensor_info(m, i, &ti, &err)) break;
        char shape[64] = "";
        for (int d = 0; d < ti.n_dims; d++) {
            size_t l = strlen(shape);
            snprintf(shape + l, sizeof shape - l, "%s%lld", d ? " x " : "", (long long)ti.shape[d]);
        }
        printf("%-40s %-6s %-24s %14llu\n", ti.name, ti.dtype, shape, (unsigned long long)ti.nbytes);
    }
    printf("\n%zu tensors, %s of weights", in.n_tensors, cli_human_bytes(in.weight_bytes, b, sizeof b));
    if (in.converted_bytes) printf(" (%s converted at load)", cli_human_bytes(in.converted_bytes, b, sizeof b));
    putchar('\n');
    int rc = check ? check_weights(m, in.n_tensors) : CLI_OK;
    lb_model_free(m);
    return rc;
}
