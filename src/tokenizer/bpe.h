/* Internal layout of the Hugging Face BPE tokenizer (bpe*.c). The pipeline follows the
 * tokenizers library: added tokens are cut out of the raw text, the rest is normalized,
 * pre-tokenized into pieces, each piece is BPE-merged, and the post-processor wraps the ids.
 * Everything here is built at load and read-only afterwards, so one tokenizer may encode
 * from several threads at once. */
#ifndef LB_TOKENIZER_BPE_H
#define LB_TOKENIZER_BPE_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---- vocabulary: id <-> string, and merge ranks (bpe_vocab.c) ---- */
typedef struct lb_bpe_vocab {
    int32_t n;           /* ids 0..n-1; an id may have no string */
    char *blob;          /* all strings, back to back */
    size_t blob_len, blob_cap;
    uint32_t *off, *len; /* per id; len UINT32_MAX: no string */
    int32_t *ht;         /* open addressing, string -> id, -1 empty */
    size_t ht_mask;
    uint64_t *mk;        /* merge keys (left << 32 | right), UINT64_MAX empty */
    uint32_t *mrank;
    int32_t *mnew;
    size_t m_mask, m_count;
} lb_bpe_vocab;

lb_status lb_bpe_vocab_init(lb_bpe_vocab *v, int32_t n, size_t n_merges_hint, lb_error *err);
void lb_bpe_vocab_free(lb_bpe_vocab *v);
/* Sets id's string and indexes it (the first id given a string keeps it in the index). */
lb_status lb_bpe_vocab_set(lb_bpe_vocab *v, int32_t id, const char *s, size_t len, lb_error *err);
int32_t lb_bpe_vocab_find(const lb_bpe_vocab *v, const char *s, size_t len);
/* A later merge of the same pair replaces the earlier rank, as the reference does. */
lb_status lb_bpe_vocab_add_merge(lb_bpe_vocab *v, int32_t a, int32_t b, uint32_t rank, int32_t merged, lb_error *err);
/* Returns 1 and fills rank/merged when (a, b) merges. */
int lb_bpe_vocab_merge(const lb_bpe_vocab *v, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);

/* ---- GPT-2 byte <-> printable-character alphabet (bpe_bytes.c) ---- */
/* UTF-8 of the character byte b stands for; returns its length (1 or 2). */
int lb_bpe_byte_char(unsigned b, char out[2]);
/* The byte a code point stands for, or -1 when it is not in the alphabet. */
int lb_bpe_char_byte(uint32_t cp);
/* Length of the UTF-8 character at s (1..4), or 1 for a byte that starts no valid one. */
size_t lb_utf8_len(const unsigned char *s, size_t n);
/* Decodes the character at s; invalid bytes decode to themselves + 0x110000 (never a char). */
uint32_t lb_utf8_decode(const unsigned char *s, size_t n, size_t *len);

/* ---- normalizers and pre-tokenizers (bpe_pretok.c) ---- */
typedef enum { LB_SPLIT_REMOVED, LB_SPLIT_ISOLATED, LB_SPLIT_MERGED_PREV, LB_SPLIT_MERGED_NEXT, LB_SPLIT_CONTIGUOUS } lb_split_behavior;

typedef struct lb_bpe_pattern { /* a Regex (re) or a literal String (lit) */
    pcre2_code *re;
    char *lit;
    size_t lit_len;
} lb_bpe_pattern;

typedef enum { LB_NORM_PREPEND, LB_NORM_REPLACE, LB_NORM_IDENTITY } lb_bpe_norm_kind;
typedef struct lb_bpe_norm {
    lb_bpe_norm_kind kind;
    lb_bpe_pattern pat;  /* Replace */
    char *text;          /* Prepend text / Replace content */
    size_t text_len;
} lb_bpe_norm;

typedef enum { LB_PRE_SPLIT, LB_PRE_BYTELEVEL, LB_PRE_METASPACE } lb_bpe_pre_kind;
typedef enum { LB_PREPEND_ALWAYS, LB_PREPEND_FIRST, LB_PREPEND_NEVER } lb_prepend_scheme;
typedef struct lb_bpe_pre {
    lb_bpe_pre_kind kind;
    lb_bpe_pattern pat;      /* Split; ByteLevel with use_regex */
    lb_split_behavior behavior;
    int invert;
    int add_prefix_space;    /* ByteLevel */
    char rep[8];             /* Metaspace replacement (UTF-8) */
    size_t rep_len;
    lb_prepend_scheme scheme;
    int split;
} lb_bpe_pre;

/* A list of pieces of text, each a slice of buf. at_start: the piece begins at offset 0 of
 * the original text (Metaspace's "first" scheme asks). */
typedef struct lb_bpe_piece { size_t off, len; int at_start; } lb_bpe_piece;
typedef struct lb_bpe_plist {
    char *buf;
    size_t n_buf, cap_buf;
    lb_bpe_piece *p;
    size_t n, cap;
} lb_bpe_plist;

void lb_bpe_plist_free(lb_bpe_plist *l);
int lb_bpe_plist_push(lb_bpe_plist *l, const char *s, size_t len, int at_start);
lb_status lb_bpe_pattern_compile(lb_bpe_pattern *p, const char *src, size_t len, int is_regex,
                                 const char *name, const char *field, lb_error *err);
void lb_bpe_pattern_free(lb_bpe_pattern *p);
/* Applies the normalizers to s, writing the result to *out (malloc'ed). */
lb_status lb_bpe_normalize(const lb_bpe_norm *norms, size_t n_norms, pcre2_match_data *md,
                           pcre2_match_context *mctx, const char *s, size_t len, char **out, size_t *out_len, lb_error *err);
/* Runs one pre-tokenizer over every piece of in, appending the results to out. */
lb_status lb_bpe_pretokenize(const lb_bpe_pre *pre, pcre2_match_data *md, pcre2_match_context *mctx,
                             const lb_bpe_plist *in,
                             lb_bpe_plist *out, lb_error *err);

/* ---- the tokenizer ---- */
typedef struct lb_bpe_added {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word;
} lb_bpe_added;

/* Per-token decode, precomputed at load. first_* is the variant for the text's first token. */
typedef struct lb_bpe_decoded { uint32_t off, len, first_off, first_len; } lb_bpe_decoded;

typedef struct lb_bpe {
    char *name;
    lb_bpe_vocab vocab;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    int32_t byte_ids[256];  /* <0xHH> tokens for byte fallback, -1 absent */
    lb_bpe_added *added;    /* sorted by first byte, then longest first */
    size_t n_added;
    uint32_t added_start[257]; /* added[added_start[b] .. added_start[b+1]) begin with byte b */
    uint8_t *is_special;    /* per id: a special added token (decodes to nothing) */
    lb_bpe_norm *norms;
    size_t n_norms;
    lb_bpe_pre *pres;
    size_t n_pres;
    pcre2_code *word_re, *space_re; /* \w and \s for single_word / lstrip / rstrip */
    pcre2_match_context *mctx;
    int32_t *prefix, *suffix; /* what add_special wraps around the ids */
    size_t n_prefix, n_suffix;
    char *dec_blob;
    lb_bpe_decoded *dec;
} lb_bpe;

/* Decodes one id; render_special also writes special tokens (as the Hugging Face decode with
 * skip_special_tokens=False does). Same contract as lb_tokenizer_ops.decode_token. */
size_t lb_bpe_decode_token_ex(const lb_tokenizer *t, int32_t id, int first, int render_special,
                              char *buf, size_t cap);

/* Shared by the json and GGUF constructors (bpe.c). */
lb_bpe *lb_bpe_new(const char *name);
void lb_bpe_free(void *impl);
lb_status lb_bpe_add_added(lb_bpe *b, const char *s, size_t len, int32_t id, int special,
                           int lstrip, int rstrip, int single_word, lb_error *err);
/* Sorts added tokens, compiles helper regexes, looks up byte-fallback ids. */
lb_status lb_bpe_finish(lb_bpe *b, lb_error *err);
/* Decoder chain, applied per token at load to fill dec/dec_blob. */
typedef enum { LB_DEC_BYTELEVEL, LB_DEC_BYTEFALLBACK, LB_DEC_REPLACE, LB_DEC_STRIP, LB_DEC_METASPACE, LB_DEC_FUSE,
               LB_DEC_SPACE_JOIN /* no decoder: tokens joined by spaces */ } lb_bpe_dec_kind;
typedef struct lb_bpe_dec {
    lb_bpe_dec_kind kind;
    char *pat, *content; /* Replace (literal); Strip content / Metaspace replacement in pat */
    size_t pat_len, content_len;
    int start, stop;     /* Strip */
    int strip_first;     /* Metaspace: prepend_scheme != never */
} lb_bpe_dec;
lb_status lb_bpe_build_decoder(lb_bpe *b, const lb_bpe_dec *chain, size_t n, lb_error *err);
lb_status lb_bpe_wrap(lb_bpe *b, lb_tokenizer **out, lb_error *err);
extern const lb_tokenizer_ops lb_bpe_ops;

/* Pre-tokenizer regexes of known models (also used for GGUF tokenizer.ggml.pre). */
extern const char lb_bpe_re_gpt2[], lb_bpe_re_llama3[], lb_bpe_re_qwen2[];

#endif
