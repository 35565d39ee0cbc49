/* lowbit decompress: a .lbz back to the original model file, bit for bit. */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: lowbit decompress IN.lbz OUT [options]\n\n"
          "Restores the original file bit for bit, checking every chunk's checksum and the whole\n"
          "file's; a corrupt chunk is reported with its offset and tensor and nothing is written.\n\n"
          "  -t, --threads N    threads (default: all cores)\n"
          "  -h, --help         this help\n", f);
}

int cmd_decompress(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int threads = cli_default_threads();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), CLI_OK;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_threads(a, v, &threads)) return CLI_USAGE;
            i++;
        } else if (cli_in_out_arg("decompress", a, &in, &out)) return CLI_USAGE;
    }
    if (cli_in_out_given("decompress", in, out)) return CLI_USAGE;
    lb_error err;
    lb_model_regions *names = NULL;
    if (lb_model_regions_open(in, &names, &err)) names = NULL; /* errors then name offsets only */
    lb_lbz *z;
    lb_status s = lb_lbz_open(in, names ? lb_model_regions_name_at : NULL, names, &z, &err);
    if (!s) {
        cli_progress_state ps = {0};
        ps.label = "restored";
        s = lb_lbz_extract(z, out, threads, cli_progress, &ps, &err);
        lb_lbz_close(z);
    }
    lb_model_regions_free(names);
    return s ? cli_error(&err) : CLI_OK;
}
