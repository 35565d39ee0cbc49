/* lowbit public API, part: models from the Hugging Face Hub. Included by lowbit.h only (it relies
 * on what lowbit.h and the parts before it declare); include <lowbit.h>, never this file.
 *
 * A reference names a repository and what to take from it:
 *   [hf://]OWNER/NAME[@REVISION][:FILE|:QUANT]
 * FILE is a path in the repository (it has a '.' or a '/'), QUANT a tag such as Q4_K_M that
 * picks the one .gguf file whose name contains it (case-insensitive). With neither, the one
 * .gguf of the repository, or, in a repository without GGUF files, its safetensors model with
 * config.json and tokenizer files (the local path is then the snapshot folder).
 * Files land in huggingface_hub's cache layout ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub: models--OWNER--NAME/blobs|snapshots|refs), so both tools share
 * downloads; interrupted downloads resume; every file is checked against the Hub's hash (sha256
 * for LFS files, the git blob hash for the others) before it gets its final name. */
#ifndef LOWBIT_HUB_H
#define LOWBIT_HUB_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

typedef struct lb_hub_params {
    const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;     /* NULL: $HF_TOKEN; sent only to the endpoint's own host */
    const char *cache_dir; /* NULL: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub */
    int offline;           /* -1: $HF_HUB_OFFLINE; 1: the cache only, no network */
    lb_progress_fn progress; /* bytes of each download; NULL for none */
    void *progress_user;
} lb_hub_params;

LB_API lb_hub_params lb_hub_default_params(void);
/* 1 when s starts with "hf://" (a model argument to resolve before loading). */
LB_API int lb_hub_is_ref(const char *s);
/* Downloads what ref names (unless cached) and sets *path to its local file or folder
 * (malloc'ed; free with free()). Errors name the URL and say what the Hub answered (401/403:
 * whether a token was sent; 404: repository or file) or, offline, the cache path looked at. */
LB_API lb_status lb_hub_resolve(const char *ref, const lb_hub_params *params, char **path, lb_error *err);

#endif
