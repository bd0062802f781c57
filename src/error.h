/* error.h — internal: set the thread's last-error message (printf-style). Returns err for chaining:
 *   return ei_set_error(EI_ERR_FORMAT, "tensor %s: offset beyond file", name); */
#ifndef EI_ERROR_H
#define EI_ERROR_H

#include "edgeinf.h"

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int ei_set_error(int err, const char *fmt, ...);
void ei_clear_error(void);

#endif
