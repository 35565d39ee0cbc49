/* lowbit: the command-line tool. Each subcommand lives in its own file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Weak so that a build without one subcommand's file still links and says so. */
#define CMD(name) int cmd_##name(int argc, char **argv) __attribute__((weak));
CMD(run) CMD(tokenize) CMD(logits) CMD(inspect) CMD(synth) CMD(bench) CMD(quantize) CMD(imatrix) CMD(convert)
CMD(perplexity) CMD(compress) CMD(decompress) CMD(delta) CMD(mem) CMD(memplan) CMD(serve) CMD(pull)
#undef CMD

static const struct {
    const char *name;
    const char *help;
} g_cmds[] = {
    {"run", "generate text from a prompt"},
    {"tokenize", "print the ids of a text"},
    {"logits", "write the logits of a sequence of ids"},
    {"inspect", "show a model's format, hyperparameters and tensors"},
    {"synth", "write a model with real shapes and random weights"},
    {"bench", "measure prompt and generation speed"},
    {"quantize", "write a model with quantized weights"},
    {"imatrix", "collect activation statistics for calibrated quantization"},
    {"convert", "convert a model to GGUF"},
    {"perplexity", "perplexity and KL divergence over a text"},
    {"compress", "losslessly compress a model file"},
    {"decompress", "restore a compressed model file"},
    {"delta", "create, apply and inspect fine-tune deltas"},
    {"mem", "show system and process memory"},
    {"memplan", "show the memory plan for a budget (resident or streamed weights)"},
    {"serve", "serve a model over HTTP (OpenAI API, chat page)"},
    {"pull", "download a model from the Hugging Face Hub"},
};

static lb_cmd_fn lookup(const char *name) {
#define M(n) if (strcmp(name, #n) == 0) return cmd_##n;
    M(run) M(tokenize) M(logits) M(inspect) M(synth) M(bench) M(quantize) M(imatrix) M(convert)
    M(perplexity) M(compress) M(decompress) M(delta) M(mem) M(memplan) M(serve) M(pull)
#undef M
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "lowbit %s: run and compress large language models in little memory\n\n"
               "usage: lowbit COMMAND [options]   (lowbit COMMAND --help for each)\n\ncommands:\n",
            lb_version());
    for (size_t i = 0; i < sizeof g_cmds / sizeof *g_cmds; i++)
        if (lookup(g_cmds[i].name)) fprintf(f, "  %-11s %s\n", g_cmds[i].name, g_cmds[i].help);
}

/* Every hf:// argument of a command (a model, a draft, an input) becomes its local path before
 * the command sees it, downloaded first when not cached; not for pull itself or --help. */
static int resolve_hub_args(int argc, char **argv) {
    if (!strcmp(argv[1], "pull")) return CLI_OK;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return CLI_OK;
    for (int i = 2; i < argc; i++) {
        const char *eq = strstr(argv[i], "=hf://"); /* NAME=hf://... model lists (serve) */
        const char *ref = lb_hub_is_ref(argv[i]) ? argv[i] : eq ? eq + 1 : NULL;
        if (!ref) continue;
        char *path = NULL;
        int rc = cli_hub_resolve(ref, NULL, &path);
        if (rc != CLI_OK) return rc;
        if (eq) { /* keep the NAME= part */
            size_t pre = (size_t)(eq - argv[i]) + 1;
            char *s = malloc(pre + strlen(path) + 1);
            if (!s) return cli_fail("out of memory");
            memcpy(s, argv[i], pre);
            strcpy(s + pre, path);
            free(path);
            path = s;
        }
        argv[i] = path; /* lives until exit */
    }
    return CLI_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lowbit %s\n", lb_version());
        return CLI_OK;
    }
    lb_cmd_fn fn = lookup(argv[1]);
    if (!fn) {
        fprintf(stderr, "lowbit: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return CLI_USAGE;
    }
    int rc = resolve_hub_args(argc, argv);
    if (rc != CLI_OK) return rc;
    return fn(argc - 1, argv + 1);
}
