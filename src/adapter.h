/* adapter.h — internal: the EdgeInfinite memory-gating adapter (docs/edgeinfinite.md), owned f32 copies. */
#ifndef EI_ADAPTER_H
#define EI_ADAPTER_H

#include "edgeinf.h"

typedef struct ei_adapter_layer {
    float *gate_w;        /* (n_head, dim) */
    float *gate_b;        /* (n_head) */
    float *mk_a, *mk_b;   /* (rank, dim), (kv_dim, rank); NULL when rank == 0 */
    float *mv_a, *mv_b;   /* (rank, dim), (kv_dim, rank) */
    float *mq_a, *mq_b;   /* (rank, dim), (q_dim, rank) */
} ei_adapter_layer;

enum ei_pod_share { EI_POD_SHARE_SCORES = 0, EI_POD_SHARE_KEYS = 1 };

/* PoD layer blocks (docs/pod.md): anchor[l] = first layer of l's block. */
typedef struct ei_pod_config {
    int32_t n_blocks;
    int32_t *anchor;             /* (n_layer) */
    int32_t n_sink, n_recent;    /* session defaults */
    int32_t share;               /* enum ei_pod_share */
    float delta;                 /* calibration threshold (provenance) */
} ei_pod_config;

struct ei_adapter {
    int32_t n_layer, n_head, n_head_kv, head_dim, dim;
    int32_t has_ei, has_pod;      /* kind edgeinfinite / pod / edgeinfinite+pod */
    int32_t rank;
    int32_t n_sink, window, seg;  /* edgeinfinite session defaults */
    float eps;
    ei_adapter_layer *layers;     /* n_layer (has_ei) */
    int64_t n_params;
    float *storage;               /* one allocation behind every tensor */
    ei_pod_config pod;            /* has_pod */
};

#endif
