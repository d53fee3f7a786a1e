#ifndef TIDEMARK_CZLIB_SHIM_H
#define TIDEMARK_CZLIB_SHIM_H
#include <zlib.h>

// inflateInit2 and deflateInit2 are macros in zlib.h; Swift cannot call macros,
// so these inline functions forward to them with the library's version and struct size.
static inline int tidemark_inflate_init_gzip(z_streamp stream) {
    // 15 window bits + 32: detect the gzip (or zlib) header automatically.
    return inflateInit2(stream, 15 + 32);
}

static inline int tidemark_deflate_init_gzip(z_streamp stream, int level) {
    // 15 window bits + 16: write a gzip header and trailer.
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
#endif
