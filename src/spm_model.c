/* spm_model.c — loads a SentencePiece .model (protobuf ModelProto) into an ei_tokenizer.
 *
 * A minimal protobuf reader: only the fields the tokenizer needs are read, everything else is skipped.
 * Every varint and length is bounds-checked, so truncated or random input yields EI_ERR_FORMAT.
 * Field numbers are those of sentencepiece_model.proto:
 *   ModelProto:     1 pieces (SentencePiece), 2 trainer_spec, 3 normalizer_spec, 5 denormalizer_spec
 *   SentencePiece:  1 piece, 2 score (float), 3 type
 *   TrainerSpec:    3 model_type, 24 treat_whitespace_as_suffix, 35 byte_fallback, 45/46/47 unk/bos/eos piece
 *   NormalizerSpec: 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
 *                   5 escape_whitespaces
 */
#include "tokenizer.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

typedef struct pb {
    const uint8_t *p, *end;
} pb;

typedef struct pb_str {
    const char *s;
    size_t n;
} pb_str;

/* Reads a varint; fails on overrun or more than 10 bytes. */
static int pb_varint(pb *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return ei_set_error(EI_ERR_FORMAT, "spm model: truncated varint");
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return ei_set_error(EI_ERR_FORMAT, "spm model: varint longer than 10 bytes");
}

/* Reads a field key. */
static int pb_key(pb *r, uint32_t *field, int *wire) {
    uint64_t k = 0;
    int rc = pb_varint(r, &k);
    if (rc < 0) return rc;
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff) return ei_set_error(EI_ERR_FORMAT, "spm model: bad field number");
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 0;
}

/* Reads a length-delimited payload, checked against the enclosing message. */
static int pb_bytes(pb *r, pb_str *out) {
    uint64_t n = 0;
    int rc = pb_varint(r, &n);
    if (rc < 0) return rc;
    if (n > (uint64_t)(r->end - r->p))
        return ei_set_error(EI_ERR_FORMAT, "spm model: length %llu runs past the end of its message",
                            (unsigned long long)n);
    out->s = (const char *)r->p;
    out->n = (size_t)n;
    r->p += n;
    return 0;
}

static int pb_fixed32(pb *r, uint32_t *out) {
    if (r->end - r->p < 4) return ei_set_error(EI_ERR_FORMAT, "spm model: truncated fixed32");
    *out = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

/* Skips a field of the given wire type (groups are refused: sentencepiece never writes them). */
static int pb_skip(pb *r, int wire) {
    uint64_t v = 0;
    pb_str s = {0};
    switch (wire) {
    case WT_VARINT: return pb_varint(r, &v);
    case WT_LEN: return pb_bytes(r, &s);
    case WT_FIXED32:
        if (r->end - r->p < 4) return ei_set_error(EI_ERR_FORMAT, "spm model: truncated fixed32");
        r->p += 4;
        return 0;
    case WT_FIXED64:
        if (r->end - r->p < 8) return ei_set_error(EI_ERR_FORMAT, "spm model: truncated fixed64");
        r->p += 8;
        return 0;
    default: return ei_set_error(EI_ERR_FORMAT, "spm model: unsupported wire type %d", wire);
    }
}

static int want_wire(int wire, int expected, uint32_t field, const char *msg) {
    if (wire != expected)
        return ei_set_error(EI_ERR_FORMAT, "spm model: %s field %u has wire type %d, expected %d", msg, field, wire,
                            expected);
    return 0;
}

/* ================================================================== messages */

typedef struct spm_piece {
    pb_str piece;
    float score;
    int32_t type;
} spm_piece;

typedef struct spm_info {
    spm_piece *pieces;
    int32_t n_pieces, cap_pieces;
    int32_t model_type;        /* 1 unigram (default), 2 BPE, 3 word, 4 char */
    int32_t byte_fallback, treat_ws_as_suffix;
    pb_str unk_piece, bos_piece, eos_piece;
    pb_str norm_name, charsmap, denorm_charsmap;
    int32_t add_dummy_prefix, remove_extra_ws, escape_ws;
} spm_info;

static int parse_piece(pb_str msg, spm_piece *out) {
    pb r = {(const uint8_t *)msg.s, (const uint8_t *)msg.s + msg.n};
    out->piece.s = NULL;
    out->piece.n = 0;
    out->score = 0.0f;
    out->type = EI_TOKTYPE_NORMAL;
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0, rc;
        if ((rc = pb_key(&r, &f, &w)) < 0) return rc;
        if (f == 1) {
            if ((rc = want_wire(w, WT_LEN, f, "SentencePiece")) < 0 || (rc = pb_bytes(&r, &out->piece)) < 0) return rc;
        } else if (f == 2) {
            uint32_t bits = 0;
            if ((rc = want_wire(w, WT_FIXED32, f, "SentencePiece")) < 0 || (rc = pb_fixed32(&r, &bits)) < 0) return rc;
            memcpy(&out->score, &bits, sizeof bits);
        } else if (f == 3) {
            uint64_t v = 0;
            if ((rc = want_wire(w, WT_VARINT, f, "SentencePiece")) < 0 || (rc = pb_varint(&r, &v)) < 0) return rc;
            out->type = v > 100 ? -1 : (int32_t)v;
        } else if ((rc = pb_skip(&r, w)) < 0) {
            return rc;
        }
    }
    return 0;
}

static int parse_trainer(pb_str msg, spm_info *m) {
    pb r = {(const uint8_t *)msg.s, (const uint8_t *)msg.s + msg.n};
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0, rc;
        uint64_t v = 0;
        if ((rc = pb_key(&r, &f, &w)) < 0) return rc;
        if (f == 3 || f == 24 || f == 35) {
            if ((rc = want_wire(w, WT_VARINT, f, "TrainerSpec")) < 0 || (rc = pb_varint(&r, &v)) < 0) return rc;
            int32_t x = v > 100 ? 100 : (int32_t)v;
            if (f == 3) m->model_type = x;
            else if (f == 24) m->treat_ws_as_suffix = x != 0;
            else m->byte_fallback = x != 0;
        } else if (f == 45 || f == 46 || f == 47) {
            pb_str *dst = f == 45 ? &m->unk_piece : f == 46 ? &m->bos_piece : &m->eos_piece;
            if ((rc = want_wire(w, WT_LEN, f, "TrainerSpec")) < 0 || (rc = pb_bytes(&r, dst)) < 0) return rc;
        } else if ((rc = pb_skip(&r, w)) < 0) {
            return rc;
        }
    }
    return 0;
}

/* Reads a NormalizerSpec; `denorm` = it is the denormalizer, of which only the charsmap matters. */
static int parse_normalizer(pb_str msg, spm_info *m, int denorm) {
    pb r = {(const uint8_t *)msg.s, (const uint8_t *)msg.s + msg.n};
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0, rc;
        uint64_t v = 0;
        if ((rc = pb_key(&r, &f, &w)) < 0) return rc;
        if (f == 1 || f == 2) {
            pb_str *dst = denorm ? (f == 2 ? &m->denorm_charsmap : NULL) : (f == 1 ? &m->norm_name : &m->charsmap);
            pb_str tmp = {0};
            if ((rc = want_wire(w, WT_LEN, f, "NormalizerSpec")) < 0 || (rc = pb_bytes(&r, dst ? dst : &tmp)) < 0)
                return rc;
        } else if (!denorm && (f == 3 || f == 4 || f == 5)) {
            if ((rc = want_wire(w, WT_VARINT, f, "NormalizerSpec")) < 0 || (rc = pb_varint(&r, &v)) < 0) return rc;
            if (f == 3) m->add_dummy_prefix = v != 0;
            else if (f == 4) m->remove_extra_ws = v != 0;
            else m->escape_ws = v != 0;
        } else if ((rc = pb_skip(&r, w)) < 0) {
            return rc;
        }
    }
    return 0;
}

static int add_piece(spm_info *m, pb_str msg) {
    if (m->n_pieces == m->cap_pieces) {
        if (m->cap_pieces > (1 << 28)) return ei_set_error(EI_ERR_FORMAT, "spm model: too many pieces");
        int32_t cap = m->cap_pieces ? m->cap_pieces * 2 : 1024;
        spm_piece *p = realloc(m->pieces, (size_t)cap * sizeof *p);
        if (!p) return ei_set_error(EI_ERR_NOMEM, "spm model: out of memory (%d pieces)", cap);
        m->pieces = p;
        m->cap_pieces = cap;
    }
    int rc = parse_piece(msg, &m->pieces[m->n_pieces]);
    if (rc < 0) return rc;
    m->n_pieces++;
    return 0;
}

static int parse_model(const void *data, size_t size, spm_info *m) {
    pb r = {(const uint8_t *)data, (const uint8_t *)data + size};
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0, rc;
        pb_str s = {0};
        if ((rc = pb_key(&r, &f, &w)) < 0) return rc;
        if (f == 1 || f == 2 || f == 3 || f == 5) {
            if ((rc = want_wire(w, WT_LEN, f, "ModelProto")) < 0 || (rc = pb_bytes(&r, &s)) < 0) return rc;
            if (f == 1) rc = add_piece(m, s);
            else if (f == 2) rc = parse_trainer(s, m);
            else rc = parse_normalizer(s, m, f == 5);
            if (rc < 0) return rc;
        } else if ((rc = pb_skip(&r, w)) < 0) {
            return rc;
        }
    }
    return 0;
}

/* ================================================================== validation -> ei_vocab_desc */

static int str_eq(pb_str a, const char *b) { return a.n == strlen(b) && memcmp(a.s, b, a.n) == 0; }

/* Id of the CONTROL piece with text name (sentencepiece's bos_id()/eos_id()), -1 if none. */
static int32_t find_control(const spm_info *m, pb_str name, const char *dflt) {
    for (int32_t i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        if (p->type != EI_TOKTYPE_CONTROL) continue;
        /* An empty or absent trainer_spec piece name means the default, as in ModelInterface. */
        if (name.n ? (p->piece.n == name.n && memcmp(p->piece.s, name.s, name.n) == 0) : str_eq(p->piece, dflt))
            return i;
    }
    return -1;
}

/* Refuses what the tokenizer cannot reproduce exactly (rather than tokenizing differently). */
static int check_supported(const spm_info *m) {
    if (m->charsmap.n > 0) {
        int n = m->norm_name.n > 64 ? 64 : (int)m->norm_name.n;
        return ei_set_error(EI_ERR_UNSUPPORTED,
                            "spm model: normalization rule '%.*s' is not supported (only identity, no "
                            "precompiled_charsmap); retrain with --normalization_rule_name=identity",
                            n, m->norm_name.s ? m->norm_name.s : "");
    }
    if (m->denorm_charsmap.n > 0)
        return ei_set_error(EI_ERR_UNSUPPORTED, "spm model: a denormalization rule is not supported");
    if (m->model_type != 1 && m->model_type != 2)
        return ei_set_error(EI_ERR_UNSUPPORTED, "spm model: model_type %d is not supported (only unigram or BPE)",
                            m->model_type);
    if (m->treat_ws_as_suffix)
        return ei_set_error(EI_ERR_UNSUPPORTED, "spm model: treat_whitespace_as_suffix is not supported");
    if (!m->escape_ws)
        return ei_set_error(EI_ERR_UNSUPPORTED, "spm model: escape_whitespaces=false is not supported");
    return 0;
}

/* Checks the pieces the way sentencepiece's InitializePieces does; returns the unk id. */
static int check_pieces(const spm_info *m, int32_t *unk_id) {
    *unk_id = -1;
    if (m->n_pieces == 0) return ei_set_error(EI_ERR_FORMAT, "spm model: no pieces (empty vocabulary)");
    for (int32_t i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        if (p->piece.n == 0) return ei_set_error(EI_ERR_FORMAT, "spm model: piece %d is empty", i);
        if (p->piece.n > 0x7fffffff) return ei_set_error(EI_ERR_FORMAT, "spm model: piece %d too long", i);
        if (p->type < EI_TOKTYPE_NORMAL || p->type > EI_TOKTYPE_BYTE)
            return ei_set_error(EI_ERR_FORMAT, "spm model: piece %d has unknown type %d", i, p->type);
        if (p->type == EI_TOKTYPE_UNKNOWN) {
            if (*unk_id >= 0) return ei_set_error(EI_ERR_FORMAT, "spm model: two unknown pieces (%d, %d)", *unk_id, i);
            *unk_id = i;
        }
        if (p->type == EI_TOKTYPE_BYTE && !m->byte_fallback)
            return ei_set_error(EI_ERR_FORMAT, "spm model: byte piece %d although byte_fallback is false", i);
    }
    if (*unk_id < 0) return ei_set_error(EI_ERR_FORMAT, "spm model: no unknown piece (<unk>) defined");
    return 0;
}

int ei_tokenizer_load_spm_buffer(const void *data, size_t size, ei_tokenizer **out) {
    if (!out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenizer_load_spm_buffer: out is NULL");
    *out = NULL;
    if (!data && size) return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenizer_load_spm_buffer: data is NULL");
    spm_info m = {.model_type = 1, .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    const char **pieces = NULL;
    int32_t *lens = NULL, *types = NULL;
    float *scores = NULL;
    int32_t unk_id;
    int rc = parse_model(data, size, &m);
    if (rc == 0) rc = check_supported(&m);
    if (rc == 0) rc = check_pieces(&m, &unk_id);
    if (rc == 0) {
        size_t n = (size_t)m.n_pieces;
        pieces = malloc(n * sizeof *pieces);
        lens = malloc(n * sizeof *lens);
        types = malloc(n * sizeof *types);
        scores = malloc(n * sizeof *scores);
        if (!pieces || !lens || !types || !scores) rc = ei_set_error(EI_ERR_NOMEM, "spm model: out of memory");
    }
    if (rc == 0) {
        for (int32_t i = 0; i < m.n_pieces; i++) {
            pieces[i] = m.pieces[i].piece.s;
            lens[i] = (int32_t)m.pieces[i].piece.n;
            types[i] = m.pieces[i].type;
            scores[i] = m.pieces[i].score;
        }
        ei_vocab_desc d = {
            .n_vocab = m.n_pieces,
            .pieces = pieces,
            .piece_lens = lens,
            .scores = scores,
            .types = types,
            .algo = m.model_type == 2 ? EI_TOK_BPE : EI_TOK_UNIGRAM,
            .bos_id = find_control(&m, m.bos_piece, "<s>"),
            .eos_id = find_control(&m, m.eos_piece, "</s>"),
            .unk_id = unk_id,
            .add_dummy_prefix = m.add_dummy_prefix,
            .remove_extra_whitespaces = m.remove_extra_ws,
            .byte_fallback = m.byte_fallback,
        };
        rc = ei_tokenizer_create(&d, out);
    }
    free(pieces);
    free(lens);
    free(types);
    free(scores);
    free(m.pieces);
    return rc;
}

int ei_tokenizer_load_spm_file(const char *path, ei_tokenizer **out) {
    if (!out || !path) return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenizer_load_spm_file: NULL path or out");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ei_set_error(EI_ERR_IO, "spm model %s: cannot open", path);
    char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return ei_set_error(EI_ERR_IO, "spm model %s: cannot seek", path);
    }
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return ei_set_error(EI_ERR_NOMEM, "spm model %s: out of memory (%ld bytes)", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return ei_set_error(EI_ERR_IO, "spm model %s: short read (%zu of %ld bytes)", path, got, size);
    }
    int rc = ei_tokenizer_load_spm_buffer(buf, (size_t)size, out);
    free(buf);
    if (rc < 0) {
        /* Prefix the path for context, keeping the reason. */
        char msg[400];
        snprintf(msg, sizeof msg, "%s", ei_last_error());
        ei_set_error(rc, "%s: %s", path, msg);
    }
    return rc;
}
