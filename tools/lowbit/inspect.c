/* lowbit inspect: format, architecture, hyperparameters, tokenizer and tensor table. */
#include <string.h>

#include "cli.h"

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *tokenizer = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: lowbit inspect MODEL [--tokenizer PATH]\n\n"
                 "Shows the model's format, architecture, hyperparameters, tokenizer and every tensor\n"
                 "(name, dtype, shape innermost first, bytes), with the total size.");
            return CLI_OK;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokenizer = argv[++i];
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
    lb_model_free(m);
    return CLI_OK;
}
