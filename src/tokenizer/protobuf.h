/* A tiny, bounds-checked reader of the protobuf wire format (enough for SentencePiece's
 * ModelProto). Offsets are absolute within the buffer, so errors can name the byte. */
#ifndef LB_TOKENIZER_PROTOBUF_H
#define LB_TOKENIZER_PROTOBUF_H
#include <stddef.h>
#include <stdint.h>
#include "lowbit.h"

enum { LB_PB_VARINT = 0, LB_PB_FIXED64 = 1, LB_PB_BYTES = 2, LB_PB_FIXED32 = 5 };

/* Reads the fields of one message: buf[pos, end). name is the file name for errors. */
typedef struct lb_pb {
    const uint8_t *buf;
    size_t pos, end;
    const char *name;
} lb_pb;

typedef struct lb_pb_field {
    uint32_t num;  /* field number */
    int wire;      /* LB_PB_* */
    uint64_t v;    /* varint and fixed values (fixed32 in the low 32 bits) */
    size_t off;    /* LB_PB_BYTES: absolute offset of the payload */
    size_t len;    /* LB_PB_BYTES: payload length */
    size_t at;     /* absolute offset of the field's key, for errors */
} lb_pb_field;

lb_pb lb_pb_init(const void *buf, size_t size, const char *name);
/* Reader over a length-delimited field's payload (a sub-message). */
lb_pb lb_pb_sub(const lb_pb *parent, const lb_pb_field *f);
/* Reads the next field into f. Returns LB_OK with *more = 0 at the end of the message;
 * LB_ERR_FORMAT (naming the file and offset) when a field is malformed or runs past the end. */
lb_status lb_pb_next(lb_pb *r, lb_pb_field *f, int *more, lb_error *err);
/* Checks that f has the wire type the schema expects for it. */
lb_status lb_pb_expect(const lb_pb *r, const lb_pb_field *f, int wire, const char *field, lb_error *err);
float lb_pb_float(const lb_pb_field *f);
int64_t lb_pb_int(const lb_pb_field *f); /* int32/int64/enum: two's complement */

#endif
