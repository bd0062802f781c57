/* tokenizer.h — internal constructor for the SentencePiece-compatible tokenizer.
 * The public encode/decode API is in edgeinf.h. The vocabulary comes from GGUF (tokenizer.ggml.*,
 * converted by model.c) or from a SentencePiece .model protobuf (spm_model.c). */
#ifndef EI_TOKENIZER_H
#define EI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "edgeinf.h"

enum ei_tok_algo { EI_TOK_BPE = 1, EI_TOK_UNIGRAM = 2 };

/* Token types, same values as sentencepiece's ModelProto.SentencePiece.Type and GGUF token_type. */
enum ei_tok_type {
    EI_TOKTYPE_NORMAL = 1,
    EI_TOKTYPE_UNKNOWN = 2,
    EI_TOKTYPE_CONTROL = 3,
    EI_TOKTYPE_USER_DEFINED = 4,
    EI_TOKTYPE_UNUSED = 5,
    EI_TOKTYPE_BYTE = 6,
};

typedef struct ei_vocab_desc {
    int32_t n_vocab;
    const char *const *pieces;   /* n_vocab UTF-8 strings (need not be NUL-terminated) */
    const int32_t *piece_lens;   /* byte length of each piece */
    const float *scores;         /* n_vocab, may be NULL (all 0) */
    const int32_t *types;        /* n_vocab enum ei_tok_type, may be NULL (all NORMAL) */
    int32_t algo;                /* enum ei_tok_algo */
    int32_t bos_id, eos_id, unk_id;  /* -1 = none */
    int32_t add_dummy_prefix;    /* prepend ▁ to the text (sentencepiece default 1) */
    int32_t remove_extra_whitespaces; /* collapse runs of spaces, strip ends (sentencepiece default 1) */
    int32_t byte_fallback;       /* unknown chars -> <0xNN> byte tokens */
} ei_vocab_desc;

/* Builds a tokenizer, copying everything it needs from desc. Errors: EI_ERR_FORMAT (empty vocab, duplicate
 * pieces, byte_fallback without the 256 byte tokens), EI_ERR_NOMEM. */
int ei_tokenizer_create(const ei_vocab_desc *desc, ei_tokenizer **out);

/* Long texts are encoded piece by piece, cut where no vocabulary piece can span (before a ▁ that follows
 * something else), so tokenizing a multi-MB prompt needs ~3 bytes of work memory per byte instead of ~35; the ids
 * are those of the whole text. Tests set a small piece length to exercise the cuts; the default is 64 KiB. */
void ei_tokenizer_set_chunk_bytes(ei_tokenizer *tok, size_t bytes);
/* 1 when the vocabulary allows those cuts (no piece holds a ▁ after another character; BPE: no UNUSED pieces,
 * whose re-segmentation depends on the whole text). Otherwise the text is encoded in one piece. */
int ei_tokenizer_chunkable(const ei_tokenizer *tok);

#endif
