/* spike.c — a minimal wasm module for tests/browser/idbfs/run.mjs: writes a file through stdio, as the engine's
 * ei_session_save would on an Emscripten FS. */
#include <emscripten/emscripten.h>
#include <stdio.h>
#include <stdlib.h>

/* Writes n bytes of value v to path; 0 on success, -1 if it cannot be opened, -2 on a short write. */
EMSCRIPTEN_KEEPALIVE int spike_write(const char *path, int n, int v) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char *b = malloc((size_t)n);
    if (!b) {
        fclose(f);
        return -2;
    }
    for (int i = 0; i < n; i++) b[i] = (char)v;
    size_t w = fwrite(b, 1, (size_t)n, f);
    free(b);
    fclose(f);
    return w == (size_t)n ? 0 : -2;
}
