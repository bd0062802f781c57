/* tokenizer.h — internal constructor for the SentencePiece-compatible tokenizer.
 * The public encode/decode API is in edgeinf.h. The vocabulary comes from GGUF (tokenizer.ggml.*,
 * converted by model.c) or from a SentencePiece .model protobuf (spm_model.c). */
#ifndef EI_TOKENIZER_H
#define EI_TOKENIZER_H

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

#endif
