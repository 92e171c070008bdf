/* Exact int8 matrix products with AVX2, for CPUs where torch's own int8 product is a scalar loop
 * (``lvpnet.model.exact_mm``: every x86 CPU without AVX-512 VNNI, such as AMD before Zen 4).
 *
 * C (n, O) int32 = A (n, K) @ B (K, O), A's entries in [0, 127] (the trunk's 7-bit activations, read
 * as unsigned bytes), B's in [-127, 127]. vpmaddubsw multiplies unsigned by signed bytes and adds
 * adjacent pairs into 16 bits with saturation: a pair sums to at most 2 * 127 * 127 = 32258 < 32767,
 * so it never saturates here and every sum is exact (the reason oneDNN's AVX2 int8 kernels are not
 * exact for torch's signed-by-signed product is that they shift the signed input by 128 first).
 * vpmaddwd against ones adds the pairs into 32 bits; the sums of a trunk layer stay far below 2**31.
 *
 * B comes packed (``pack`` in exact_mm): for each block of 8 outputs and each group of 4 inputs,
 * 32 bytes holding the 8 outputs' 4 weights. A micro-kernel of 4 rows of A by 16 outputs keeps 8
 * accumulators in registers. K must be a multiple of 4 and O of 16 (the caller pads with zeros).
 * The kernel is compiled for AVX2 by attribute, so the module builds with the default flags and the
 * caller asks ``supported()`` before using it. The GIL is released: band threads run it at once. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>

/* Where a product's sums go: mode 0 into C (n, O) int32 as they are; 1 into C (O_out, n) int32
 * channels first (the head's layout), only the outputs below O_out (the rest are the zero padding's);
 * 2 activated as a hidden layer's: clamp((sums + bias) >> shift, 0, amax) into C (n, O) int8, so
 * the sums never go out to memory and back. */
typedef struct {
    int mode;
    void *C;
    Py_ssize_t n, O, O_out;
    const int32_t *bias;
    int shift, amax;
} out_t;

/* Stores rows p .. p + rows - 1's sums of outputs ob * 8 .. ob * 8 + 15 (two registers a row). */
__attribute__((target("avx2"))) static inline void put(const out_t *o, Py_ssize_t p, Py_ssize_t ob, int rows,
                                                        const __m256i *c) {
    if (o->mode == 0) {
        int32_t *C = (int32_t *)o->C;
        for (int r = 0; r < rows; r++) {
            _mm256_storeu_si256((__m256i *)(C + (p + r) * o->O + ob * 8), c[2 * r]);
            _mm256_storeu_si256((__m256i *)(C + (p + r) * o->O + ob * 8 + 8), c[2 * r + 1]);
        }
    } else if (o->mode == 1) {
        int32_t *C = (int32_t *)o->C, t[4][16];
        for (int r = 0; r < rows; r++) {
            _mm256_storeu_si256((__m256i *)t[r], c[2 * r]);
            _mm256_storeu_si256((__m256i *)(t[r] + 8), c[2 * r + 1]);
        }
        for (int k = 0; k < 16 && ob * 8 + k < o->O_out; k++)
            for (int r = 0; r < rows; r++)
                C[(ob * 8 + k) * o->n + p + r] = t[r][k];
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

/* Rows of four at a time; a short last group repeats its first row (computed, not stored). */
__attribute__((target("avx2"))) static void gemm_avx2(const uint8_t *A, Py_ssize_t n, Py_ssize_t K,
                                                     const int8_t *Bp, Py_ssize_t O, const out_t *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const Py_ssize_t Q = K / 4;
    for (Py_ssize_t p = 0; p < n; p += 4) {
        const int rows = n - p < 4 ? (int)(n - p) : 4;
        const uint8_t *a[4];
        for (int r = 0; r < 4; r++)
            a[r] = A + (p + (r < rows ? r : 0)) * K;
        for (Py_ssize_t ob = 0; ob < O / 8; ob += 2) {
            const int8_t *p0 = Bp + ob * Q * 32, *p1 = p0 + Q * 32;
            __m256i c[8];
            for (int i = 0; i < 8; i++)
                c[i] = _mm256_setzero_si256();
            for (Py_ssize_t q = 0; q < Q; q++)
                step4(c, a, 4 * q, _mm256_loadu_si256((const __m256i *)(p0 + q * 32)),
                      _mm256_loadu_si256((const __m256i *)(p1 + q * 32)), ones);
            put(out, p, ob, rows, c);
        }
    }
}

/* The same product for a 3x3 layer (zero padding 1) read straight from its input X (h, w, C), C a
 * multiple of 4: pixel (y, x)'s K = 9 C inputs are tap t = 3 ki + kj's channels, X[y + ki - 1,
 * x + kj - 1, :], zero outside the plane (``int8_trunk._unfold3``'s column order, so the packed
 * weights are the same). Rows y0 to y1 of the layer, output row p = (y - y0) w + x. The band's input
 * rows, one more above and below, are copied into ``pad`` ((y1 - y0 + 2) x (w + 2) x C, zero around the
 * plane), where a pixel's three taps of a tap row are one run of 3 C bytes: no unfolded copy of the
 * input (9 times its size) is written and read back. */
__attribute__((target("avx2"))) static void gemm3_avx2(const uint8_t *X, Py_ssize_t h, Py_ssize_t w, Py_ssize_t C,
                                                      Py_ssize_t y0, Py_ssize_t y1, const int8_t *Bp, Py_ssize_t Kp,
                                                      Py_ssize_t O, const out_t *out, uint8_t *pad) {
    const __m256i ones = _mm256_set1_epi16(1);
    const Py_ssize_t Q = Kp / 4, G = 3 * C / 4, n = (y1 - y0) * w, stride = (w + 2) * C;
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
    for (Py_ssize_t p = 0; p < n; p += 4) {
        const int rows = n - p < 4 ? (int)(n - p) : 4;
        const uint8_t *base[4];
        for (int r = 0; r < 4; r++) {  /* a short last group repeats pixel p (computed, not stored) */
            const Py_ssize_t q = p + (r < rows ? r : 0);
            base[r] = pad + (q / w) * stride + (q % w) * C;
        }
        for (Py_ssize_t ob = 0; ob < O / 8; ob += 2) {
            const int8_t *p0 = Bp + ob * Q * 32, *p1 = p0 + Q * 32;
            __m256i c[8];
            for (int i = 0; i < 8; i++)
                c[i] = _mm256_setzero_si256();
            for (int ki = 0; ki < 3; ki++) {  /* tap row ki: the run of 3 C bytes at column x of padded row y - y0 + ki */
                const uint8_t *const a[4] = {base[0] + ki * stride, base[1] + ki * stride, base[2] + ki * stride,
                                             base[3] + ki * stride};
                const int8_t *q0 = p0 + ki * G * 32, *q1 = p1 + ki * G * 32;
                for (Py_ssize_t g = 0; g < G; g++)
                    step4(c, a, 4 * g, _mm256_loadu_si256((const __m256i *)(q0 + g * 32)),
                          _mm256_loadu_si256((const __m256i *)(q1 + g * 32)), ones);
            }
            put(out, p, ob, rows, c);
        }
    }
}
#endif

static int cpu_has_avx2(void) {
#ifdef HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static PyObject *supported(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(cpu_has_avx2());
}

static int check(Py_ssize_t a, Py_ssize_t n, Py_ssize_t K, Py_ssize_t b, Py_ssize_t O, Py_ssize_t c) {
    if (n < 0 || K <= 0 || K % 4 || O <= 0 || O % 16 || !a || !b || !c) {
        PyErr_SetString(PyExc_ValueError, "gemm: K must be a positive multiple of 4 and O of 16");
        return 0;
    }
    if (!cpu_has_avx2()) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: this CPU has no AVX2");
        return 0;
    }
    return 1;
}

static void run(Py_ssize_t a, Py_ssize_t n, Py_ssize_t K, Py_ssize_t b, Py_ssize_t O, const out_t *out) {
#ifdef HAVE_AVX2_KERNEL
    Py_BEGIN_ALLOW_THREADS
    gemm_avx2((const uint8_t *)a, n, K, (const int8_t *)b, O, out);
    Py_END_ALLOW_THREADS
#else
    (void)a, (void)n, (void)K, (void)b, (void)O, (void)out;
#endif
}

/* gemm(a, n, K, packed_b, O, c, O_out, trans): addresses of contiguous buffers (the caller's tensors
 * keep them alive), sizes as above; ``trans``: C is (O_out, n) int32, channels first, else (n, O). */
static PyObject *gemm(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, b, O, c, O_out;
    int trans;
    if (!PyArg_ParseTuple(args, "nnnnnnnp", &a, &n, &K, &b, &O, &c, &O_out, &trans))
        return NULL;
    if (!check(a, n, K, b, O, c))
        return NULL;
    if (O_out <= 0 || O_out > O) {
        PyErr_SetString(PyExc_ValueError, "gemm: 0 < O_out <= O");
        return NULL;
    }
    const out_t out = {trans ? 1 : 0, (void *)c, n, O, O_out, NULL, 0, 0};
    run(a, n, K, b, O, &out);
    Py_RETURN_NONE;
}

/* gemm_act(a, n, K, packed_b, O, c, bias, shift, amax): C (n, O) int8 = clamp((A @ B + bias) >> shift,
 * 0, amax), bias (O,) int32. */
static PyObject *gemm_act(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, b, O, c, bias;
    int shift, amax;
    if (!PyArg_ParseTuple(args, "nnnnnnnii", &a, &n, &K, &b, &O, &c, &bias, &shift, &amax))
        return NULL;
    if (!check(a, n, K, b, O, c))
        return NULL;
    if (!bias || shift < 0 || shift > 31 || amax < 0 || amax > 127) {
        PyErr_SetString(PyExc_ValueError, "gemm_act: a bias, 0 <= shift <= 31, 0 <= amax <= 127");
        return NULL;
    }
    const out_t out = {2, (void *)c, n, O, O, (const int32_t *)bias, shift, amax};
    run(a, n, K, b, O, &out);
    Py_RETURN_NONE;
}

/* gemm3(x, h, w, C, y0, y1, packed_b, Kp, O, c, bias, shift, amax): a 3x3 layer's rows y0 to y1 from
 * its input x (h, w, C) uint8 (``gemm3_avx2``): the activated int8 (rows * w, O) where ``bias`` is
 * given (not 0), else the int32 sums. */
static PyObject *gemm3(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t x, h, w, C, y0, y1, b, Kp, O, c, bias;
    int shift, amax;
    if (!PyArg_ParseTuple(args, "nnnnnnnnnnnii", &x, &h, &w, &C, &y0, &y1, &b, &Kp, &O, &c, &bias, &shift, &amax))
        return NULL;
    if (!check(x, (y1 - y0) * w, Kp, b, O, c))
        return NULL;
    if (h <= 0 || w <= 0 || C <= 0 || C % 4 || 9 * C > Kp || y0 < 0 || y1 <= y0 || y1 > h || shift < 0 || shift > 31
        || amax < 0 || amax > 127) {
        PyErr_SetString(PyExc_ValueError, "gemm3: C a multiple of 4 with 9 C <= Kp, 0 <= y0 < y1 <= h");
        return NULL;
    }
    uint8_t *pad = malloc((size_t)((y1 - y0 + 2) * (w + 2) * C));
    if (!pad)
        return PyErr_NoMemory();
    const out_t out = {bias ? 2 : 0, (void *)c, (y1 - y0) * w, O, O, (const int32_t *)bias, shift, amax};
#ifdef HAVE_AVX2_KERNEL
    Py_BEGIN_ALLOW_THREADS
    gemm3_avx2((const uint8_t *)x, h, w, C, y0, y1, (const int8_t *)b, Kp, O, &out, pad);
    Py_END_ALLOW_THREADS
#endif
    free(pad);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the AVX2 kernel."},
    {"gemm", gemm, METH_VARARGS, "gemm(a, n, K, packed_b, O, c, O_out, trans): C = A @ B, exact int32 sums."},
    {"gemm3", gemm3, METH_VARARGS,
     "gemm3(x, h, w, C, y0, y1, packed_b, Kp, O, c, bias, shift, amax): a 3x3 layer's rows without unfolding."},
    {"gemm_act", gemm_act, METH_VARARGS,
     "gemm_act(a, n, K, packed_b, O, c, bias, shift, amax): C = clamp((A @ B + bias) >> shift, 0, amax), int8."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avx2mm", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__avx2mm(void) { return PyModule_Create(&module); }
