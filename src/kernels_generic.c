/* kernels_generic.c — ISA file for targets without a SIMD kernel file: the scalar reference table. */
#include "kernels.h"

/* Always the reference kernels (their summation order is the one every SIMD file reproduces). */
const ei_kernel_table *ei_kernels(void) { return &ei_kernels_ref; }
