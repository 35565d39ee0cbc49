/* lowbit convert: any model the engine loads -> GGUF. */
#include <string.h>

#include "cli.h"

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    lb_convert_params p = lb_convert_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit convert IN OUT.gguf [--tokenizer FILE] [--no-tokenizer] [--dtype f32|f16|bf16|keep]\n\n"
                 "Writes IN (a Hugging Face folder, a llama2.c checkpoint, an ak42 BitNet file or a GGUF file)\n"
                 "as GGUF following the conventions of GGUF files of its architecture, so llama.cpp loads it\n"
                 "unchanged: GGUF tensor names, Q/K rows in the order the architecture's RoPE expects (Hugging\n"
                 "Face rotate_half rows are permuted to adjacent pairs for llama), norms in F32, the tokenizer\n"
                 "(found beside IN or given with --tokenizer) and the chat template. --dtype converts every\n"
                 "matrix (default: keep each tensor's type). The output is written atomically.\n"
                 "A model without a tokenizer is refused before any work (`run` could not use the output)\n"
                 "unless --no-tokenizer writes it without one (for logits by ids).");
            return CLI_OK;
        }
        if (!strcmp(a, "--no-tokenizer")) {
            p.no_tokenizer = 1;
            continue;
        }
        if (a[0] == '-' && a[1]) {
            if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
            i++;
            if (!strcmp(a, "--tokenizer")) p.tokenizer_path = v;
            else if (!strcmp(a, "--dtype")) p.dtype = v;
            else return fprintf(stderr, "lowbit: convert: unknown option '%s'\n", a), CLI_USAGE;
        } else if (!in) in = a;
        else if (!out) out = a;
        else return fprintf(stderr, "lowbit: convert: unexpected argument '%s'\n", a), CLI_USAGE;
    }
    if (!in || !out) return fprintf(stderr, "usage: lowbit convert IN OUT.gguf [--tokenizer FILE] [--dtype TYPE] (see --help)\n"), CLI_USAGE;
    lb_error err = {0};
    cli_progress_state ps = {.label = "wrote"};
    if (lb_convert(in, out, &p, cli_progress, &ps, &err)) return cli_error(&err);
    return CLI_OK;
}
