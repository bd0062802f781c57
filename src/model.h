/* model.h — internal: a loaded model (hyper-parameters + weights bound to GGUF tensors). */
#ifndef EI_MODEL_H
#define EI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "edgeinf.h"
#include "gguf.h"
#include "threadpool.h"

typedef struct ei_hparams {
    int32_t n_vocab;
    int32_t dim;         /* embedding length */
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;    /* dim / n_head */
    int32_t ffn_dim;
    int32_t n_ctx_train;
    int32_t rope_dim;    /* rotated dims per head (== head_dim for llama) */
    float rope_base;
    float rms_eps;
} ei_hparams;

/* A 2-D weight matrix in ggml layout: ne0 = inputs (contiguous), ne1 = outputs. Data points into the GGUF buffer. */
typedef struct ei_weight {
    uint32_t type;
    int64_t n_in, n_out;
    const void *data;
} ei_weight;

typedef struct ei_layer {
    float *attn_norm;  /* (dim) owned f32 copy */
    float *ffn_norm;   /* (dim) */
    ei_weight wq;      /* (n_head*head_dim, dim) */
    ei_weight wk;      /* (n_head_kv*head_dim, dim) */
    ei_weight wv;      /* (n_head_kv*head_dim, dim) */
    ei_weight wo;      /* (dim, n_head*head_dim) */
    ei_weight w_gate;  /* (ffn_dim, dim) */
    ei_weight w_up;    /* (ffn_dim, dim) */
    ei_weight w_down;  /* (dim, ffn_dim) */
} ei_layer;

struct ei_model {
    ei_hparams hp;
    ei_weight tok_embd;  /* (n_vocab, dim) */
    ei_weight output;    /* (n_vocab, dim); == tok_embd when tied */
    float *output_norm;  /* (dim) */
    ei_layer *layers;    /* n_layer */
    ei_gguf gguf;
    ei_tokenizer *tok;
    ei_threadpool *tp;
    int64_t n_params;
    char fingerprint[17];
    char **meta_cstr;     /* (gguf.n_kv) NUL-terminated copies of string values (NULL for other types) */
    const char *name;     /* general.name or NULL; points into meta_cstr */
    /* storage: either an mmap of a file, a malloc'd copy, or a caller-owned buffer */
    void *map;
    size_t map_size;
    void *owned;
};

#endif
