/* SentencePiece BPE model shared by the three loaders (spm_load.c: tokenizer.model,
 * llama2.c tokenizer.bin, GGUF vocabularies) and the encoder/decoder (spm.c). */
#ifndef LB_TOKENIZER_SPM_H
#define LB_TOKENIZER_SPM_H
#include <stddef.h>
#include <stdint.h>
#include "tokenizer/tokenizer.h"

/* Piece types: SentencePiece's enum values, which GGUF token types share. */
enum {
    LB_SPM_NORMAL = 1,
    LB_SPM_UNKNOWN = 2,
    LB_SPM_CONTROL = 3,
    LB_SPM_USER_DEFINED = 4,
    LB_SPM_UNUSED = 5,
    LB_SPM_BYTE = 6
};

typedef struct lb_spm_piece {
    uint32_t off, len; /* into lb_spm.pool */
    float score;
    uint8_t type;
    int16_t byte;      /* LB_SPM_BYTE: the byte value, else -1 */
} lb_spm_piece;

typedef struct lb_spm {
    char *pool;
    size_t pool_len, pool_cap;
    lb_spm_piece *pieces;
    int32_t n, cap;
    int32_t *hash;     /* open addressing over piece ids, -1 empty */
    size_t hash_mask;
    int32_t byte_id[256]; /* id of "<0xAB>" (as SentencePiece looks it up), unk when absent */
    size_t max_user_len;  /* longest USER_DEFINED piece, 0 when none */
    int has_unused;       /* some piece is UNUSED: merges through it are undone */
    /* normalizer and model options */
    int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix, byte_fallback;
    int add_bos, add_eos;
    int32_t unk_id;
    char unk_surface[64];
} lb_spm;

/* Builder: lb_spm_new reserves room, lb_spm_add copies one piece, lb_spm_finish indexes the
 * pieces and wraps them in a tokenizer (special ids from the arguments; -1 when absent or out of
 * range). dup_strict: a duplicate piece is an error (as SentencePiece does) rather than a
 * warning where the first one wins. On failure m is freed. */
lb_spm *lb_spm_new(size_t n_pieces, size_t pool_bytes);
lb_status lb_spm_add(lb_spm *m, const char *s, size_t len, float score, int type, const char *name, lb_error *err);
lb_status lb_spm_finish(lb_spm *m, const char *name, int dup_strict, int32_t bos, int32_t eos, int32_t pad,
                        lb_tokenizer **out, lb_error *err);
void lb_spm_free(void *m);

/* llama2.c tokenizer.bin from memory (lb_spm_load_llama2c maps the file and calls this). */
lb_status lb_spm_parse_llama2c(const void *data, size_t size, int32_t n_vocab, const char *name, lb_tokenizer **out,
                               lb_error *err);

/* Parses "<0xAB>" (either hex case): the byte, else -1. */
int lb_spm_byte_piece(const char *s, size_t len);
/* Piece id lookup as SentencePiece's PieceToId: reserved pieces (control, unknown, byte)
 * first, then the others; unk_id when absent. */
int32_t lb_spm_piece_to_id(const lb_spm *m, const char *s, size_t len);

#endif
