/* shim.h — internal to the wasm shim (wasm/shim.c, wasm/shim_checkpoint.c): the per-model and per-session state
 * the JavaScript runtime drives through the exported eiw_* functions. Not part of the public C API. */
#ifndef EIW_SHIM_H
#define EIW_SHIM_H

#include <stdint.h>

#include "edgeinf.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#define EIW_EXPORT EMSCRIPTEN_KEEPALIVE
#else
#define EIW_EXPORT
#endif

#define EIW_TEXT_CAP 1024

typedef struct eiw_model {
    ei_model *model;
    void *buf;              /* the GGUF bytes the model points into; owned here */
    ei_adapter *adapter;    /* EdgeInfinite adapter given to new sessions; NULL if none */
} eiw_model;

/* Identity of the tokens fed to the model since the last reset, in constant space: their count and two
 * independent 64-bit hash lanes. A new prompt reuses the KV cache when its first n tokens hash the same.
 * known = 0 after a checkpoint restored without shim state: the history is then unknown and never matches. */
typedef struct eiw_hist {
    int64_t n;
    uint64_t a, b;
    int32_t known;
} eiw_hist;

typedef struct eiw_session {
    eiw_model *m;
    ei_session *s;
    ei_sampler *smp;        /* sampler of the current or last generation (kept for continue and checkpoints); NULL
                             * when none ran since the session was created or reset */
    ei_sampler_params qp;   /* smp's params */
    int32_t generating;     /* 1 between eiw_gen_begin/eiw_gen_continue and eiw_gen_end */
    ei_detok detok;
    eiw_hist hist;
    int32_t *todo;          /* prompt tokens still to prefill */
    int32_t n_todo, i_todo;
    int32_t pending;        /* sampled token not yet fed to the model; -1 if none */
    char text[EIW_TEXT_CAP];/* text produced by the last step (NUL-terminated) */
} eiw_session;

/* Records a failure code for the calls that return a pointer (eiw_last_code); returns it for chaining. */
int eiw_fail(int code);
/* Empty token history (hash lanes at their seeds, known). */
void eiw_hist_init(eiw_hist *h);
/* Hash of ids appended to h. */
void eiw_hist_push(eiw_hist *h, const int32_t *ids, int64_t n);

#endif
