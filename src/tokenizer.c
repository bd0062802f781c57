/* tokenizer.c — SentencePiece-compatible tokenizer: vocabulary tables, encode (BPE and unigram), decode.
 *
 * Parity target: the sentencepiece library (v0.1.97, Debian's python3-sentencepiece). Each step below
 * mirrors one piece of it, so that ids are identical, not merely "equally good":
 *   normalize()      <- normalizer.cc Normalizer::Normalize with an empty charsmap (identity rule)
 *   encode_bpe()     <- bpe_model.cc Model::SampleEncode (alpha = 0)
 *   encode_unigram() <- unigram_model.cc Model::EncodeOptimized (the default encoder)
 *   emit_piece()     <- sentencepiece_processor.cc PopulateSentencePieceText (unk runs, byte fallback)
 *   dec_push()       <- sentencepiece_processor.cc Decode (leading-space rule, byte runs, U+FFFD)
 * Pieces are split in two classes like sentencepiece's two maps: "matchable" (NORMAL, USER_DEFINED,
 * UNUSED: may be produced from text) and "reserved" (CONTROL, UNKNOWN, BYTE: never produced from text).
 */
#include "tokenizer.h"
#include "error.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_SYM "\xe2\x96\x81" /* U+2581, sentencepiece's escaped space */
#define SPACE_SYM_LEN 3
#define UNK_SURFACE " \xe2\x81\x87 " /* sentencepiece's default unk_surface " ⁇ " */
#define UNK_NOID (-2) /* an unknown char in a vocabulary without an unk piece */

enum { CLS_MATCH = 0, CLS_RESERVED = 1 };

typedef struct trie_edge {
    uint32_t parent; /* node the edge leaves */
    uint32_t child;  /* 0 = empty slot (the root is never a child) */
    uint8_t byte;
} trie_edge;

struct ei_tokenizer {
    int32_t n_vocab;
    char *blob;           /* every piece, concatenated */
    uint32_t *off;        /* n_vocab + 1 offsets into blob */
    float *scores;        /* n_vocab */
    uint8_t *types;       /* n_vocab enum ei_tok_type */
    int32_t algo, bos_id, eos_id, unk_id;
    int add_dummy_prefix, remove_extra_ws, byte_fallback;
    int32_t byte_ids[256]; /* <0xNN> piece of each byte, -1 if absent */
    int has_user_defined;
    int32_t n_unused;     /* UNUSED pieces (BPE re-segments them) */
    int32_t *unused_idx;  /* n_vocab: dense index of an UNUSED piece, -1 otherwise (NULL if none) */
    float min_score, max_score; /* over NORMAL pieces, initialised like sentencepiece (FLT_MAX, FLT_MIN) */
    int chunkable;        /* no piece spans a "non-space | ▁" boundary: long texts are encoded in pieces there */
    size_t chunk_bytes;   /* pieces are at least this long (normalized bytes) */

    int32_t *slots;       /* piece hash table: piece id or -1 */
    uint32_t slot_mask;

    trie_edge *edges;     /* trie over matchable pieces, edges hashed by (parent, byte) */
    uint32_t edge_mask;
    int32_t *node_id;     /* n_nodes: matchable piece ending at that node, -1 if none */
    uint32_t n_nodes;
};

/* ================================================================== small helpers */

static int piece_class(uint8_t type) {
    return (type == EI_TOKTYPE_NORMAL || type == EI_TOKTYPE_USER_DEFINED || type == EI_TOKTYPE_UNUSED)
               ? CLS_MATCH
               : CLS_RESERVED;
}

static const char *piece_ptr(const ei_tokenizer *t, int32_t id) { return t->blob + t->off[id]; }
static uint32_t piece_len(const ei_tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id]; }

static uint32_t hash_bytes(const char *s, size_t n, uint32_t seed) {
    uint32_t h = 2166136261u ^ seed; /* FNV-1a: pieces are short, this is plenty */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static uint32_t hash_edge(uint32_t parent, uint8_t byte) {
    uint32_t h = parent * 0x9E3779B1u + byte * 0x85EBCA77u;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    return h ^ (h >> 15);
}

/* Byte length of the UTF-8 char whose lead byte is c, as sentencepiece's OneCharLen (input is valid). */
static int utf8_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

/* Offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no overlongs,
 * no surrogates, <= U+10FFFF), or n when s is valid. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (n - i - 1 < need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

/* Growable int32 array for encode output. */
typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return ei_set_error(EI_ERR_NOMEM, "tokenize: out of memory (%zu ids)", cap);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ================================================================== lookup tables */

/* Id of the piece s[0..n) in class cls, -1 if absent. */
static int32_t lookup_piece(const ei_tokenizer *t, int cls, const char *s, size_t n) {
    uint32_t i = hash_bytes(s, n, (uint32_t)cls) & t->slot_mask;
    for (;;) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (piece_class(t->types[id]) == cls && piece_len(t, id) == n && memcmp(piece_ptr(t, id), s, n) == 0)
            return id;
        i = (i + 1) & t->slot_mask;
    }
}

/* sentencepiece's PieceToId: reserved pieces first, then matchable ones, else unk. */
static int32_t piece_to_id(const ei_tokenizer *t, const char *s, size_t n) {
    int32_t id = lookup_piece(t, CLS_RESERVED, s, n);
    if (id < 0) id = lookup_piece(t, CLS_MATCH, s, n);
    if (id < 0) id = t->unk_id >= 0 ? t->unk_id : UNK_NOID;
    return id;
}

/* Child of trie node `node` along `byte`, 0 if none. */
static uint32_t trie_child(const ei_tokenizer *t, uint32_t node, uint8_t byte) {
    uint32_t i = hash_edge(node, byte) & t->edge_mask;
    for (;;) {
        const trie_edge *e = &t->edges[i];
        if (e->child == 0) return 0;
        if (e->parent == node && e->byte == byte) return e->child;
        i = (i + 1) & t->edge_mask;
    }
}

static void trie_put_edge(trie_edge *edges, uint32_t mask, uint32_t parent, uint8_t byte, uint32_t child) {
    uint32_t i = hash_edge(parent, byte) & mask;
    while (edges[i].child != 0) i = (i + 1) & mask;
    edges[i].parent = parent;
    edges[i].byte = byte;
    edges[i].child = child;
}

/* Length of the longest USER_DEFINED piece that is a prefix of s[0..n), 0 if none (sentencepiece's
 * PrefixMatcher, used both by the normalizer on raw text and by BPE on normalized text). */
static size_t match_user_defined(const ei_tokenizer *t, const char *s, size_t n) {
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(t, node, (uint8_t)s[i]);
        if (!node) break;
        int32_t id = t->node_id[node];
        if (id >= 0 && t->types[id] == EI_TOKTYPE_USER_DEFINED) best = i + 1;
    }
    return best;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* Builds the piece hash table; refuses two pieces of the same class with the same text. */
static int build_piece_table(ei_tokenizer *t) {
    uint32_t cap = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->slots = malloc((size_t)cap * sizeof *t->slots);
    if (!t->slots) return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory (hash table)");
    memset(t->slots, 0xff, (size_t)cap * sizeof *t->slots);
    t->slot_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t n = piece_len(t, id);
        if (n == 0) continue; /* an empty piece can match nothing and decodes to nothing */
        int cls = piece_class(t->types[id]);
        int32_t dup = lookup_piece(t, cls, piece_ptr(t, id), n);
        if (dup >= 0)
            return ei_set_error(EI_ERR_FORMAT, "tokenizer: pieces %d and %d are both \"%.*s\"", dup, id, (int)n,
                                piece_ptr(t, id));
        uint32_t i = hash_bytes(piece_ptr(t, id), n, (uint32_t)cls) & t->slot_mask;
        while (t->slots[i] >= 0) i = (i + 1) & t->slot_mask;
        t->slots[i] = id;
    }
    return 0;
}

/* Builds the byte trie over matchable pieces. Nodes are numbered as created; the edge table is sized
 * from the real node count so a large vocabulary costs ~24 bytes per node. */
static int build_trie(ei_tokenizer *t) {
    uint64_t bound = 1;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (piece_class(t->types[id]) == CLS_MATCH) bound += piece_len(t, id);
    if (bound > 0x7fffffffu) return ei_set_error(EI_ERR_FORMAT, "tokenizer: vocabulary text too large");
    uint32_t cap = pow2_at_least(bound * 2);
    trie_edge *tmp = calloc(cap, sizeof *tmp);
    t->node_id = malloc((size_t)bound * sizeof *t->node_id);
    if (!tmp || !t->node_id) {
        free(tmp);
        return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory (trie)");
    }
    t->edges = tmp; /* trie_child() reads through t while building */
    t->edge_mask = cap - 1;
    t->node_id[0] = -1;
    t->n_nodes = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (piece_class(t->types[id]) != CLS_MATCH || piece_len(t, id) == 0) continue;
        const uint8_t *s = (const uint8_t *)piece_ptr(t, id);
        uint32_t node = 0;
        for (uint32_t i = 0; i < piece_len(t, id); i++) {
            uint32_t c = trie_child(t, node, s[i]);
            if (!c) {
                c = t->n_nodes++;
                t->node_id[c] = -1;
                trie_put_edge(tmp, t->edge_mask, node, s[i], c);
            }
            node = c;
        }
        t->node_id[node] = id;
    }
    /* Re-hash into a table sized for the real edge count. */
    uint32_t cap2 = pow2_at_least((uint64_t)t->n_nodes * 2);
    trie_edge *edges = calloc(cap2, sizeof *edges);
    if (!edges) return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory (trie)");
    for (uint32_t i = 0; i < cap; i++)
        if (tmp[i].child) trie_put_edge(edges, cap2 - 1, tmp[i].parent, tmp[i].byte, tmp[i].child);
    free(tmp);
    t->edges = edges;
    t->edge_mask = cap2 - 1;
    return 0;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Byte value of a "<0xNN>" piece (sentencepiece's PieceToByte: upper-case hex only), -1 otherwise. */
static int parse_byte_piece(const char *s, uint32_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int h = hex_digit(s[3]), l = hex_digit(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

/* ================================================================== create / free */

void ei_tokenizer_free(ei_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->scores);
    free(t->types);
    free(t->unused_idx);
    free(t->slots);
    free(t->edges);
    free(t->node_id);
    free(t);
}

static int check_special_id(int32_t id, int32_t n_vocab, const char *what) {
    if (id < -1 || id >= n_vocab)
        return ei_set_error(EI_ERR_FORMAT, "tokenizer: %s id %d out of range (vocabulary has %d pieces)", what, id,
                            n_vocab);
    return 0;
}

/* Copies desc's arrays into t. */
static int copy_vocab(ei_tokenizer *t, const ei_vocab_desc *d) {
    size_t total = 0;
    if (d->n_vocab <= 0) return ei_set_error(EI_ERR_FORMAT, "tokenizer: empty vocabulary");
    for (int32_t i = 0; i < d->n_vocab; i++) {
        if (d->piece_lens[i] < 0 || (d->piece_lens[i] > 0 && !d->pieces[i]))
            return ei_set_error(EI_ERR_FORMAT, "tokenizer: piece %d has a bad length %d", i, d->piece_lens[i]);
        total += (size_t)d->piece_lens[i];
        if (total > 0xffffffffu) return ei_set_error(EI_ERR_FORMAT, "tokenizer: vocabulary text too large");
    }
    t->blob = malloc(total ? total : 1);
    t->off = malloc(((size_t)d->n_vocab + 1) * sizeof *t->off);
    t->scores = malloc((size_t)d->n_vocab * sizeof *t->scores);
    t->types = malloc((size_t)d->n_vocab);
    if (!t->blob || !t->off || !t->scores || !t->types)
        return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory (%d pieces)", d->n_vocab);
    uint32_t o = 0;
    for (int32_t i = 0; i < d->n_vocab; i++) {
        t->off[i] = o;
        if (d->piece_lens[i]) memcpy(t->blob + o, d->pieces[i], (size_t)d->piece_lens[i]);
        o += (uint32_t)d->piece_lens[i];
        t->scores[i] = d->scores ? d->scores[i] : 0.0f;
        int32_t ty = d->types ? d->types[i] : EI_TOKTYPE_NORMAL;
        if (ty < EI_TOKTYPE_NORMAL || ty > EI_TOKTYPE_BYTE)
            return ei_set_error(EI_ERR_FORMAT, "tokenizer: piece %d has unknown type %d", i, ty);
        t->types[i] = (uint8_t)ty;
    }
    t->off[d->n_vocab] = o;
    return 0;
}

/* 1 if the piece holds a ▁ right after something that is not a ▁ ("a▁", "▁a▁"): such a piece could span the
 * boundaries where ei_tokenize cuts long texts. */
static int piece_has_inner_space(const char *p, uint32_t n) {
    uint32_t i = 0;
    while (i + SPACE_SYM_LEN <= n && memcmp(p + i, SPACE_SYM, SPACE_SYM_LEN) == 0) i += SPACE_SYM_LEN;
    for (; i + SPACE_SYM_LEN <= n; i++)
        if (memcmp(p + i, SPACE_SYM, SPACE_SYM_LEN) == 0) return 1;
    return 0;
}

/* Derived tables: unk, byte pieces, UNUSED index, score range, whether long texts can be cut. */
static int index_vocab(ei_tokenizer *t) {
    if (t->unk_id >= 0) t->types[t->unk_id] = EI_TOKTYPE_UNKNOWN; /* the unk piece is never matched from text */
    for (int i = 0; i < 256; i++) t->byte_ids[i] = -1;
    t->min_score = FLT_MAX;
    t->max_score = FLT_MIN; /* sic: sentencepiece starts from FLT_MIN, the smallest positive float */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->types[id];
        if (ty == EI_TOKTYPE_UNKNOWN && t->unk_id < 0) t->unk_id = id;
        if (ty == EI_TOKTYPE_USER_DEFINED) t->has_user_defined = 1;
        if (ty == EI_TOKTYPE_UNUSED) t->n_unused++;
        if (ty == EI_TOKTYPE_NORMAL) {
            if (t->scores[id] < t->min_score) t->min_score = t->scores[id];
            if (t->scores[id] > t->max_score) t->max_score = t->scores[id];
        }
        if (ty == EI_TOKTYPE_BYTE) {
            int b = parse_byte_piece(piece_ptr(t, id), piece_len(t, id));
            if (b < 0)
                return ei_set_error(EI_ERR_FORMAT, "tokenizer: byte piece %d \"%.*s\" is not <0xNN>", id,
                                    (int)piece_len(t, id), piece_ptr(t, id));
            t->byte_ids[b] = id;
        }
    }
    t->chunkable = t->algo == EI_TOK_UNIGRAM || t->n_unused == 0;
    for (int32_t id = 0; id < t->n_vocab && t->chunkable; id++)
        if (piece_has_inner_space(piece_ptr(t, id), piece_len(t, id))) t->chunkable = 0;
    t->chunk_bytes = 1 << 16;
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_ids[b] < 0)
                return ei_set_error(EI_ERR_FORMAT, "tokenizer: byte_fallback is set but piece <0x%02X> is missing", b);
    if (t->n_unused) {
        t->unused_idx = malloc((size_t)t->n_vocab * sizeof *t->unused_idx);
        if (!t->unused_idx) return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory");
        int32_t k = 0;
        for (int32_t id = 0; id < t->n_vocab; id++)
            t->unused_idx[id] = t->types[id] == EI_TOKTYPE_UNUSED ? k++ : -1;
    }
    return 0;
}

int ei_tokenizer_create(const ei_vocab_desc *d, ei_tokenizer **out) {
    if (!out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenizer_create: out is NULL");
    *out = NULL;
    if (!d) return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenizer_create: desc is NULL");
    if (d->n_vocab <= 0 || !d->pieces || !d->piece_lens)
        return ei_set_error(EI_ERR_FORMAT, "tokenizer: empty vocabulary (%d pieces)", d->n_vocab);
    if (d->algo != EI_TOK_BPE && d->algo != EI_TOK_UNIGRAM)
        return ei_set_error(EI_ERR_UNSUPPORTED, "tokenizer: algorithm %d is neither BPE (1) nor unigram (2)", d->algo);
    int rc;
    if ((rc = check_special_id(d->bos_id, d->n_vocab, "bos")) < 0 ||
        (rc = check_special_id(d->eos_id, d->n_vocab, "eos")) < 0 ||
        (rc = check_special_id(d->unk_id, d->n_vocab, "unk")) < 0)
        return rc;
    ei_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ei_set_error(EI_ERR_NOMEM, "tokenizer: out of memory");
    t->n_vocab = d->n_vocab;
    t->algo = d->algo;
    t->bos_id = d->bos_id;
    t->eos_id = d->eos_id;
    t->unk_id = d->unk_id;
    t->add_dummy_prefix = d->add_dummy_prefix != 0;
    t->remove_extra_ws = d->remove_extra_whitespaces != 0;
    t->byte_fallback = d->byte_fallback != 0;
    if ((rc = copy_vocab(t, d)) < 0 || (rc = index_vocab(t)) < 0 || (rc = build_piece_table(t)) < 0 ||
        (rc = build_trie(t)) < 0) {
        ei_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int32_t ei_tokenizer_n_vocab(const ei_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t ei_tokenizer_bos(const ei_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t ei_tokenizer_eos(const ei_tokenizer *t) { return t ? t->eos_id : -1; }

/* ================================================================== normalizer */

/* Length of the next normalizer unit at s: a user-defined piece, else one UTF-8 char. */
static size_t next_unit(const ei_tokenizer *t, const char *s, size_t n) {
    size_t m = t->has_user_defined ? match_user_defined(t, s, n) : 0;
    if (m) return m;
    size_t c = (size_t)utf8_len((uint8_t)s[0]);
    return c < n ? c : n;
}

/* Writes the normalized form of in[0..n) to out (capacity 3 * n + 3) and returns its length: spaces
 * become U+2581, a U+2581 is prepended when add_dummy_prefix, and with remove_extra_whitespaces leading,
 * trailing and repeated spaces go. Only ' ' is whitespace here, as in sentencepiece's identity rule. */
static size_t normalize(const ei_tokenizer *t, const char *in, size_t n, char *out) {
    size_t i = 0, o = 0;
    if (t->remove_extra_ws)
        while (i < n && in[i] == ' ' && next_unit(t, in + i, n - i) == 1) i++;
    if (i == n) return 0;
    if (t->add_dummy_prefix) {
        memcpy(out, SPACE_SYM, SPACE_SYM_LEN);
        o = SPACE_SYM_LEN;
    }
    int prev_space = t->remove_extra_ws;
    while (i < n) {
        size_t u = next_unit(t, in + i, n - i);
        const char *sp = in + i;
        size_t sn = u;
        while (prev_space && sn > 0 && sp[0] == ' ') sp++, sn--;
        if (sn) {
            for (size_t k = 0; k < sn; k++) {
                if (sp[k] == ' ') {
                    memcpy(out + o, SPACE_SYM, SPACE_SYM_LEN);
                    o += SPACE_SYM_LEN;
                } else {
                    out[o++] = sp[k];
                }
            }
            prev_space = sp[sn - 1] == ' ';
        }
        i += u;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws)
        while (o >= SPACE_SYM_LEN && memcmp(out + o - SPACE_SYM_LEN, SPACE_SYM, SPACE_SYM_LEN) == 0) o -= SPACE_SYM_LEN;
    return o;
}

/* ================================================================== model output -> ids */

/* Turns the model's pieces into ids like PopulateSentencePieceText: an unknown piece becomes its UTF-8
 * bytes with byte_fallback, otherwise a run of unknown pieces becomes one unk id. */
typedef struct emitter {
    const ei_tokenizer *t;
    ivec *ids;
    int prev_unk;
    size_t text_off; /* offset of the piece in the normalized text, for error messages */
} emitter;

static int emit_piece(emitter *e, const char *piece, size_t len, int32_t id) {
    const ei_tokenizer *t = e->t;
    int is_unk = id == UNK_NOID || (id >= 0 && t->types[id] == EI_TOKTYPE_UNKNOWN);
    int rc = 0;
    if (is_unk && t->byte_fallback) {
        for (size_t i = 0; i < len && rc == 0; i++) rc = ivec_push(e->ids, t->byte_ids[(uint8_t)piece[i]]);
    } else if (!(is_unk && e->prev_unk)) {
        if (id == UNK_NOID)
            return ei_set_error(EI_ERR_UNSUPPORTED,
                                "tokenize: \"%.*s\" (normalized offset %zu) is not in the vocabulary, which has "
                                "neither an unk piece nor byte fallback",
                                (int)len, piece, e->text_off);
        rc = ivec_push(e->ids, id);
    }
    e->prev_unk = is_unk;
    e->text_off += len;
    return rc;
}

/* ================================================================== BPE */

typedef struct bpe_sym {
    int32_t prev, next; /* neighbours in the live list, -1 at the ends */
    uint32_t start, len; /* bytes of the normalized text; len 0 = merged away */
    uint8_t freeze;      /* user-defined piece: never merged */
} bpe_sym;

typedef struct bpe_pair {
    float score;
    int32_t left, right;
    uint32_t size;       /* byte length of the merged piece, detects stale entries */
} bpe_pair;

typedef struct bpe_state {
    const ei_tokenizer *t;
    const char *text;
    bpe_sym *sym;
    bpe_pair *heap;
    size_t n_heap, cap_heap;
    int32_t *rev_left;   /* per UNUSED piece: left part length of its latest candidate merge, -1 none */
} bpe_state;

/* Heap order = sentencepiece's agenda: higher score first, then the leftmost pair. */
static int pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(bpe_state *s, bpe_pair p) {
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 256;
        bpe_pair *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return ei_set_error(EI_ERR_NOMEM, "tokenize: out of memory (BPE agenda)");
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &s->heap[up])) break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = p;
    return 0;
}

static bpe_pair heap_pop(bpe_state *s) {
    bpe_pair top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!pair_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Queues the merge of symbols l and r if their concatenation is a matchable piece. */
static int bpe_maybe_add(bpe_state *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || s->sym[l].freeze || s->sym[r].freeze) return 0;
    const ei_tokenizer *t = s->t;
    uint32_t size = s->sym[l].len + s->sym[r].len;
    int32_t id = lookup_piece(t, CLS_MATCH, s->text + s->sym[l].start, size);
    if (id < 0) return 0;
    bpe_pair p = {t->scores[id], l, r, size};
    if (t->types[id] == EI_TOKTYPE_UNUSED) s->rev_left[t->unused_idx[id]] = (int32_t)s->sym[l].len;
    return heap_push(s, p);
}

/* Emits piece text[start..start+len), splitting UNUSED pieces back into the merge that formed them. */
static int bpe_resegment(bpe_state *s, emitter *e, uint32_t start, uint32_t len) {
    const ei_tokenizer *t = s->t;
    int32_t id = piece_to_id(t, s->text + start, len);
    if (id >= 0 && t->types[id] == EI_TOKTYPE_UNUSED) {
        int32_t k = s->rev_left[t->unused_idx[id]];
        if (k > 0 && (uint32_t)k < len) {
            int rc = bpe_resegment(s, e, start, (uint32_t)k);
            return rc < 0 ? rc : bpe_resegment(s, e, start + (uint32_t)k, len - (uint32_t)k);
        }
    }
    return emit_piece(e, s->text + start, len, id);
}

static int encode_bpe(const ei_tokenizer *t, const char *text, size_t n, emitter *e) {
    if (n == 0) return 0;
    bpe_state s = {.t = t, .text = text};
    int rc = 0;
    s.sym = malloc(n * sizeof *s.sym);
    if (t->n_unused) {
        s.rev_left = malloc((size_t)t->n_unused * sizeof *s.rev_left);
        if (s.rev_left) memset(s.rev_left, 0xff, (size_t)t->n_unused * sizeof *s.rev_left);
    }
    if (!s.sym || (t->n_unused && !s.rev_left)) {
        rc = ei_set_error(EI_ERR_NOMEM, "tokenize: out of memory (%zu bytes of text)", n);
        goto done;
    }
    /* Split into characters; a user-defined piece is one frozen symbol. */
    int32_t n_sym = 0;
    for (size_t i = 0; i < n;) {
        size_t m = t->has_user_defined ? match_user_defined(t, text + i, n - i) : 0;
        bpe_sym *y = &s.sym[n_sym];
        y->freeze = m > 0;
        if (!m) {
            m = (size_t)utf8_len((uint8_t)text[i]);
            if (m > n - i) m = n - i;
        }
        y->start = (uint32_t)i;
        y->len = (uint32_t)m;
        y->prev = n_sym - 1;
        i += m;
        y->next = i < n ? n_sym + 1 : -1;
        n_sym++;
    }
    for (int32_t i = 1; i < n_sym && rc == 0; i++) rc = bpe_maybe_add(&s, i - 1, i);
    while (rc == 0 && s.n_heap) {
        bpe_pair top = heap_pop(&s);
        bpe_sym *l = &s.sym[top.left], *r = &s.sym[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) s.sym[r->next].prev = top.left;
        r->len = 0;
        rc = bpe_maybe_add(&s, l->prev, top.left);
        if (rc == 0) rc = bpe_maybe_add(&s, top.left, l->next);
    }
    for (int32_t i = 0; rc == 0 && i != -1; i = s.sym[i].next) rc = bpe_resegment(&s, e, s.sym[i].start, s.sym[i].len);
done:
    free(s.sym);
    free(s.heap);
    free(s.rev_left);
    return rc;
}

/* ================================================================== unigram */

typedef struct uni_node {
    float score;   /* best path score ending here */
    int32_t start; /* start of the last piece of that path, -1 = not reached yet */
    int32_t id;
} uni_node;

/* Viterbi over the pieces, exactly as EncodeOptimized: candidates are compared in double against the
 * float-stored best (sentencepiece's types), later/shorter candidates win only when strictly better. *carry is
 * the path score at text[0] (0 for a whole text) and receives the score at text[n], so a text cut where no piece
 * can span gives the same path, piece by piece. */
static int encode_unigram(const ei_tokenizer *t, const char *text, size_t n, emitter *e, float *carry) {
    if (n == 0) return 0;
    if (n > 0x7ffffffe) return ei_set_error(EI_ERR_RANGE, "tokenize: text too long (%zu bytes)", n);
    uni_node *best = malloc((n + 1) * sizeof *best);
    if (!best) return ei_set_error(EI_ERR_NOMEM, "tokenize: out of memory (%zu bytes of text)", n);
    for (size_t i = 0; i <= n; i++) best[i].start = -1, best[i].score = 0, best[i].id = -1;
    best[0].score = *carry; /* the best score of the text before this piece: same float roundings as one pass */
    const float unk_score = t->min_score - 10.0f;
    const int32_t unk_id = t->unk_id >= 0 ? t->unk_id : UNK_NOID;
    size_t at = 0;
    while (at < n) {
        const float till = best[at].score;
        int has_single = 0;
        size_t mblen = (size_t)utf8_len((uint8_t)text[at]);
        if (mblen > n - at) mblen = n - at;
        uint32_t node = 0;
        for (size_t k = at; k < n;) {
            node = trie_child(t, node, (uint8_t)text[k]);
            if (!node) break;
            k++;
            int32_t id = t->node_id[node];
            if (id < 0 || t->types[id] == EI_TOKTYPE_UNUSED) continue;
            size_t length = k - at;
            double score = t->types[id] == EI_TOKTYPE_USER_DEFINED ? (double)((float)length * t->max_score) - 0.1
                                                                   : (double)t->scores[id];
            double cand = score + (double)till;
            uni_node *dst = &best[k];
            if (dst->start == -1 || cand > (double)dst->score) {
                dst->score = (float)cand;
                dst->start = (int32_t)at;
                dst->id = id;
            }
            if (length == mblen) has_single = 1;
        }
        if (!has_single) {
            uni_node *dst = &best[at + mblen];
            float cand = unk_score + till;
            if (dst->start == -1 || cand > dst->score) {
                dst->score = cand;
                dst->start = (int32_t)at;
                dst->id = unk_id;
            }
        }
        at += mblen;
    }
    /* Backtrack, then emit in text order. */
    size_t n_pieces = 0;
    for (size_t end = n; end > 0; end = (size_t)best[end].start) n_pieces++;
    int32_t *ends = malloc(n_pieces * sizeof *ends);
    int rc = 0;
    if (!ends) {
        rc = ei_set_error(EI_ERR_NOMEM, "tokenize: out of memory");
    } else {
        size_t k = n_pieces;
        for (size_t end = n; end > 0; end = (size_t)best[end].start) ends[--k] = (int32_t)end;
        for (size_t i = 0; i < n_pieces && rc == 0; i++) {
            const uni_node *b = &best[ends[i]];
            rc = emit_piece(e, text + b->start, (size_t)ends[i] - (size_t)b->start, b->id);
        }
    }
    *carry = best[n].score;
    free(ends);
    free(best);
    return rc;
}

/* ================================================================== encode API */

/* End of the piece of normalized text that starts at `at`: the first "non-space | ▁" boundary at least
 * chunk_bytes further, or n. No vocabulary piece spans such a boundary (t->chunkable), so encoding the pieces one
 * after the other gives the ids of the whole text while the work buffers (~20 bytes per byte) stay bounded. */
static size_t chunk_end(const ei_tokenizer *t, const char *norm, size_t n, size_t at) {
    if (!t->chunkable) return n;
    size_t i = at + (t->chunk_bytes > SPACE_SYM_LEN ? t->chunk_bytes : SPACE_SYM_LEN);
    for (; i + SPACE_SYM_LEN <= n; i++)
        if (memcmp(norm + i, SPACE_SYM, SPACE_SYM_LEN) == 0 && memcmp(norm + i - SPACE_SYM_LEN, SPACE_SYM, SPACE_SYM_LEN))
            return i;
    return n;
}

void ei_tokenizer_set_chunk_bytes(ei_tokenizer *t, size_t bytes) {
    if (t) t->chunk_bytes = bytes;
}

int ei_tokenizer_chunkable(const ei_tokenizer *t) { return t && t->chunkable; }

int ei_tokenize(const ei_tokenizer *t, const char *text, int32_t len, int32_t flags, int32_t *ids, int32_t cap,
                int32_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len != 0) || (!ids && cap > 0) || cap < 0)
        return ei_set_error(EI_ERR_INVALID_ARG, "ei_tokenize: NULL tokenizer, text, ids or n_out");
    size_t n = len < 0 ? strlen(text) : (size_t)len;
    /* Worst case the work buffers take ~60 bytes per input byte (3x longer normalized text, 20-byte BPE
     * symbols): refuse what would overflow size_t on 32-bit targets (wasm32: ~67 MB of text). */
    if (n > SIZE_MAX / 64 - 1) return ei_set_error(EI_ERR_RANGE, "ei_tokenize: text too long (%zu bytes)", n);
    size_t bad = utf8_invalid_at((const uint8_t *)text, n);
    if (bad < n)
        return ei_set_error(EI_ERR_INVALID_UTF8, "ei_tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                            (uint8_t)text[bad]);
    char *norm = malloc(3 * n + SPACE_SYM_LEN + 1);
    if (!norm) return ei_set_error(EI_ERR_NOMEM, "ei_tokenize: out of memory (%zu bytes of text)", n);
    size_t nn = normalize(t, text, n, norm);
    ivec out = {0};
    emitter e = {.t = t, .ids = &out};
    int rc = 0;
    if ((flags & EI_TOKENIZE_ADD_BOS) && t->bos_id >= 0) rc = ivec_push(&out, t->bos_id);
    float carry = 0;
    for (size_t at = 0, end; rc == 0 && at < nn; at = end) {
        end = chunk_end(t, norm, nn, at);
        rc = t->algo == EI_TOK_BPE ? encode_bpe(t, norm + at, end - at, &e)
                                   : encode_unigram(t, norm + at, end - at, &e, &carry);
    }
    if (rc == 0 && (flags & EI_TOKENIZE_ADD_EOS) && t->eos_id >= 0) rc = ivec_push(&out, t->eos_id);
    free(norm);
    if (rc == 0) {
        if (out.n > INT32_MAX) {
            rc = ei_set_error(EI_ERR_RANGE, "ei_tokenize: %zu ids do not fit an int32 count", out.n);
        } else if (out.n > (size_t)cap) {
            *n_out = (int32_t)out.n;
            rc = ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "ei_tokenize: %zu ids do not fit in %d", out.n, cap);
        } else {
            if (out.n) memcpy(ids, out.v, out.n * sizeof *ids);
            *n_out = (int32_t)out.n;
        }
    }
    free(out.v);
    return rc;
}

/* ================================================================== decode */

/* Output sink that counts what it could not store, so callers learn the size they need. */
typedef struct sink {
    char *buf;
    size_t cap, len;
} sink;

static void sink_put(sink *s, const char *p, size_t n) {
    if (s->len < s->cap) {
        size_t k = s->cap - s->len < n ? s->cap - s->len : n;
        memcpy(s->buf + s->len, p, k);
    }
    s->len += n;
}

#define REPLACEMENT_CHAR "\xef\xbf\xbd"

/* Decoder state shared by ei_detokenize and ei_detok. `over` = the leading-space phase has ended
 * (sentencepiece's is_bos_ws turned false); pend = bytes of an unfinished code point from byte pieces. */
typedef struct dec_state {
    int over;
    int n_pend;
    uint8_t pend[4];
} dec_state;

/* Bytes of ordinary piece `id` in running text: U+2581 -> ' ', and while the leading-space phase lasts
 * one leading U+2581 goes when the model adds a dummy prefix or removes extra whitespace. Sets
 * *consumed_ws when that leading space counts as seen (sentencepiece's has_bos_ws). */
static void piece_text(const ei_tokenizer *t, int32_t id, int bos_phase, sink *out, int *consumed_ws) {
    const char *p = piece_ptr(t, id);
    size_t n = piece_len(t, id);
    *consumed_ws = 0;
    if (t->types[id] == EI_TOKTYPE_CONTROL) return;
    if (t->types[id] == EI_TOKTYPE_UNKNOWN) {
        sink_put(out, UNK_SURFACE, sizeof UNK_SURFACE - 1);
        return;
    }
    if (bos_phase && (t->add_dummy_prefix || t->remove_extra_ws) && n >= SPACE_SYM_LEN &&
        memcmp(p, SPACE_SYM, SPACE_SYM_LEN) == 0) {
        p += SPACE_SYM_LEN;
        n -= SPACE_SYM_LEN;
        *consumed_ws = !t->remove_extra_ws; /* with remove_extra_ws every leading space piece is dropped */
    }
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= SPACE_SYM_LEN && memcmp(p + i, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            sink_put(out, p + run, i - run);
            sink_put(out, " ", 1);
            i += SPACE_SYM_LEN;
            run = i;
        } else {
            i++;
        }
    }
    sink_put(out, p + run, n - run);
}

/* Emits the complete code points at the head of the pending bytes; an impossible sequence costs
 * one U+FFFD per byte, as sentencepiece's byte-piece decoding does. Keeps an unfinished prefix. */
static void dec_drain(dec_state *d, sink *out) {
    while (d->n_pend) {
        uint8_t c = d->pend[0];
        size_t need = c < 0x80 ? 1 : (c >= 0xC0 && c < 0xF8) ? (size_t)utf8_len(c) : 0;
        size_t take;
        if (need == 0) {
            take = 0;
        } else if ((size_t)d->n_pend < need) {
            int all_trail = 1;
            for (int i = 1; i < d->n_pend; i++) all_trail &= (d->pend[i] & 0xC0) == 0x80;
            if (all_trail) return; /* may still complete */
            take = 0;
        } else {
            take = utf8_invalid_at(d->pend, need) == need ? need : 0; /* = sentencepiece's DecodeUTF8 */
        }
        if (take) {
            sink_put(out, (const char *)d->pend, take);
        } else {
            sink_put(out, REPLACEMENT_CHAR, 3);
            take = 1;
        }
        memmove(d->pend, d->pend + take, (size_t)d->n_pend - take);
        d->n_pend -= (int)take;
    }
}

/* The byte run ended: whatever is pending can no longer complete. */
static void dec_end_run(dec_state *d, sink *out) {
    for (int i = 0; i < d->n_pend; i++) sink_put(out, REPLACEMENT_CHAR, 3);
    d->n_pend = 0;
}

/* Appends the text of token id (already range-checked). */
static void dec_push(const ei_tokenizer *t, dec_state *d, int32_t id, sink *out) {
    if (t->types[id] == EI_TOKTYPE_BYTE) {
        d->pend[d->n_pend++] = (uint8_t)parse_byte_piece(piece_ptr(t, id), piece_len(t, id));
        d->over = 1; /* a byte always yields text, which ends the leading-space phase */
        dec_drain(d, out);
        return;
    }
    dec_end_run(d, out);
    size_t before = out->len;
    int consumed_ws;
    piece_text(t, id, !d->over, out, &consumed_ws);
    if (consumed_ws || out->len > before) d->over = 1;
}

static int check_id(const ei_tokenizer *t, int32_t id, const char *fn) {
    if (id < 0 || id >= t->n_vocab)
        return ei_set_error(EI_ERR_RANGE, "%s: token id %d out of range [0, %d)", fn, id, t->n_vocab);
    return 0;
}

int ei_token_to_bytes(const ei_tokenizer *t, int32_t id, int32_t first, char *buf, int32_t cap, int32_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!buf && cap > 0) || cap < 0)
        return ei_set_error(EI_ERR_INVALID_ARG, "ei_token_to_bytes: NULL tokenizer, buf or n_out");
    int rc = check_id(t, id, "ei_token_to_bytes");
    if (rc < 0) return rc;
    sink s = {buf, (size_t)cap, 0};
    if (t->types[id] == EI_TOKTYPE_BYTE) {
        char b = (char)parse_byte_piece(piece_ptr(t, id), piece_len(t, id));
        sink_put(&s, &b, 1);
    } else {
        int consumed_ws;
        piece_text(t, id, first != 0, &s, &consumed_ws);
    }
    *n_out = (int32_t)s.len;
    if (s.len > (size_t)cap)
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "ei_token_to_bytes: %zu bytes do not fit in %d", s.len, cap);
    return 0;
}

/* On success *n_out = text bytes (without the NUL); on BUFFER_TOO_SMALL *n_out = capacity needed
 * (with the NUL). */
int ei_detokenize(const ei_tokenizer *t, const int32_t *ids, int32_t n, char *buf, int32_t cap, int32_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!ids && n > 0) || n < 0 || (!buf && cap > 0) || cap < 0)
        return ei_set_error(EI_ERR_INVALID_ARG, "ei_detokenize: NULL tokenizer, ids, buf or n_out");
    for (int32_t i = 0; i < n; i++) {
        int rc = check_id(t, ids[i], "ei_detokenize");
        if (rc < 0) return rc;
    }
    sink s = {buf, cap > 0 ? (size_t)cap - 1 : 0, 0}; /* keep room for the NUL */
    dec_state d = {0};
    for (int32_t i = 0; i < n; i++) dec_push(t, &d, ids[i], &s);
    dec_end_run(&d, &s);
    if (s.len + 1 > (size_t)cap) {
        *n_out = s.len + 1 > INT32_MAX ? INT32_MAX : (int32_t)(s.len + 1);
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "ei_detokenize: %zu bytes do not fit in %d", s.len + 1, cap);
    }
    buf[s.len] = 0;
    *n_out = (int32_t)s.len;
    return 0;
}

/* ================================================================== streaming detokenizer */

/* ei_detok keeps its pending bytes in pending[0..3]; at_start is the "leading-space phase not over" flag. */
void ei_detok_init(ei_detok *d, const ei_tokenizer *tok) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->at_start = 1;
}

static dec_state detok_load(const ei_detok *d) {
    dec_state s = {0};
    s.over = !d->at_start;
    s.n_pend = d->n_pending;
    memcpy(s.pend, d->pending, 4);
    return s;
}

static void detok_store(ei_detok *d, const dec_state *s) {
    memcpy(d->pending, s->pend, 4);
    d->n_pending = s->n_pend;
    d->at_start = !s->over;
}

/* Runs one step on a copy of the state and commits it only when the output fits, so a caller that got
 * BUFFER_TOO_SMALL can retry with a bigger buffer. id < 0 = flush. */
static int detok_step(ei_detok *d, int32_t id, char *buf, int32_t cap, int32_t *n_out, const char *fn) {
    if (n_out) *n_out = 0;
    if (!d || !d->tok || !n_out || (!buf && cap > 0) || cap < 0)
        return ei_set_error(EI_ERR_INVALID_ARG, "%s: NULL detokenizer, tokenizer, buf or n_out", fn);
    if (d->n_pending < 0 || d->n_pending > 3)
        return ei_set_error(EI_ERR_INVALID_ARG, "%s: detokenizer state is corrupt", fn);
    if (id != -1) {
        int rc = check_id(d->tok, id, fn);
        if (rc < 0) return rc;
    }
    dec_state s = detok_load(d);
    sink out = {buf, cap > 0 ? (size_t)cap - 1 : 0, 0};
    if (id == -1) dec_end_run(&s, &out);
    else dec_push(d->tok, &s, id, &out);
    if (out.len + 1 > (size_t)cap) {
        *n_out = (int32_t)(out.len + 1);
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "%s: %zu bytes do not fit in %d", fn, out.len + 1, cap);
    }
    buf[out.len] = 0;
    *n_out = (int32_t)out.len;
    detok_store(d, &s);
    if (id != -1) d->n_pushed++;
    return 0;
}

int ei_detok_push(ei_detok *d, int32_t id, char *buf, int32_t cap, int32_t *n_out) {
    if (id == -1) return ei_set_error(EI_ERR_RANGE, "ei_detok_push: token id -1 out of range");
    return detok_step(d, id, buf, cap, n_out, "ei_detok_push");
}

int ei_detok_flush(ei_detok *d, char *buf, int32_t cap, int32_t *n_out) {
    return detok_step(d, -1, buf, cap, n_out, "ei_detok_flush");
}
