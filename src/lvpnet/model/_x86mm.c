/* Exact int8 matrix products for x86 CPUs, two kernels (``lvpnet.model.exact_mm`` times them against
 * torch's own int8 product and float32 once a process and takes the fastest):
 *
 * - "avx2": vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs into 16 bits with
 *   saturation: a pair sums to at most 2 * 127 * 127 = 32258 < 32767, so it never saturates here and
 *   every sum is exact (oneDNN's AVX2 int8 kernels are not exact for torch's signed-by-signed product
 *   because they shift the signed input by 128 first); vpmaddwd against ones adds the pairs into 32
 *   bits. For CPUs where torch's int8 product is a scalar loop (x86 without AVX-512 VNNI).
 * - "vnni": AVX-512 VNNI's vpdpbusd does the same four products and their sum into 32 bits in one
 *   instruction, on 16 outputs at once, without saturation (Intel from Cascade Lake, AMD from Zen 4).
 *   Where torch's int8 product also runs there, it has no fused activation and no 3x3 layer read
 *   straight from its input, so which is faster is measured, not assumed.
 * - "amx": vnni's, with AMX's tiles (tdpbusd: 16 x 16 outputs of 64 products each, unsigned by
 *   signed, no saturation) for the 3x3 layers read from their input (``amx_rows``; Intel Xeon from
 *   Sapphire Rapids, where Linux lets the process use the tiles).
 *
 * C (n, O) int32 = A (n, K) @ B (K, O), A's entries in [0, 127] (the trunk's 7-bit activations, read
 * as unsigned bytes), B's in [-127, 127]; the sums of a trunk layer stay far below 2**31.
 *
 * B comes packed (``Weights`` in exact_mm): for each block of L outputs (L = 8 for avx2, 16 for vnni and amx)
 * and each group of 4 inputs, 4 L bytes holding the L outputs' 4 weights. A micro-kernel of 4 rows of
 * A keeps its accumulators in registers: 16 outputs (avx2) or up to 48 (vnni). K must be a multiple of
 * 4 and O of 16 (the caller pads with zeros). The kernels are compiled for their instruction sets by
 * attribute, so the module builds with the default flags and the caller asks ``kinds()`` before using
 * one. The GIL is released: band threads run them at once. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ISA_AVX2 0
#define ISA_VNNI 1
#define ISA_AMX 2  /* vnni's kernels, and AMX's tiles for a 3x3 layer read from its input (``amx_rows``) */

/* Where a pixels-first product's sums go: mode 0 into C (n, O) int32 as they are; 2 activated as a
 * hidden layer's: clamp((sums + bias) >> shift, 0, amax) into C (n, O) int8, so the sums never go out
 * to memory and back. */
typedef struct {
    int mode;
    void *C;
    Py_ssize_t n, O;
    const int32_t *bias;
    int shift, amax;
} out_t;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#define HAVE_X86_KERNELS 1
#include <immintrin.h>
#define VNNI __attribute__((target("avx2,avx512f,avx512vnni")))
#include <cpuid.h>
/* AMX: a compiler that knows it (GCC 11, clang 12), and Linux's leave to use the tiles' state */
#if defined(__x86_64__) && defined(__linux__) && defined(bit_AMX_INT8)                                        \
    && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define HAVE_AMX 1
#define AMX __attribute__((target("avx2,avx512f,avx512vnni,amx-tile,amx-int8")))
#include <sys/syscall.h>
#include <unistd.h>
#endif


/* Stores rows p .. p + rows - 1's sums of outputs ob * 8 .. ob * 8 + 15 (two registers a row). */
__attribute__((target("avx2"))) static inline void put(const out_t *o, Py_ssize_t p, Py_ssize_t ob, int rows,
                                                        const __m256i *c) {
    if (o->mode == 0) {
        int32_t *C = (int32_t *)o->C;
        for (int r = 0; r < rows; r++) {
            _mm256_storeu_si256((__m256i *)(C + (p + r) * o->O + ob * 8), c[2 * r]);
            _mm256_storeu_si256((__m256i *)(C + (p + r) * o->O + ob * 8 + 8), c[2 * r + 1]);
        }
    } else {
        int8_t *C = (int8_t *)o->C;
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(o->bias + ob * 8));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(o->bias + ob * 8 + 8));
        const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(o->amax);
        const __m128i sh = _mm_cvtsi32_si128(o->shift);
        for (int r = 0; r < rows; r++) {
            /* an arithmetic shift is floor division by 2**shift, as the float path's floor */
            __m256i v0 = _mm256_sra_epi32(_mm256_add_epi32(c[2 * r], b0), sh);
            __m256i v1 = _mm256_sra_epi32(_mm256_add_epi32(c[2 * r + 1], b1), sh);
            v0 = _mm256_min_epi32(_mm256_max_epi32(v0, zero), top);
            v1 = _mm256_min_epi32(_mm256_max_epi32(v1, zero), top);
            /* 16 values in [0, amax] to 16 bytes, in order (packs works within 128-bit lanes) */
            const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);
            const __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            _mm_storeu_si128((__m128i *)(C + (p + r) * o->O + ob * 8), b);
        }
    }
}

/* The micro-kernel's step: 4 inputs of each of four rows (at a[r] + off, broadcast) by the packed
 * weights of two blocks of 8 outputs (b0, b1), added into the rows' accumulators c[2 r], c[2 r + 1]. */
__attribute__((target("avx2"))) static inline void step4(__m256i *c, const uint8_t *const *a, Py_ssize_t off,
                                                          __m256i b0, __m256i b1, __m256i ones) {
    for (int r = 0; r < 4; r++) {
        int32_t v;
        memcpy(&v, a[r] + off, 4);
        const __m256i x = _mm256_set1_epi32(v);
        c[2 * r] = _mm256_add_epi32(c[2 * r], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones));
        c[2 * r + 1] = _mm256_add_epi32(c[2 * r + 1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones));
    }
}

/* Where a group of 4 rows reads its inputs: ``taps`` runs of G groups of 4 bytes, run t of row r at
 * base[r] + t * tap_stride, and the packed weights of run t start at group t * G. A plain product is
 * one run of K bytes a row; a 3x3 layer read from its padded input three (``gemm3_rows``). */
typedef struct {
    int taps;
    Py_ssize_t tap_stride, G, Q;  /* Q: groups of 4 in a packed column (K / 4) */
    const int8_t *Bp;
    Py_ssize_t O;
} src_t;

/* The kernels' pass over 4 rows of A (at base[r]; the group's first row p, ``rows`` of them real),
 * every output. */
__attribute__((target("avx2"))) static void tiles_avx2(const src_t *s, const uint8_t *const *base, Py_ssize_t p,
                                                      int rows, const out_t *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (Py_ssize_t ob = 0; ob < s->O / 8; ob += 2) {
        __m256i c[8];
        for (int i = 0; i < 8; i++)
            c[i] = _mm256_setzero_si256();
        for (int t = 0; t < s->taps; t++) {
            const uint8_t *const a[4] = {base[0] + t * s->tap_stride, base[1] + t * s->tap_stride,
                                         base[2] + t * s->tap_stride, base[3] + t * s->tap_stride};
            const int8_t *p0 = s->Bp + (ob * s->Q + t * s->G) * 32, *p1 = p0 + s->Q * 32;
            for (Py_ssize_t g = 0; g < s->G; g++)
                step4(c, a, 4 * g, _mm256_loadu_si256((const __m256i *)(p0 + g * 32)),
                      _mm256_loadu_si256((const __m256i *)(p1 + g * 32)), ones);
        }
        put(out, p, ob, rows, c);
    }
}

/* ``nb`` blocks of 16 outputs from block ``jb`` for 4 rows: 4 nb accumulators and nb weight registers
 * (a constant where it is inlined, so the loops unroll). */
VNNI static inline __attribute__((always_inline)) void tile_vnni(const src_t *s, const uint8_t *const *base,
                                                                 Py_ssize_t p, int rows, const out_t *out,
                                                                 Py_ssize_t jb, const int nb) {
    __m512i c[12];
    for (int i = 0; i < 4 * nb; i++)
        c[i] = _mm512_setzero_si512();
    for (int t = 0; t < s->taps; t++) {
        const uint8_t *const a[4] = {base[0] + t * s->tap_stride, base[1] + t * s->tap_stride,
                                     base[2] + t * s->tap_stride, base[3] + t * s->tap_stride};
        const int8_t *w0 = s->Bp + (jb * s->Q + t * s->G) * 64;
        for (Py_ssize_t g = 0; g < s->G; g++) {
            __m512i wv[3];
            for (int j = 0; j < nb; j++)
                wv[j] = _mm512_loadu_si512((const void *)(w0 + (j * s->Q + g) * 64));
            for (int r = 0; r < 4; r++) {
                int32_t v;
                memcpy(&v, a[r] + 4 * g, 4);
                const __m512i x = _mm512_set1_epi32(v);
                for (int j = 0; j < nb; j++)
                    c[r * nb + j] = _mm512_dpbusd_epi32(c[r * nb + j], x, wv[j]);
            }
        }
    }
    for (int j = 0; j < nb; j++) {  /* as two blocks of 8 outputs a row, ``put``'s form */
        __m256i h[8];
        for (int r = 0; r < 4; r++) {
            h[2 * r] = _mm512_castsi512_si256(c[r * nb + j]);
            h[2 * r + 1] = _mm512_extracti64x4_epi64(c[r * nb + j], 1);
        }
        put(out, p, 2 * (jb + j), rows, h);
    }
}

VNNI static void tiles_vnni(const src_t *s, const uint8_t *const *base, Py_ssize_t p, int rows, const out_t *out) {
    const Py_ssize_t blocks = s->O / 16;
    Py_ssize_t jb = 0;
    for (; jb + 3 <= blocks; jb += 3)
        tile_vnni(s, base, p, rows, out, jb, 3);
    if (blocks - jb == 2)
        tile_vnni(s, base, p, rows, out, jb, 2);
    else if (blocks - jb == 1)
        tile_vnni(s, base, p, rows, out, jb, 1);
}

static void tiles(int isa, const src_t *s, const uint8_t *const *base, Py_ssize_t p, int rows, const out_t *out) {
    if (isa != ISA_AVX2)
        tiles_vnni(s, base, p, rows, out);
    else
        tiles_avx2(s, base, p, rows, out);
}

/* A (n, K): rows of four at a time; a short last group repeats its first row (computed, not stored). */
static void gemm_rows(int isa, const uint8_t *A, Py_ssize_t n, Py_ssize_t K, const int8_t *Bp, Py_ssize_t O,
                      const out_t *out) {
    const src_t s = {1, 0, K / 4, K / 4, Bp, O};
    for (Py_ssize_t p = 0; p < n; p += 4) {
        const int rows = n - p < 4 ? (int)(n - p) : 4;
        const uint8_t *a[4];
        for (int r = 0; r < 4; r++)
            a[r] = A + (p + (r < rows ? r : 0)) * K;
        tiles(isa, &s, a, p, rows, out);
    }
}

/* The same product for a 3x3 layer (zero padding 1) read straight from its input X (h, w, C), C a
 * multiple of 4: pixel (y, x)'s K = 9 C inputs are tap t = 3 ki + kj's channels, X[y + ki - 1,
 * x + kj - 1, :], zero outside the plane (``int8_trunk._unfold3``'s column order, so the packed
 * weights are the same). Rows y0 to y1 of the layer, output row p = (y - y0) w + x. The band's input
 * rows, one more above and below, are copied into ``pad`` ((y1 - y0 + 2) x (w + 2) x C, zero around the
 * plane), where a pixel's three taps of a tap row are one run of 3 C bytes: no unfolded copy of the
 * input (9 times its size) is written and read back. */
static void fill_pad(const uint8_t *X, Py_ssize_t h, Py_ssize_t w, Py_ssize_t C, Py_ssize_t y0, Py_ssize_t y1,
                     uint8_t *pad) {
    const Py_ssize_t stride = (w + 2) * C;
    for (Py_ssize_t r = 0; r < y1 - y0 + 2; r++) {
        const Py_ssize_t y = y0 + r - 1;
        uint8_t *row = pad + r * stride;
        memset(row, 0, (size_t)C);
        memset(row + (w + 1) * C, 0, (size_t)C);
        if (y < 0 || y >= h)
            memset(row + C, 0, (size_t)(w * C));
        else
            memcpy(row + C, X + y * w * C, (size_t)(w * C));
    }
}

static void gemm3_rows(int isa, const uint8_t *X, Py_ssize_t h, Py_ssize_t w, Py_ssize_t C, Py_ssize_t y0,
                       Py_ssize_t y1, const int8_t *Bp, Py_ssize_t Kp, Py_ssize_t O, const out_t *out, uint8_t *pad) {
    const Py_ssize_t n = (y1 - y0) * w, stride = (w + 2) * C;
    fill_pad(X, h, w, C, y0, y1, pad);
    const src_t s = {3, stride, 3 * C / 4, Kp / 4, Bp, O};  /* tap row ki: the run of 3 C bytes at column x */
    for (Py_ssize_t p = 0; p < n; p += 4) {
        const int rows = n - p < 4 ? (int)(n - p) : 4;
        const uint8_t *base[4];
        for (int r = 0; r < 4; r++) {  /* a short last group repeats pixel p (computed, not stored) */
            const Py_ssize_t q = p + (r < rows ? r : 0);
            base[r] = pad + (q / w) * stride + (q % w) * C;
        }
        tiles(isa, &s, base, p, rows, out);
    }
}

/* Channels-first sums C (O_out, n) = W (O, K) @ A (n, K)^T, the head's form, computed that way round:
 * a register's lanes are L pixels of one output (L = 16 for vnni, 8 for avx2), so each output's row
 * of C is written in whole registers, in order. (Computed pixels-first and transposed on the way out,
 * the stores, 16 bytes to each of up to 160 rows of C a group of four pixels, took 2.4 times the
 * multiplications.) A is first repacked by blocks of L pixels, ``At`` (ceil(n / 2L) 2, K / 4, L, 4):
 * a block's 4 bytes of each pixel for a group of 4 inputs in one register (zero pixels past n); W's
 * rows are read as they are, 4 bytes broadcast, and it has O rows, O a multiple of 8 (zero rows past
 * O_out). A micro-kernel of 2 blocks of pixels by 8 outputs (vnni) or 4 (avx2). */
static void pack_pixels(const uint8_t *A, Py_ssize_t n, Py_ssize_t K, int L, uint8_t *At, Py_ssize_t blocks) {
    const Py_ssize_t Q = K / 4;
    memset(At, 0, (size_t)(blocks * L * K));
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t *dst = At + (i / L) * L * K + (i % L) * 4;
        for (Py_ssize_t q = 0; q < Q; q++)
            memcpy(dst + q * L * 4, A + i * K + 4 * q, 4);
    }
}

VNNI static void gemm_t_vnni(const uint8_t *At, Py_ssize_t n, Py_ssize_t K, const int8_t *W, Py_ssize_t O_out,
                             const int32_t *bias, int32_t *C) {
    const Py_ssize_t Q = K / 4;
    for (Py_ssize_t p = 0; p < n; p += 32) {
        const uint8_t *a0 = At + (p / 16) * 16 * K, *a1 = a0 + 16 * K;
        for (Py_ssize_t o = 0; o < O_out; o += 8) {
            __m512i c[16];
            for (int j = 0; j < 8; j++)
                c[2 * j] = c[2 * j + 1] = _mm512_set1_epi32(bias && o + j < O_out ? bias[o + j] : 0);
            for (Py_ssize_t q = 0; q < Q; q++) {
                const __m512i x0 = _mm512_loadu_si512((const void *)(a0 + q * 64));
                const __m512i x1 = _mm512_loadu_si512((const void *)(a1 + q * 64));
                for (int j = 0; j < 8; j++) {
                    int32_t v;
                    memcpy(&v, W + (o + j) * K + 4 * q, 4);
                    const __m512i wv = _mm512_set1_epi32(v);
                    c[2 * j] = _mm512_dpbusd_epi32(c[2 * j], x0, wv);
                    c[2 * j + 1] = _mm512_dpbusd_epi32(c[2 * j + 1], x1, wv);
                }
            }
            for (int j = 0; j < 8 && o + j < O_out; j++)
                for (int b = 0; b < 2; b++) {
                    const Py_ssize_t at = p + 16 * b;
                    if (at + 16 <= n)
                        _mm512_storeu_si512((void *)(C + (o + j) * n + at), c[2 * j + b]);
                    else if (at < n) {
                        int32_t t[16];
                        _mm512_storeu_si512((void *)t, c[2 * j + b]);
                        memcpy(C + (o + j) * n + at, t, (size_t)(n - at) * 4);  /* the row's last pixels */
                    }
                }
        }
    }
}

__attribute__((target("avx2"))) static void gemm_t_avx2(const uint8_t *At, Py_ssize_t n, Py_ssize_t K,
                                                       const int8_t *W, Py_ssize_t O_out, const int32_t *bias,
                                                       int32_t *C) {
    const Py_ssize_t Q = K / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    for (Py_ssize_t p = 0; p < n; p += 16) {
        const uint8_t *a0 = At + (p / 8) * 8 * K, *a1 = a0 + 8 * K;
        for (Py_ssize_t o = 0; o < O_out; o += 4) {
            __m256i c[8];
            for (int j = 0; j < 4; j++)
                c[2 * j] = c[2 * j + 1] = _mm256_set1_epi32(bias && o + j < O_out ? bias[o + j] : 0);
            for (Py_ssize_t q = 0; q < Q; q++) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a0 + q * 32));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a1 + q * 32));
                for (int j = 0; j < 4; j++) {
                    int32_t v;
                    memcpy(&v, W + (o + j) * K + 4 * q, 4);
                    const __m256i wv = _mm256_set1_epi32(v);
                    c[2 * j] = _mm256_add_epi32(c[2 * j], _mm256_madd_epi16(_mm256_maddubs_epi16(x0, wv), ones));
                    c[2 * j + 1] = _mm256_add_epi32(c[2 * j + 1], _mm256_madd_epi16(_mm256_maddubs_epi16(x1, wv), ones));
                }
            }
            for (int j = 0; j < 4 && o + j < O_out; j++)
                for (int b = 0; b < 2; b++) {
                    const Py_ssize_t at = p + 8 * b;
                    if (at + 8 <= n)
                        _mm256_storeu_si256((__m256i *)(C + (o + j) * n + at), c[2 * j + b]);
                    else if (at < n) {
                        int32_t t[8];
                        _mm256_storeu_si256((__m256i *)t, c[2 * j + b]);
                        memcpy(C + (o + j) * n + at, t, (size_t)(n - at) * 4);  /* the row's last pixels */
                    }
                }
        }
    }
}

#ifdef HAVE_AMX
/* AMX (Intel from Sapphire Rapids): a 3x3 layer read from its padded input as ``gemm3_rows`` does, by
 * tiles of 16 pixels of one row. A pixel's tap row ki is a run of 3 C bytes, and consecutive pixels'
 * runs are C bytes apart, so an A tile (16 pixels by 64 bytes of their runs) is one tileloadd with
 * stride C, nothing copied; the bytes past a run's end (a chunk of 64 that 3 C does not fill) are the
 * next pixels' and meet zero weights. ``Bt`` (``Weights.amx_taps``): for each block of 16 outputs,
 * tap row and chunk, a B tile of 16 groups of 4 inputs (rows, zero past 3 C) by 16 outputs' 4 weights.
 * tdpbusd sums unsigned activations by signed weights into int32 without saturation: the same sums.
 * ``pad`` has ``amx_slack`` bytes past the plane for the last tile's reads. Tiles: C in 0-2 (up to 48
 * outputs at once), A in 4, B in 5. */
static Py_ssize_t amx_chunks(Py_ssize_t C) { return (3 * C + 63) / 64; }

static Py_ssize_t amx_slack(Py_ssize_t C) { return 16 * C + 64 * amx_chunks(C); }

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg_t;

/* Tile ``j``'s 16 pixels' sums (a row of 16 int32 each, at T) to C, pixels p .. p + valid - 1,
 * outputs 16 jb .. 16 jb + 15, as ``put``: as they are (mode 0), or activated into int8 (mode 2). */
AMX static void amx_put(const out_t *o, const int32_t *T, Py_ssize_t p, int valid, Py_ssize_t jb) {
    if (o->mode == 0) {
        int32_t *C = (int32_t *)o->C;
        for (int r = 0; r < valid; r++)
            _mm512_storeu_si512((void *)(C + (p + r) * o->O + jb * 16), _mm512_loadu_si512((const void *)(T + 16 * r)));
        return;
    }
    int8_t *C = (int8_t *)o->C;
    const __m512i b = _mm512_loadu_si512((const void *)(o->bias + jb * 16));
    const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(o->amax);
    const __m128i sh = _mm_cvtsi32_si128(o->shift);
    for (int r = 0; r < valid; r++) {
        __m512i v = _mm512_sra_epi32(_mm512_add_epi32(_mm512_loadu_si512((const void *)(T + 16 * r)), b), sh);
        v = _mm512_min_epi32(_mm512_max_epi32(v, zero), top);
        _mm_storeu_si128((__m128i *)(C + (p + r) * o->O + jb * 16), _mm512_cvtepi32_epi8(v));
    }
}

/* The chunks of one pixel tile for ``nb`` blocks of outputs from ``jb``; tile numbers are literals. */
#define AMX_DP(j)                                                                                                \
    do {                                                                                                         \
        _tile_loadd(5, Bt + (((jb + (j)) * 3 + ki) * nch + kc) * 1024, 64);                                      \
        _tile_dpbusd(j, 4, 5);                                                                                   \
    } while (0)

AMX static void amx_rows(const uint8_t *pad, Py_ssize_t w, Py_ssize_t C, Py_ssize_t y0, Py_ssize_t y1,
                         const int8_t *Bt, Py_ssize_t O, const out_t *out) {
    const Py_ssize_t stride = (w + 2) * C, nch = amx_chunks(C), blocks = O / 16;
    tilecfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 6; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    /* not ``_tile_loadconfig``: its asm tells the compiler it reads 8 bytes of the config, so the
     * stores of the other 56 may be dropped as dead (seen as wrong sums in fresh threads) */
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
    int32_t T[3][256] __attribute__((aligned(64)));
    for (Py_ssize_t jb = 0; jb < blocks; jb += 3) {
        const int nb = blocks - jb < 3 ? (int)(blocks - jb) : 3;
        for (Py_ssize_t y = y0; y < y1; y++)
            for (Py_ssize_t x0 = 0; x0 < w; x0 += 16) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                for (Py_ssize_t ki = 0; ki < 3; ki++) {
                    const uint8_t *a = pad + (y - y0 + ki) * stride + x0 * C;
                    for (Py_ssize_t kc = 0; kc < nch; kc++) {
                        _tile_loadd(4, a + 64 * kc, C);
                        AMX_DP(0);
                        if (nb > 1)
                            AMX_DP(1);
                        if (nb > 2)
                            AMX_DP(2);
                    }
                }
                _tile_stored(0, T[0], 64);
                _tile_stored(1, T[1], 64);
                _tile_stored(2, T[2], 64);
                const int valid = w - x0 < 16 ? (int)(w - x0) : 16;
                for (int j = 0; j < nb; j++)
                    amx_put(out, T[j], (y - y0) * w + x0, valid, jb + j);
            }
    }
    _tile_release();
}
#undef AMX_DP
#endif
#endif

#ifdef HAVE_X86_KERNELS
/* AMX needs the CPU's tiles and the kernel's leave to use their state (Linux 5.16 on, once a process). */
static int amx_usable(void) {
    static int ok = -1;
#ifdef HAVE_AMX
    if (ok < 0) {
        unsigned a, b, c, d;
        ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & bit_AMX_TILE) && (d & bit_AMX_INT8)
             && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    }
#else
    ok = 0;
#endif
    return ok;
}
#endif

static int cpu_has(int isa) {
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (isa == ISA_VNNI || isa == ISA_AMX)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
               && __builtin_cpu_supports("avx512vnni") && (isa == ISA_VNNI || amx_usable());
    return isa == ISA_AVX2 && __builtin_cpu_supports("avx2");
#else
    (void)isa;
    return 0;
#endif
}

static PyObject *kinds(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    PyObject *out = PyList_New(0);
    const char *names[3] = {"avx2", "vnni", "amx"};
    for (int isa = 0; out && isa < 3; isa++)
        if (cpu_has(isa)) {
            PyObject *name = PyUnicode_FromString(names[isa]);
            if (!name || PyList_Append(out, name) < 0) {
                Py_XDECREF(name);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(name);
        }
    return out;
}

/* ``per``: O a multiple of it (16 for the pixels-first products' packed blocks, 8 for ``gemm_t``). */
static int check(int isa, Py_ssize_t a, Py_ssize_t n, Py_ssize_t K, Py_ssize_t b, Py_ssize_t O, Py_ssize_t c,
                 Py_ssize_t per) {
    if (n < 0 || K <= 0 || K % 4 || O <= 0 || O % per || !a || !b || !c) {
        PyErr_Format(PyExc_ValueError, "gemm: K must be a positive multiple of 4 and O of %zd", per);
        return 0;
    }
    if (!cpu_has(isa)) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: this CPU does not run that kernel");
        return 0;
    }
    return 1;
}

static void run(int isa, Py_ssize_t a, Py_ssize_t n, Py_ssize_t K, Py_ssize_t b, Py_ssize_t O, const out_t *out) {
#ifdef HAVE_X86_KERNELS
    Py_BEGIN_ALLOW_THREADS
    gemm_rows(isa, (const uint8_t *)a, n, K, (const int8_t *)b, O, out);
    Py_END_ALLOW_THREADS
#else
    (void)isa, (void)a, (void)n, (void)K, (void)b, (void)O, (void)out;
#endif
}

/* gemm(isa, a, n, K, packed_b, O, c): C (n, O) int32; addresses of contiguous buffers (the caller's
 * tensors keep them alive), sizes as above; ``isa`` 0 avx2, 1 vnni or 2 amx (the packing's). */
static PyObject *gemm(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, b, O, c;
    int isa;
    if (!PyArg_ParseTuple(args, "innnnnn", &isa, &a, &n, &K, &b, &O, &c))
        return NULL;
    if (!check(isa, a, n, K, b, O, c, 16))
        return NULL;
    const out_t out = {0, (void *)c, n, O, NULL, 0, 0};
    run(isa, a, n, K, b, O, &out);
    Py_RETURN_NONE;
}

/* gemm_t(isa, a, n, K, w, O, c, O_out, bias): C (O_out, n) int32 = W (O, K) @ A (n, K)^T + bias, W int8
 * as it is, O a multiple of 8 with zero rows past O_out (``gemm_t_vnni``), bias (O_out,) int32 or 0. */
static PyObject *gemm_t(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, w, O, c, O_out, bias;
    int isa;
    if (!PyArg_ParseTuple(args, "innnnnnnn", &isa, &a, &n, &K, &w, &O, &c, &O_out, &bias))
        return NULL;
    if (!check(isa, a, n, K, w, O, c, 8))
        return NULL;
    if (O_out <= 0 || O_out > O) {
        PyErr_SetString(PyExc_ValueError, "gemm_t: 0 < O_out <= O");
        return NULL;
    }
    const int L = isa == ISA_AVX2 ? 8 : 16;
    const Py_ssize_t blocks = 2 * ((n + 2 * L - 1) / (2 * L));  /* whole pairs of pixel blocks */
    uint8_t *At = malloc((size_t)(blocks * L * K) + 1);
    if (!At)
        return PyErr_NoMemory();
#ifdef HAVE_X86_KERNELS
    Py_BEGIN_ALLOW_THREADS
    pack_pixels((const uint8_t *)a, n, K, L, At, blocks);
    if (isa != ISA_AVX2)
        gemm_t_vnni(At, n, K, (const int8_t *)w, O_out, (const int32_t *)bias, (int32_t *)c);
    else
        gemm_t_avx2(At, n, K, (const int8_t *)w, O_out, (const int32_t *)bias, (int32_t *)c);
    Py_END_ALLOW_THREADS
#endif
    free(At);
    Py_RETURN_NONE;
}

/* gemm_act(isa, a, n, K, packed_b, O, c, bias, shift, amax): C (n, O) int8 = clamp((A @ B + bias) >>
 * shift, 0, amax), bias (O,) int32. */
static PyObject *gemm_act(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, b, O, c, bias;
    int isa, shift, amax;
    if (!PyArg_ParseTuple(args, "innnnnnnii", &isa, &a, &n, &K, &b, &O, &c, &bias, &shift, &amax))
        return NULL;
    if (!check(isa, a, n, K, b, O, c, 16))
        return NULL;
    if (!bias || shift < 0 || shift > 31 || amax < 0 || amax > 127) {
        PyErr_SetString(PyExc_ValueError, "gemm_act: a bias, 0 <= shift <= 31, 0 <= amax <= 127");
        return NULL;
    }
    const out_t out = {2, (void *)c, n, O, (const int32_t *)bias, shift, amax};
    run(isa, a, n, K, b, O, &out);
    Py_RETURN_NONE;
}

/* gemm3(isa, x, h, w, C, y0, y1, packed_b, Kp, O, c, bias, shift, amax): a 3x3 layer's rows y0 to y1
 * from its input x (h, w, C) uint8 (``gemm3_rows``): the activated int8 (rows * w, O) where ``bias``
 * is given (not 0), else the int32 sums. */
static PyObject *gemm3(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t x, h, w, C, y0, y1, b, Kp, O, c, bias;
    int isa, shift, amax;
    if (!PyArg_ParseTuple(args, "innnnnnnnnnnii", &isa, &x, &h, &w, &C, &y0, &y1, &b, &Kp, &O, &c, &bias, &shift,
                          &amax))
        return NULL;
    if (!check(isa, x, (y1 - y0) * w, Kp, b, O, c, 16))
        return NULL;
    if (h <= 0 || w <= 0 || C <= 0 || C % 4 || 9 * C > Kp || y0 < 0 || y1 <= y0 || y1 > h || shift < 0 || shift > 31
        || amax < 0 || amax > 127) {
        PyErr_SetString(PyExc_ValueError, "gemm3: C a multiple of 4 with 9 C <= Kp, 0 <= y0 < y1 <= h");
        return NULL;
    }
    const size_t plane = (size_t)((y1 - y0 + 2) * (w + 2) * C);
#ifdef HAVE_AMX
    const size_t slack = isa == ISA_AMX ? (size_t)amx_slack(C) : 0;
#else
    const size_t slack = 0;
#endif
    uint8_t *pad = malloc(plane + slack);
    if (!pad)
        return PyErr_NoMemory();
    memset(pad + plane, 0, slack);
    const out_t out = {bias ? 2 : 0, (void *)c, (y1 - y0) * w, O, (const int32_t *)bias, shift, amax};
#ifdef HAVE_X86_KERNELS
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AMX
    if (isa == ISA_AMX) {  /* ``b``: the tap rows' B tiles (``Weights.amx_taps``) */
        fill_pad((const uint8_t *)x, h, w, C, y0, y1, pad);
        amx_rows(pad, w, C, y0, y1, (const int8_t *)b, O, &out);
    } else
#endif
        gemm3_rows(isa, (const uint8_t *)x, h, w, C, y0, y1, (const int8_t *)b, Kp, O, &out, pad);
    Py_END_ALLOW_THREADS
#else
    (void)out, (void)b;
#endif
    free(pad);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"kinds", kinds, METH_NOARGS, "The kernels this CPU runs: a list of \"avx2\", \"vnni\", \"amx\"."},
    {"gemm", gemm, METH_VARARGS, "gemm(isa, a, n, K, packed_b, O, c): C = A @ B, exact int32 sums."},
    {"gemm_t", gemm_t, METH_VARARGS,
     "gemm_t(isa, a, n, K, w, O, c, O_out, bias): C (O_out, n) = W @ A.T + bias, exact int32 sums."},
    {"gemm3", gemm3, METH_VARARGS,
     "gemm3(isa, x, h, w, C, y0, y1, packed_b, Kp, O, c, bias, shift, amax): a 3x3 layer's rows without unfolding."},
    {"gemm_act", gemm_act, METH_VARARGS,
     "gemm_act(isa, a, n, K, packed_b, O, c, bias, shift, amax): C = clamp((A @ B + bias) >> shift, 0, amax)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_x86mm", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__x86mm(void) { return PyModule_Create(&module); }
