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
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>

/* Stores rows p .. p + rows - 1's sums of outputs ob * 8 .. ob * 8 + 15 (two registers a row): into C
 * (n, O) as they are, or, ``trans``, into C (O_out, n) channels first (the head's layout), only the
 * outputs below O_out (the rest are the zero padding's). */
__attribute__((target("avx2"))) static inline void put(int32_t *C, Py_ssize_t n, Py_ssize_t O, Py_ssize_t O_out,
                                                        int trans, Py_ssize_t p, Py_ssize_t ob, int rows,
                                                        const __m256i *c) {
    if (!trans) {
        for (int r = 0; r < rows; r++) {
            _mm256_storeu_si256((__m256i *)(C + (p + r) * O + ob * 8), c[2 * r]);
            _mm256_storeu_si256((__m256i *)(C + (p + r) * O + ob * 8 + 8), c[2 * r + 1]);
        }
        return;
    }
    int32_t t[4][16];
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_si256((__m256i *)t[r], c[2 * r]);
        _mm256_storeu_si256((__m256i *)(t[r] + 8), c[2 * r + 1]);
    }
    for (int o = 0; o < 16 && ob * 8 + o < O_out; o++)
        for (int r = 0; r < rows; r++)
            C[(ob * 8 + o) * n + p + r] = t[r][o];
}

__attribute__((target("avx2"))) static void gemm_avx2(const uint8_t *A, Py_ssize_t n, Py_ssize_t K,
                                                     const int8_t *Bp, Py_ssize_t O, int32_t *C,
                                                     Py_ssize_t O_out, int trans) {
    const __m256i ones = _mm256_set1_epi16(1);
    const Py_ssize_t Q = K / 4;
#define STEP(c0, c1, row)                                                               \
    do {                                                                                \
        int32_t v;                                                                      \
        memcpy(&v, (row) + 4 * q, 4);                                                   \
        const __m256i x = _mm256_set1_epi32(v);                                         \
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones)); \
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones)); \
    } while (0)
    for (Py_ssize_t ob = 0; ob < O / 8; ob += 2) {
        const int8_t *p0 = Bp + ob * Q * 32, *p1 = p0 + Q * 32;
        Py_ssize_t p = 0;
        for (; p + 4 <= n; p += 4) {
            __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
            __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
            const uint8_t *a0 = A + p * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
            for (Py_ssize_t q = 0; q < Q; q++) {
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)(p0 + q * 32));
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)(p1 + q * 32));
                STEP(c00, c01, a0);
                STEP(c10, c11, a1);
                STEP(c20, c21, a2);
                STEP(c30, c31, a3);
            }
            const __m256i c[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
            put(C, n, O, O_out, trans, p, ob, 4, c);
        }
        for (; p < n; p++) {  /* the last rows, one at a time */
            __m256i c0 = _mm256_setzero_si256(), c1 = c0;
            const uint8_t *a0 = A + p * K;
            for (Py_ssize_t q = 0; q < Q; q++) {
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)(p0 + q * 32));
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)(p1 + q * 32));
                STEP(c0, c1, a0);
            }
            const __m256i c[2] = {c0, c1};
            put(C, n, O, O_out, trans, p, ob, 1, c);
        }
    }
#undef STEP
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

/* gemm(a, n, K, packed_b, O, c, O_out, trans): addresses of contiguous buffers (the caller's tensors
 * keep them alive), sizes as above; ``trans``: C is (O_out, n), channels first, else (n, O). */
static PyObject *gemm(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t a, n, K, b, O, c, O_out;
    int trans;
    if (!PyArg_ParseTuple(args, "nnnnnnnp", &a, &n, &K, &b, &O, &c, &O_out, &trans))
        return NULL;
    if (n < 0 || K <= 0 || K % 4 || O <= 0 || O % 16 || O_out <= 0 || O_out > O || !a || !b || !c) {
        PyErr_SetString(PyExc_ValueError, "gemm: K must be a positive multiple of 4, O of 16, 0 < O_out <= O");
        return NULL;
    }
    if (!cpu_has_avx2()) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: this CPU has no AVX2");
        return NULL;
    }
#ifdef HAVE_AVX2_KERNEL
    Py_BEGIN_ALLOW_THREADS
    gemm_avx2((const uint8_t *)a, n, K, (const int8_t *)b, O, (int32_t *)c, O_out, trans);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the AVX2 kernel."},
    {"gemm", gemm, METH_VARARGS, "gemm(a, n, K, packed_b, O, c, O_out, trans): C = A @ B, exact int32 sums."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avx2mm", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__avx2mm(void) { return PyModule_Create(&module); }
