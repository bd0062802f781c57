/* sampler.h — internal: sampler state (RNG + history) as bytes, for session checkpoints. */
#ifndef EI_SAMPLER_H
#define EI_SAMPLER_H

#include <stddef.h>

#include "edgeinf.h"

/* Bytes ei_sampler_state_save writes. */
size_t ei_sampler_state_size(const ei_sampler *smp);
/* Writes the state into buf (cap >= ei_sampler_state_size). 0 or EI_ERR_BUFFER_TOO_SMALL. */
int ei_sampler_state_save(const ei_sampler *smp, void *buf, size_t cap);
/* Restores a state written by ei_sampler_state_save with the same params. EI_ERR_FORMAT on a malformed buffer. */
int ei_sampler_state_load(ei_sampler *smp, const void *buf, size_t size);

#endif
