/* A model and a calibration or evaluation text as token ids: what perplexity and imatrix both
 * start from. */
#include "cli.h"

lb_status cli_load_model(const char *path, const char *tok, int threads, lb_model **m, lb_error *err) {
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = tok;
    mp.n_threads = threads;
    return lb_model_load(path, &mp, m, err);
}

lb_status cli_text_ids(const char *model, const char *tok, int threads, const char *text_path, lb_model **m,
                       int32_t **ids, size_t *n, lb_error *err) {
    *ids = NULL;
    *n = 0;
    lb_status s = cli_load_model(model, tok, threads, m, err);
    const lb_tokenizer *t = s ? NULL : lb_model_tokenizer(*m);
    if (!s && !t) s = lb_fail(err, LB_ERR_ARG, "%s has no tokenizer (give one with --tokenizer)", model);
    if (!s) s = lb_tokenize_file(t, text_path, 1, ids, n, err);
    return s;
}
