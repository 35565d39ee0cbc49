/* The GPT-2 byte-level alphabet and lenient UTF-8 helpers.
 * Byte-level BPE never sees raw bytes: each byte stands for one printable character. Bytes
 * that already print as themselves in Latin-1 (33..126, 161..172, 174..255) keep their code
 * point; the other 68 get 256, 257, ... in increasing byte order. */
#include "tokenizer/bpe.h"

static int printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static uint32_t byte_cp(unsigned b) {
    if (printable(b)) return b;
    if (b <= 32) return 256 + b;
    if (b <= 160) return 256 + 33 + (b - 127);
    return 256 + 33 + 34; /* 173, the soft hyphen */
}

int lb_bpe_byte_char(unsigned b, char out[2]) {
    uint32_t cp = byte_cp(b & 0xff);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

int lb_bpe_char_byte(uint32_t cp) {
    if (cp < 256) return printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 33 + 33) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 33 + 34) return 173;
    return -1;
}

uint32_t lb_utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    size_t k;
    uint32_t cp, min;
    if (c < 0x80) {
        *len = 1;
        return c;
    } else if ((c & 0xe0) == 0xc0) k = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) k = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) k = 4, cp = c & 0x07, min = 0x10000;
    else goto bad;
    if (k > n) goto bad;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) goto bad;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
    *len = k;
    return cp;
bad:
    *len = 1;
    return 0x110000 + c;
}

size_t lb_utf8_len(const unsigned char *s, size_t n) {
    size_t k;
    lb_utf8_decode(s, n, &k);
    return k;
}
