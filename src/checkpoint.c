/* checkpoint.c — a session's state as one file or buffer (docs/checkpoint.md is the format):
 *   header (magic, version, fingerprints, layout, CRC32) + tagged sections (tag, length, CRC32 of the payload).
 * Saving serialises into one buffer, then (for files) writes it atomically: path.tmp, fsync, rename, fsync of the
 * directory. Loading validates every byte it will use (CRCs, fingerprints, layout, lengths, counters, token ids) before
 * it touches the session, so a refused file leaves the session and sampler exactly as they were.
 * Window policies write every cache slot (slots not holding a live token as zeros): the size does not depend on how
 * many tokens the session has seen. full and pod write the first n_past slots: their size grows with the context.
 * PoD non-anchor layers (docs/pod.md) hold only the sinks' and the recent tokens' keys: their KEYS rows are those keys
 * in token order, a constant count per layer, independent of the engine's ring size. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "sampler.h"
#include "session.h"

#define CK_HEADER_BYTES 96
#define CK_SECTION_HEADER_BYTES 16
#define CK_CNTR_BYTES 56

/* Section tags, in the order they are written. PODC (pod policies only) comes first: it is part of the config a
 * loader checks before the adapter fingerprint (docs/checkpoint.md, "Loading"). */
enum { S_PODC, S_CNTR, S_TOKS, S_KEYS, S_VALS, S_LOGT, S_MEMM, S_MEMZ, S_MSEG, S_CODK, S_CODV, S_SMPL, S_COUNT };
static const char tag_names[S_COUNT][5] = {"PODC", "CNTR", "TOKS", "KEYS", "VALS", "LOGT", "MEMM",
                                           "MEMZ", "MSEG", "CODK", "CODV", "SMPL"};

/* ------------------------------------------------------------------ CRC32 (IEEE 802.3, as zlib / PNG) */

static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

/* CRC32 of n bytes (initial value 0xFFFFFFFF, final xor, reflected: crc32("123456789") = 0xCBF43926). */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------ little-endian encoding */

/* 1 on a little-endian host (every engine target): then encoding is a plain copy. */
static int host_is_le(void) {
    const uint16_t x = 1;
    return *(const uint8_t *)&x == 1;
}

/* Copies n elements of `width` bytes between host order and little-endian (the same operation both ways). */
static void copy_le(void *dst, const void *src, size_t n, size_t width) {
    if (n == 0) return; /* an absent (empty) section has no payload pointer: memcpy must not see NULL */
    if (host_is_le()) {
        memcpy(dst, src, n * width);
        return;
    }
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < width; b++) d[i * width + b] = s[i * width + width - 1 - b];
}

/* Fixed-width little-endian fields of the header and CNTR, independent of the host's byte order. */
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_f64(uint8_t *p, double d) {
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_u64(p, v);
}
static double get_f64(const uint8_t *p) {
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

/* ------------------------------------------------------------------ what a session's checkpoint holds */

/* The header's layout fields, in file order (bytes 48..87). Names are used in mismatch messages. */
enum { C_POLICY, C_N_SINK, C_WINDOW, C_SEG, C_CAP, C_N_LAYER, C_N_HEAD_KV, C_HEAD_DIM, C_N_VOCAB, C_RANK, C_COUNT };
static const char *const config_names[C_COUNT] = {"policy",    "n_sink",    "window",   "seg",     "cache slots (n_ctx)",
                                                  "n_layer",   "n_head_kv", "head_dim", "n_vocab", "adapter rank"};

/* streaming / edgeinfinite / edgeinfinite+pod (a ring of segments), as opposed to full and pod. */
static int is_window(const ei_session *s) { return s->n_seg_window > 0; }
/* edgeinfinite / edgeinfinite+pod: compressed memory (M, z, segment counts, low-rank codes). */
static int has_memory(const ei_session *s) {
    return s->policy == EI_POLICY_EDGEINFINITE || s->policy == EI_POLICY_EDGEINFINITE_POD;
}
/* Low-rank code width per cached token (a memory policy with a rank > 0 adapter), else 0. */
static int32_t rank_of(const ei_session *s) { return s->adapter ? s->adapter->rank : 0; }
/* 1 if layer l keeps only the sinks' and the recent tokens' keys (a PoD non-anchor layer, docs/pod.md). */
static int is_ring_layer(const ei_session *s, int l) { return s->pod.cfg && s->pod.cfg->anchor[l] != l; }

/* The session's header layout fields, in file order: what a checkpoint must match to load. pod keeps its n_sink in
 * the pod state (s->n_sink is a window-policy field); edgeinfinite+pod has the same value in both. */
static void session_config(const ei_session *s, int32_t cfg[C_COUNT]) {
    const ei_hparams *hp = &s->model->hp;
    cfg[C_POLICY] = s->policy;
    cfg[C_N_SINK] = s->pod.cfg ? s->pod.n_sink : s->n_sink;
    cfg[C_WINDOW] = s->window;
    cfg[C_SEG] = s->seg;
    cfg[C_CAP] = s->kv.cap;
    cfg[C_N_LAYER] = hp->n_layer;
    cfg[C_N_HEAD_KV] = hp->n_head_kv;
    cfg[C_HEAD_DIM] = hp->head_dim;
    cfg[C_N_VOCAB] = hp->n_vocab;
    cfg[C_RANK] = rank_of(s);
}

/* PODC payload: u32 n_recent, u32 share, u32 n_blocks, u32 block start layers (n_blocks of them). */
static uint64_t podc_bytes(int32_t n_blocks) { return 12 + 4 * (uint64_t)n_blocks; }

/* Writes the session's PoD config (the PODC payload) to p. */
static void put_podc(const ei_session *s, uint8_t *p) {
    const ei_pod_config *c = s->pod.cfg;
    put_u32(p, (uint32_t)s->pod.n_recent);
    put_u32(p + 4, (uint32_t)s->pod.share);
    put_u32(p + 8, (uint32_t)c->n_blocks);
    uint8_t *o = p + 12;
    for (int32_t l = 0; l < s->model->hp.n_layer; l++)
        if (c->anchor[l] == l) put_u32(o, (uint32_t)l), o += 4;
}

/* Feeds a u32 (little-endian) into an FNV-1a 64 hash. */
static uint64_t fnv_u32(uint64_t h, uint32_t v) {
    for (int k = 0; k < 4; k++) h = (h ^ (uint8_t)(v >> (8 * k))) * 1099511628211ull;
    return h;
}

/* 16 hex digits identifying the adapter's part in the session's math: FNV-1a 64, little-endian, over the memory
 * adapter's dimensions, rank, eps and every weight (memory policies), then for pod policies over the adapter's PoD
 * keys (n_layer, number of blocks, block starts, its default n_sink, n_recent, share; delta and the similarity are
 * provenance and not covered). All zero bytes when the session uses no adapter. An edgeinfinite session with an
 * edgeinfinite+pod adapter ignores the pod keys, so they are not in its fingerprint either. */
static void adapter_fingerprint(const ei_session *s, char out[16]) {
    const ei_adapter *a = s->adapter;
    const ei_pod_config *pc = s->pod.cfg;
    if (!a && !pc) {
        memset(out, 0, 16);
        return;
    }
    uint64_t h = 1469598103934665603ull;
    if (a) {
        const int32_t dims[6] = {a->n_layer, a->n_head, a->n_head_kv, a->head_dim, a->dim, a->rank};
        for (int i = 0; i < 6; i++) h = fnv_u32(h, (uint32_t)dims[i]);
        uint32_t v;
        memcpy(&v, &a->eps, sizeof v);
        h = fnv_u32(h, v);
        for (int64_t i = 0; i < a->n_params; i++) {
            memcpy(&v, a->storage + i, sizeof v);
            h = fnv_u32(h, v);
        }
    }
    if (pc) {
        const int32_t nl = s->model->hp.n_layer;
        h = fnv_u32(h, (uint32_t)nl);
        h = fnv_u32(h, (uint32_t)pc->n_blocks);
        for (int32_t l = 0; l < nl; l++)
            if (pc->anchor[l] == l) h = fnv_u32(h, (uint32_t)l);
        h = fnv_u32(h, (uint32_t)pc->n_sink);
        h = fnv_u32(h, (uint32_t)pc->n_recent);
        h = fnv_u32(h, (uint32_t)pc->share);
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    memcpy(out, hex, 16);
}

/* Segments folded into memory (or dropped) once n_past tokens are in: attention.c evicts segment j - W - 1 when the
 * first token of segment j arrives. */
static int64_t evicted_after(const ei_session *s, int64_t n_past) {
    if (!is_window(s) || n_past <= s->n_sink) return 0;
    const int64_t e = (n_past - 1 - s->n_sink) / s->seg - s->n_seg_window;
    return e > 0 ? e : 0;
}

/* Slots written: every slot for window policies (constant size), the first n_past for full. */
static int64_t slots_written(const ei_session *s, int64_t n_past) { return is_window(s) ? s->kv.cap : n_past; }

/* Marks (1) the cache slots that hold a live token after n_past tokens: the sink and positions from the oldest
 * non-evicted segment on. Returns how many. mask has kv.cap bytes. */
static int64_t live_slots(const ei_session *s, int64_t n_past, uint8_t *mask) {
    memset(mask, 0, (size_t)s->kv.cap);
    if (!is_window(s)) {
        memset(mask, 1, (size_t)n_past);
        return n_past;
    }
    int64_t n = 0;
    const int64_t n_sink = n_past < s->n_sink ? n_past : s->n_sink;
    for (int64_t p = 0; p < n_sink; p++, n++) mask[p] = 1;
    for (int64_t p = s->n_sink + evicted_after(s, n_past) * s->seg; p < n_past; p++, n++)
        mask[ei_attn_slot(s, p)] = 1;
    return n;
}

/* Key rows a PoD non-anchor layer contributes to KEYS: the most keys it holds between calls, min(n, n_sink + n_recent
 * - 1) (docs/pod.md), bounded by the cache (pod with a small n_ctx). Constant, so it does not depend on n_past. */
static int64_t ring_rows_written(const ei_session *s) {
    const int64_t r = (int64_t)s->pod.n_sink + s->pod.n_recent - 1;
    return r < s->kv.cap ? r : s->kv.cap;
}

/* Position of the token whose key is the i-th (in token order) a PoD non-anchor layer holds after n_past tokens: the
 * sinks, then the n_recent - 1 latest non-sink positions, the only keys a later query reads from it (distant tokens
 * are scored on the anchor's keys). -1 when fewer than i + 1 keys are held (the row is written as zeros). */
static int64_t ring_token(const ei_session *s, int64_t n_past, int64_t i) {
    const int64_t ns = s->pod.n_sink, sinks = n_past < ns ? n_past : ns;
    if (i < sinks) return i;
    const int64_t first = n_past - s->pod.n_recent + 1 > ns ? n_past - s->pod.n_recent + 1 : ns;
    const int64_t t = first + (i - sinks);
    return t < n_past ? t : -1;
}

/* Row of token t's key in a PoD non-anchor layer's ring (attention.c's key_row: sinks at their slot, which is their
 * position under every policy, then a ring of pod.ring - n_sink rows). */
static int64_t ring_row(const ei_session *s, int64_t t) {
    const int64_t ns = s->pod.n_sink;
    return t < ns ? t : ns + (t - ns) % (s->pod.ring - ns);
}

/* KEYS rows of layer l: the slots written, or ring_rows_written for a PoD non-anchor layer. */
static int64_t key_rows_written(const ei_session *s, int l, int64_t slots) {
    return is_ring_layer(s, l) ? ring_rows_written(s) : slots;
}

/* Payload bytes of every section for a session holding n_past tokens (0 = section absent); smp_bytes for SMPL. */
static void section_lengths(const ei_session *s, int64_t n_past, uint64_t smp_bytes, uint64_t len[S_COUNT]) {
    const ei_hparams *hp = &s->model->hp;
    const uint64_t slots = (uint64_t)slots_written(s, n_past), nl = (uint64_t)hp->n_layer;
    const uint64_t hd = (uint64_t)hp->head_dim, nkv = (uint64_t)hp->n_head_kv, rank = (uint64_t)rank_of(s);
    memset(len, 0, sizeof(uint64_t) * S_COUNT);
    if (s->pod.cfg) len[S_PODC] = podc_bytes(s->pod.cfg->n_blocks);
    len[S_CNTR] = CK_CNTR_BYTES;
    len[S_TOKS] = 4 * slots;
    uint64_t key_rows = 0;
    for (int32_t l = 0; l < hp->n_layer; l++) key_rows += (uint64_t)key_rows_written(s, l, (int64_t)slots);
    len[S_KEYS] = 4 * key_rows * (uint64_t)s->kv.kv_dim;
    len[S_VALS] = 4 * nl * slots * (uint64_t)s->kv.kv_dim;
    len[S_LOGT] = 4 * (uint64_t)hp->n_vocab;
    if (has_memory(s)) {
        len[S_MEMM] = 4 * nl * nkv * hd * hd;
        len[S_MEMZ] = 4 * nl * nkv * hd;
        len[S_MSEG] = 8 * nl;
        len[S_CODK] = len[S_CODV] = 4 * nl * slots * rank;
    }
    len[S_SMPL] = smp_bytes;
}

/* ------------------------------------------------------------------ save */

/* Writes `width` floats for each of the first `slots` slots of one layer's array at base, zeros for dead slots. */
static uint8_t *put_slot_rows(const float *base, int32_t width, int64_t slots, const uint8_t *mask, uint8_t *o) {
    for (int64_t i = 0; i < slots; i++, o += 4 * (size_t)width) {
        if (mask[i]) copy_le(o, base + (size_t)i * width, (size_t)width, 4);
        else memset(o, 0, 4 * (size_t)width);
    }
    return o;
}

/* Writes a per-slot array ((n_layer, cap, width) in the session) for every layer. */
static uint8_t *put_slots(const ei_session *s, const float *src, int32_t width, int64_t slots, const uint8_t *mask,
                          uint8_t *o) {
    for (int32_t l = 0; l < s->model->hp.n_layer; l++)
        o = put_slot_rows(src + (size_t)l * s->kv.cap * width, width, slots, mask, o);
    return o;
}

/* Writes KEYS: per layer its slots (through k_layer, since PoD layers differ in size), or for a PoD non-anchor layer
 * the keys it holds in token order, zeros after them. */
static void put_keys(const ei_session *s, int64_t slots, const uint8_t *mask, uint8_t *o) {
    const int32_t kv_dim = s->kv.kv_dim;
    for (int32_t l = 0; l < s->model->hp.n_layer; l++) {
        if (!is_ring_layer(s, l)) {
            o = put_slot_rows(s->kv.k_layer[l], kv_dim, slots, mask, o);
            continue;
        }
        for (int64_t i = 0, rows = ring_rows_written(s); i < rows; i++, o += 4 * (size_t)kv_dim) {
            const int64_t t = ring_token(s, s->n_past, i);
            if (t >= 0) copy_le(o, s->kv.k_layer[l] + (size_t)ring_row(s, t) * kv_dim, (size_t)kv_dim, 4);
            else memset(o, 0, 4 * (size_t)kv_dim);
        }
    }
}

/* Serialises into buf (exactly `total` bytes, from checkpoint_size). */
static int serialise(const ei_session *s, const ei_sampler *smp, uint8_t *buf, const uint64_t len[S_COUNT],
                     uint8_t *mask) {
    const ei_hparams *hp = &s->model->hp;
    const int64_t n_past = s->n_past, slots = slots_written(s, n_past);
    /* The live set computed here must be the one attention.c holds: a disagreement is a bug, not a bad file. */
    if (live_slots(s, n_past, mask) != ei_attn_kv_tokens(s))
        return ei_set_error(EI_ERR_INTERNAL, "checkpoint: %lld live slots, attention holds %lld tokens",
                            (long long)live_slots(s, n_past, mask), (long long)ei_attn_kv_tokens(s));
    if (has_memory(s))
        for (int32_t l = 0; l < hp->n_layer; l++)
            if (s->mem.segments[l] != evicted_after(s, n_past))
                return ei_set_error(EI_ERR_INTERNAL, "checkpoint: layer %d holds %lld segments, expected %lld", l,
                                    (long long)s->mem.segments[l], (long long)evicted_after(s, n_past));
    int n_sections = 0;
    for (int t = 0; t < S_COUNT; t++) n_sections += len[t] > 0;

    /* header */
    uint8_t *o = buf;
    memcpy(o, "EICK", 4);
    put_u32(o + 4, EI_CHECKPOINT_VERSION);
    put_u32(o + 8, CK_HEADER_BYTES);
    put_u32(o + 12, (uint32_t)n_sections);
    memcpy(o + 16, ei_model_fingerprint(s->model), 16);
    adapter_fingerprint(s, (char *)o + 32);
    int32_t cfg[C_COUNT];
    session_config(s, cfg);
    for (int i = 0; i < C_COUNT; i++) put_u32(o + 48 + 4 * i, (uint32_t)cfg[i]);
    put_u32(o + 88, 0);
    put_u32(o + 92, crc32_of(o, 92));
    o += CK_HEADER_BYTES;

    for (int t = 0; t < S_COUNT; t++) {
        if (!len[t]) continue;
        uint8_t *h = o, *p = o + CK_SECTION_HEADER_BYTES;
        memcpy(h, tag_names[t], 4);
        put_u64(h + 4, len[t]);
        switch (t) {
        case S_PODC: put_podc(s, p); break;
        case S_CNTR:
            put_u64(p, (uint64_t)n_past);
            put_u64(p + 8, (uint64_t)s->stats.tokens);
            put_u64(p + 16, (uint64_t)s->stats.prefill_tokens);
            put_f64(p + 24, s->stats.prefill_ms);
            put_u64(p + 32, (uint64_t)s->stats.decode_tokens);
            put_f64(p + 40, s->stats.decode_ms);
            put_u32(p + 48, (uint32_t)(s->has_logits != 0));
            put_u32(p + 52, 0);
            break;
        case S_TOKS:
            for (int64_t i = 0; i < slots; i++) put_u32(p + 4 * i, (uint32_t)(mask[i] ? s->slot_ids[i] : -1));
            break;
        case S_KEYS: put_keys(s, slots, mask, p); break;
        case S_VALS: put_slots(s, s->kv.v, s->kv.kv_dim, slots, mask, p); break;
        case S_LOGT:
            if (s->has_logits) copy_le(p, s->logits, (size_t)hp->n_vocab, 4);
            else memset(p, 0, 4 * (size_t)hp->n_vocab);
            break;
        case S_MEMM: copy_le(p, s->mem.M, len[t] / 4, 4); break;
        case S_MEMZ: copy_le(p, s->mem.z, len[t] / 4, 4); break;
        case S_MSEG: copy_le(p, s->mem.segments, len[t] / 8, 8); break;
        case S_CODK: put_slots(s, s->mem.code_k, rank_of(s), slots, mask, p); break;
        case S_CODV: put_slots(s, s->mem.code_v, rank_of(s), slots, mask, p); break;
        case S_SMPL: {
            int rc = ei_sampler_state_save(smp, p, (size_t)len[t]);
            if (rc) return rc;
            break;
        }
        }
        put_u32(h + 12, crc32_of(p, (size_t)len[t]));
        o = p + len[t];
    }
    return 0;
}

/* Total checkpoint bytes for the session (and sampler) as they are now; fills len. */
static uint64_t checkpoint_size(const ei_session *s, const ei_sampler *smp, uint64_t len[S_COUNT]) {
    section_lengths(s, s->n_past, smp ? (uint64_t)ei_sampler_state_size(smp) : 0, len);
    uint64_t total = CK_HEADER_BYTES;
    for (int t = 0; t < S_COUNT; t++)
        if (len[t]) total += CK_SECTION_HEADER_BYTES + len[t];
    return total;
}

int ei_session_save_to_buffer(const ei_session *s, const ei_sampler *smp, void *buf, size_t cap, size_t *n_out) {
    if (!s || !n_out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_save_to_buffer: NULL session or n_out");
    uint64_t len[S_COUNT];
    const uint64_t total = checkpoint_size(s, smp, len);
    if (total > (uint64_t)SIZE_MAX) return ei_set_error(EI_ERR_NOMEM, "checkpoint of %llu bytes exceeds the address space",
                                                     (unsigned long long)total);
    *n_out = (size_t)total;
    if (cap < total || !buf)
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "checkpoint needs %llu bytes, buffer has %zu",
                            (unsigned long long)total, buf ? cap : 0);
    uint8_t *mask = malloc(s->kv.cap > 0 ? (size_t)s->kv.cap : 1);
    if (!mask) return ei_set_error(EI_ERR_NOMEM, "checkpoint: out of memory");
    int rc = serialise(s, smp, buf, len, mask);
    free(mask);
    return rc;
}

/* ------------------------------------------------------------------ load */

/* Where each section's payload lies inside the caller's bytes (nothing is copied before validation ends). */
typedef struct ck_view {
    const uint8_t *p[S_COUNT]; /* payload of each section present, else NULL */
    uint64_t len[S_COUNT];
} ck_view;

/* Pod policies: the PODC section, which must be the first after the header (its bounds and CRC are checked here, as
 * part of the config), against the session's n_recent, share and blocks. Called once the header matched, so the
 * policy and n_layer are the session's. */
static int check_podc(const ei_session *s, const uint8_t *b, size_t size) {
    const size_t off = CK_HEADER_BYTES;
    if (get_u32(b + 12) > 0 && size - off < CK_SECTION_HEADER_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: %zu bytes, the pod config section starts at %zu", size,
                            off);
    if (get_u32(b + 12) == 0 || memcmp(b + off, tag_names[S_PODC], 4))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: section 'PODC' (pod config) missing: a '%s' checkpoint starts "
                                           "with it",
                            ei_policy_name(s->policy));
    const uint64_t len = get_u64(b + off + 4);
    const uint8_t *p = b + off + CK_SECTION_HEADER_BYTES;
    if (len > size - off - CK_SECTION_HEADER_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: section 'PODC' has %llu bytes, %zu are left",
                            (unsigned long long)len, size - off - CK_SECTION_HEADER_BYTES);
    const uint32_t crc = crc32_of(p, (size_t)len);
    if (crc != get_u32(b + off + 12))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint section 'PODC': CRC mismatch (stored %08x, computed %08x)",
                            get_u32(b + off + 12), crc);
    const int32_t nl = s->model->hp.n_layer;
    if (len < 12 || get_u32(p + 8) > (uint32_t)nl || len != podc_bytes((int32_t)get_u32(p + 8)))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: section 'PODC' has %llu bytes, not a pod config for %d layers",
                            (unsigned long long)len, nl);
    const int32_t n_recent = (int32_t)get_u32(p), share = (int32_t)get_u32(p + 4);
    if (n_recent != s->pod.n_recent)
        return ei_set_error(EI_ERR_MISMATCH, "checkpoint config differs: n_recent %d in the file, %d in the session",
                            n_recent, s->pod.n_recent);
    if (share != s->pod.share) {
        const char *fs = share == EI_POD_SHARE_SCORES ? "scores" : share == EI_POD_SHARE_KEYS ? "keys" : "?";
        return ei_set_error(EI_ERR_MISMATCH, "checkpoint config differs: share '%s' in the file, '%s' in the session", fs,
                            s->pod.share == EI_POD_SHARE_SCORES ? "scores" : "keys");
    }
    /* blocks: the file's start layers against the session's, both written out in the message when they differ */
    char want[256], got[256];
    size_t nw = 0, ng = 0;
    int same = (int32_t)get_u32(p + 8) == s->pod.cfg->n_blocks;
    want[0] = got[0] = 0;
    for (int32_t l = 0, i = 0; l < nl; l++)
        if (s->pod.cfg->anchor[l] == l) {
            if (nw < sizeof want) nw += (size_t)snprintf(want + nw, sizeof want - nw, "%s%d", nw ? "," : "", l);
            if (i < (int32_t)get_u32(p + 8) && (int32_t)get_u32(p + 12 + 4 * (size_t)i) != l) same = 0;
            i++;
        }
    if (same) return 0;
    for (uint32_t i = 0; i < get_u32(p + 8) && ng < sizeof got; i++)
        ng += (size_t)snprintf(got + ng, sizeof got - ng, "%s%u", ng ? "," : "", get_u32(p + 12 + 4 * (size_t)i));
    return ei_set_error(EI_ERR_MISMATCH,
                        "checkpoint config differs: blocks (start layers) %s in the file, %s in the session", got, want);
}

/* Header checks, in the order that gives the most useful message: magic, version, size, CRC, model, layout, adapter. */
static int check_header(const ei_session *s, const uint8_t *b, size_t size) {
    if (size == 0) return ei_set_error(EI_ERR_FORMAT, "checkpoint is empty (0 bytes)");
    if (size < 8)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: %zu bytes, the header alone has %d", size,
                            CK_HEADER_BYTES);
    if (memcmp(b, "EICK", 4))
        return ei_set_error(EI_ERR_FORMAT, "not an edgeinf checkpoint (magic %02x %02x %02x %02x, expected 'EICK')", b[0],
                            b[1], b[2], b[3]);
    const uint32_t version = get_u32(b + 4);
    if (version != EI_CHECKPOINT_VERSION)
        return ei_set_error(EI_ERR_UNSUPPORTED, "checkpoint format version %u is not supported: this build reads version %u",
                            version, (unsigned)EI_CHECKPOINT_VERSION);
    if (size < CK_HEADER_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: %zu bytes, the header alone has %d", size,
                            CK_HEADER_BYTES);
    const uint32_t crc = crc32_of(b, 92);
    if (crc != get_u32(b + 92))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint header: CRC mismatch (stored %08x, computed %08x)",
                            get_u32(b + 92), crc);
    if (get_u32(b + 8) != CK_HEADER_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint header: size %u, expected %d", get_u32(b + 8), CK_HEADER_BYTES);
    const char *fp = ei_model_fingerprint(s->model);
    if (memcmp(b + 16, fp, 16)) {
        char got[17];
        for (int i = 0; i < 16; i++) got[i] = b[16 + i] >= 0x20 && b[16 + i] < 0x7f ? (char)b[16 + i] : '?';
        got[16] = 0;
        return ei_set_error(EI_ERR_MISMATCH, "checkpoint belongs to model %s, this session's model is %s", got, fp);
    }
    int32_t cfg[C_COUNT];
    session_config(s, cfg);
    for (int i = 0; i < C_COUNT; i++) {
        const int32_t v = (int32_t)get_u32(b + 48 + 4 * i);
        if (v == cfg[i]) continue;
        if (i == C_POLICY)
            return ei_set_error(EI_ERR_MISMATCH, "checkpoint config differs: policy '%s' in the file, '%s' in the session",
                                ei_policy_name(v), ei_policy_name(cfg[i]));
        return ei_set_error(EI_ERR_MISMATCH, "checkpoint config differs: %s %d in the file, %d in the session",
                            config_names[i], v, cfg[i]);
    }
    if (s->pod.cfg) {
        const int rc = check_podc(s, b, size);
        if (rc) return rc;
    }
    char afp[16];
    adapter_fingerprint(s, afp);
    if (memcmp(b + 32, afp, 16)) {
        char got[17], want[17];
        for (int i = 0; i < 16; i++) {
            got[i] = b[32 + i] >= 0x20 && b[32 + i] < 0x7f ? (char)b[32 + i] : '0';
            want[i] = afp[i] ? afp[i] : '0';
        }
        got[16] = want[16] = 0;
        return ei_set_error(EI_ERR_MISMATCH, "checkpoint was made with adapter %s, this session uses adapter %s", got,
                            want);
    }
    return 0;
}

/* Splits the sections, checking each one's bounds and CRC, and that the file ends right after the last. */
static int split_sections(const uint8_t *b, size_t size, ck_view *v) {
    memset(v, 0, sizeof *v);
    const uint32_t n_sections = get_u32(b + 12);
    if (n_sections > S_COUNT)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint header: %u sections, at most %d exist", n_sections, S_COUNT);
    size_t off = CK_HEADER_BYTES;
    for (uint32_t i = 0; i < n_sections; i++) {
        if (size - off < CK_SECTION_HEADER_BYTES)
            return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: %zu bytes, section %u of %u starts at %zu", size,
                                i + 1, n_sections, off);
        const uint8_t *h = b + off;
        int t = 0;
        while (t < S_COUNT && memcmp(h, tag_names[t], 4)) t++;
        char tag[5];
        for (int k = 0; k < 4; k++) tag[k] = h[k] >= 0x20 && h[k] < 0x7f ? (char)h[k] : '?';
        tag[4] = 0;
        if (t == S_COUNT) return ei_set_error(EI_ERR_FORMAT, "checkpoint: unknown section '%s' at offset %zu", tag, off);
        if (v->p[t]) return ei_set_error(EI_ERR_FORMAT, "checkpoint: section '%s' appears twice", tag);
        const uint64_t len = get_u64(h + 4);
        off += CK_SECTION_HEADER_BYTES;
        if (len > size - off)
            return ei_set_error(EI_ERR_FORMAT, "checkpoint truncated: section '%s' has %llu bytes, %zu are left", tag,
                                (unsigned long long)len, size - off);
        const uint32_t crc = crc32_of(b + off, (size_t)len);
        if (crc != get_u32(h + 12))
            return ei_set_error(EI_ERR_FORMAT, "checkpoint section '%s': CRC mismatch (stored %08x, computed %08x)", tag,
                                get_u32(h + 12), crc);
        v->p[t] = b + off;
        v->len[t] = len;
        off += (size_t)len;
    }
    if (off != size)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: %zu bytes after the last of %u sections", size - off, n_sections);
    return 0;
}

/* Semantic checks on the sections (lengths for this layout, counters, token ids, memory segment counts). */
static int check_sections(const ei_session *s, const ck_view *v, uint8_t *mask) {
    if (!v->p[S_CNTR] || v->len[S_CNTR] != CK_CNTR_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: section 'CNTR' %s", v->p[S_CNTR] ? "has a wrong length" : "missing");
    const uint8_t *c = v->p[S_CNTR];
    const int64_t n_past = (int64_t)get_u64(c);
    const uint32_t has_logits = get_u32(c + 48);
    if (n_past < 0 || (!is_window(s) && n_past > s->kv.cap))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: %lld tokens do not fit %d cache slots", (long long)n_past,
                            s->kv.cap);
    if (has_logits != (n_past > 0))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint: logits flag %u with %lld tokens", has_logits, (long long)n_past);
    uint64_t want[S_COUNT];
    section_lengths(s, n_past, v->len[S_SMPL], want);
    for (int t = 0; t < S_COUNT; t++) {
        if (t == S_SMPL) continue;
        if (!want[t] && v->p[t])
            return ei_set_error(EI_ERR_FORMAT, "checkpoint: section '%s' does not belong to a '%s' session", tag_names[t],
                                ei_policy_name(s->policy));
        if (want[t] && !v->p[t]) return ei_set_error(EI_ERR_FORMAT, "checkpoint: section '%s' missing", tag_names[t]);
        if (want[t] != v->len[t])
            return ei_set_error(EI_ERR_FORMAT, "checkpoint: section '%s' has %llu bytes, expected %llu for %lld tokens",
                                tag_names[t], (unsigned long long)v->len[t], (unsigned long long)want[t],
                                (long long)n_past);
    }
    live_slots(s, n_past, mask);
    const int64_t slots = slots_written(s, n_past);
    const int32_t nv = s->model->hp.n_vocab;
    for (int64_t i = 0; i < slots; i++) {
        const int32_t id = (int32_t)get_u32(v->p[S_TOKS] + 4 * i);
        if (mask[i] ? (id < 0 || id >= nv) : id != -1)
            return ei_set_error(EI_ERR_FORMAT, "checkpoint: slot %lld holds token id %d (%s)", (long long)i, id,
                                mask[i] ? "out of the vocabulary" : "an empty slot must hold -1");
    }
    if (v->p[S_MSEG])
        for (int32_t l = 0; l < s->model->hp.n_layer; l++) {
            const int64_t segs = (int64_t)get_u64(v->p[S_MSEG] + 8 * (size_t)l);
            if (segs != evicted_after(s, n_past))
                return ei_set_error(EI_ERR_FORMAT, "checkpoint: layer %d memory holds %lld segments, %lld tokens imply %lld",
                                    l, (long long)segs, (long long)n_past, (long long)evicted_after(s, n_past));
        }
    return 0;
}

/* Copies a per-slot array back ((n_layer, slots, width) in the file -> (n_layer, cap, width) in the session). */
static void get_slots(ei_session *s, float *dst, int32_t width, int64_t slots, const uint8_t *p) {
    for (int32_t l = 0; l < s->model->hp.n_layer; l++, p += 4 * (size_t)slots * width)
        copy_le(dst + (size_t)l * s->kv.cap * width, p, (size_t)slots * width, 4);
}

/* Copies KEYS back (the inverse of put_keys): a PoD non-anchor layer's keys go to their ring rows; its other rows
 * are never read before they are written again, so they are left as they are. */
static void get_keys(ei_session *s, int64_t slots, const uint8_t *p) {
    const int32_t kv_dim = s->kv.kv_dim;
    for (int32_t l = 0; l < s->model->hp.n_layer; l++) {
        if (!is_ring_layer(s, l)) {
            copy_le(s->kv.k_layer[l], p, (size_t)slots * kv_dim, 4);
            p += 4 * (size_t)slots * kv_dim;
            continue;
        }
        for (int64_t i = 0, rows = ring_rows_written(s); i < rows; i++, p += 4 * (size_t)kv_dim) {
            const int64_t t = ring_token(s, s->n_past, i);
            if (t >= 0) copy_le(s->kv.k_layer[l] + (size_t)ring_row(s, t) * kv_dim, p, (size_t)kv_dim, 4);
        }
    }
}

/* Installs validated sections into the session: nothing here can fail. */
static void apply(ei_session *s, const ck_view *v) {
    const uint8_t *c = v->p[S_CNTR];
    s->n_past = (int64_t)get_u64(c);
    s->stats.tokens = (int64_t)get_u64(c + 8);
    s->stats.prefill_tokens = (int64_t)get_u64(c + 16);
    s->stats.prefill_ms = get_f64(c + 24);
    s->stats.decode_tokens = (int64_t)get_u64(c + 32);
    s->stats.decode_ms = get_f64(c + 40);
    s->has_logits = (int)get_u32(c + 48);
    const int64_t slots = slots_written(s, s->n_past);
    copy_le(s->slot_ids, v->p[S_TOKS], (size_t)slots, 4);
    get_keys(s, slots, v->p[S_KEYS]);
    get_slots(s, s->kv.v, s->kv.kv_dim, slots, v->p[S_VALS]);
    copy_le(s->logits, v->p[S_LOGT], (size_t)s->model->hp.n_vocab, 4);
    if (has_memory(s)) {
        copy_le(s->mem.M, v->p[S_MEMM], (size_t)(v->len[S_MEMM] / 4), 4);
        copy_le(s->mem.z, v->p[S_MEMZ], (size_t)(v->len[S_MEMZ] / 4), 4);
        copy_le(s->mem.segments, v->p[S_MSEG], (size_t)(v->len[S_MSEG] / 8), 8);
        if (rank_of(s)) {
            get_slots(s, s->mem.code_k, rank_of(s), slots, v->p[S_CODK]);
            get_slots(s, s->mem.code_v, rank_of(s), slots, v->p[S_CODV]);
        }
    }
}

int ei_session_load_from_buffer(ei_session *s, ei_sampler *smp, const void *data, size_t size) {
    if (!s || (!data && size)) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_load_from_buffer: NULL argument");
    const uint8_t *b = data;
    int rc = check_header(s, b, size);
    if (rc) return rc;
    ck_view v;
    if ((rc = split_sections(b, size, &v))) return rc;
    uint8_t *mask = malloc(s->kv.cap > 0 ? (size_t)s->kv.cap : 1);
    if (!mask) return ei_set_error(EI_ERR_NOMEM, "checkpoint: out of memory");
    rc = check_sections(s, &v, mask);
    free(mask);
    if (rc) return rc;
    if (smp) {
        if (!v.p[S_SMPL])
            return ei_set_error(EI_ERR_MISMATCH, "checkpoint holds no sampler state (it was saved without a sampler)");
        /* ei_sampler_state_load validates before it writes: on failure the sampler is unchanged, and so is s. */
        if ((rc = ei_sampler_state_load(smp, v.p[S_SMPL], (size_t)v.len[S_SMPL]))) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", ei_last_error());
            return ei_set_error(rc, "checkpoint section 'SMPL': %s", msg);
        }
    }
    apply(s, &v);
    return 0;
}

/* ------------------------------------------------------------------ files */

/* Writes all n bytes (retrying short writes and EINTR). 0 or -1 with errno. */
static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        const ssize_t w = write(fd, p, n < ((size_t)1 << 30) ? n : ((size_t)1 << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so the rename itself survives a crash. Filesystems without directory fsync
 * (EINVAL, ENOTSUP, e.g. Emscripten's in-memory FS) are fine: the rename is still atomic there. */
static int sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return ei_set_error(EI_ERR_NOMEM, "checkpoint: out of memory");
    int rc = 0;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) && errno != EINVAL && errno != ENOTSUP && errno != EOPNOTSUPP && errno != EBADF)
            rc = ei_set_error(EI_ERR_IO, "checkpoint '%s' was renamed into place, but syncing directory '%s' failed: %s",
                              path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

/* Writes data to path.tmp, syncs it, renames it over path. On failure path.tmp is removed and path is untouched. */
static int write_atomic(const char *path, const uint8_t *data, size_t n) {
    const size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return ei_set_error(EI_ERR_NOMEM, "checkpoint: out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int rc = 0;
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = ei_set_error(EI_ERR_IO, "cannot create checkpoint temp file '%s': %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    if (write_all(fd, data, n) || fsync(fd)) {
        const int e = errno;
        close(fd);
        unlink(tmp);
        rc = ei_set_error(EI_ERR_IO, "cannot write checkpoint temp file '%s': %s", tmp, strerror(e));
    } else if (close(fd)) {
        const int e = errno;
        unlink(tmp);
        rc = ei_set_error(EI_ERR_IO, "cannot write checkpoint temp file '%s': %s", tmp, strerror(e));
    } else if (rename(tmp, path)) {
        const int e = errno;
        unlink(tmp);
        rc = ei_set_error(EI_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
    } else {
        rc = sync_parent_dir(path);
    }
    free(tmp);
    return rc;
}

int ei_session_save(const ei_session *s, const ei_sampler *smp, const char *path) {
    if (!s || !path || !*path) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_save: NULL session or empty path");
    size_t n = 0;
    int rc = ei_session_save_to_buffer(s, smp, NULL, 0, &n);
    if (rc != EI_ERR_BUFFER_TOO_SMALL) return rc;
    uint8_t *buf = malloc(n);
    if (!buf) return ei_set_error(EI_ERR_NOMEM, "checkpoint: out of memory for %zu bytes", n);
    if (!(rc = ei_session_save_to_buffer(s, smp, buf, n, &n))) rc = write_atomic(path, buf, n);
    free(buf);
    return rc;
}

/* Reads a whole regular file into a malloc'd buffer (caller frees). */
static int read_whole(const char *path, uint8_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ei_set_error(EI_ERR_IO, "cannot open checkpoint '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ei_set_error(EI_ERR_IO, "checkpoint '%s' is not a regular file", path);
    }
    const size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return ei_set_error(EI_ERR_NOMEM, "checkpoint '%s': out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        const ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *n = got; /* a file that shrank while reading is caught as truncated */
    return 0;
}

int ei_session_load(ei_session *s, ei_sampler *smp, const char *path) {
    if (!s || !path) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_load: NULL session or path");
    uint8_t *buf;
    size_t n;
    int rc = read_whole(path, &buf, &n);
    if (rc) return rc;
    if ((rc = ei_session_load_from_buffer(s, smp, buf, n))) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", ei_last_error());
        ei_set_error(rc, "'%s': %s", path, msg);
    }
    free(buf);
    return rc;
}
