/* lowbit pull: download a model from the Hugging Face Hub into huggingface_hub's cache and print
 * its local path; main.c resolves hf:// arguments of every other command the same way. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: lowbit pull [hf://]OWNER/NAME[@REVISION][:FILE|:QUANT] [--offline] [--endpoint URL] [--cache DIR]\n\n"
          "Downloads a model from the Hugging Face Hub (unless it is cached) and prints its local path.\n"
          "  :FILE    a file of the repository (a name with '.' or '/')\n"
          "  :QUANT   the one .gguf file whose name contains the tag, e.g. :Q4_K_M\n"
          "  neither  the repository's one .gguf file, or its safetensors model folder\n"
          "Every command takes -m hf://... the same way (e.g. lowbit run -m hf://OWNER/NAME:Q4_0 -p Hi).\n\n"
          "  --offline        the cache only (also HF_HUB_OFFLINE=1)\n"
          "  --endpoint URL   the Hub (default $HF_ENDPOINT or https://huggingface.co)\n"
          "  --cache DIR      the cache folder (default $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)\n"
          "Environment: HF_TOKEN (sent to the Hub only, for gated and private repositories).\n"
          "Downloads resume after an interruption; each file is checked against the Hub's sha256.\n",
          f);
}

/* One resolve with a progress bar; *path malloc'ed. */
int cli_hub_resolve(const char *ref, const lb_hub_params *base, char **path) {
    lb_hub_params p = base ? *base : lb_hub_default_params();
    cli_progress_state prog = {0};
    prog.label = "downloaded";
    p.progress = cli_progress;
    p.progress_user = &prog;
    lb_error err;
    if (lb_hub_resolve(ref, &p, path, &err)) return cli_error(&err);
    return CLI_OK;
}

int cmd_pull(int argc, char **argv) {
    lb_hub_params p = lb_hub_default_params();
    const char *ref = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--offline")) p.offline = 1;
        else if ((!strcmp(a, "--endpoint") || !strcmp(a, "--cache")) && i + 1 < argc) {
            if (a[2] == 'e') p.endpoint = argv[++i];
            else p.cache_dir = argv[++i];
        } else if (a[0] == '-' || ref) {
            fprintf(stderr, "lowbit pull: %s '%s'\n\n", a[0] == '-' ? "unknown option or missing value:" : "extra argument", a);
            usage(stderr);
            return CLI_USAGE;
        } else ref = a;
    }
    if (!ref) {
        usage(stderr);
        return CLI_USAGE;
    }
    char *path = NULL;
    int rc = cli_hub_resolve(ref, &p, &path);
    if (rc == CLI_OK) printf("%s\n", path);
    free(path);
    return rc;
}
