// The mixing product of the KW fast path on the CPU: C = A @ B.
//
// A [M, K] is small (attention rows times warehouse cells, or its
// transpose), B [K, N] is long (cell elements; rows may be strided, as a
// block of cell rows is) and C [M, N] is written with any row stride. With
// K = 47-600 and M = 4-600, oneDNN and MKL reach a third to a half of this
// CPU's peak on these shapes (they pack B, and at batch 1 stream it at a
// fraction of the memory bandwidth). Here B is read in place: each thread
// takes a range of 64-column tiles, keeps 6 x 64 results in registers
// (24 AVX-512 accumulators), runs over K once per block of 6 rows (the
// tile of B then sits in L1/L2) and prefetches the next tile's rows.
//
// Built by setup.py when a C++ compiler is at hand; compiled for x86-64
// with AVX-512 code selected at run time. Elsewhere (or without AVX-512)
// `available()` is false and mmkw uses oneDNN / torch.mm.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MMKW_X86 1
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kTile = 64;  // columns per tile (4 x 16 floats)
constexpr int kRows = 6;       // rows per register block
constexpr int64_t kPrefetch = 2 * kTile;  // prefetch distance (columns)

#ifdef MMKW_X86
// One 6-or-fewer-row block of one tile: C[0:R, j0:j0+width] = A[0:R] @ B.
template <int R>
__attribute__((target("avx512f"))) void block(const float* a, int64_t lda,
                                              int64_t K, const float* b,
                                              int64_t ldb, float* c,
                                              int64_t ldc, int64_t width) {
  __m512 acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
  if (width == kTile) {
    for (int64_t k = 0; k < K; ++k) {
      const float* row = b + k * ldb;
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetch),
                   _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetch + 16),
                   _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetch + 32),
                   _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetch + 48),
                   _MM_HINT_T0);
      const __m512 b0 = _mm512_loadu_ps(row);
      const __m512 b1 = _mm512_loadu_ps(row + 16);
      const __m512 b2 = _mm512_loadu_ps(row + 32);
      const __m512 b3 = _mm512_loadu_ps(row + 48);
      for (int i = 0; i < R; ++i) {
        const __m512 s = _mm512_set1_ps(a[i * lda + k]);
        acc[i][0] = _mm512_fmadd_ps(s, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(s, b1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(s, b2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(s, b3, acc[i][3]);
      }
    }
    for (int i = 0; i < R; ++i) {
      float* out = c + i * ldc;
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(out + 16 * v, acc[i][v]);
    }
    return;
  }
  // The last, narrower tile: masked loads and stores.
  __mmask16 mask[4];
  for (int v = 0; v < 4; ++v) {
    const int64_t left = std::min<int64_t>(16, std::max<int64_t>(
                                                   0, width - 16 * v));
    mask[v] = static_cast<__mmask16>((1u << left) - 1u);
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* row = b + k * ldb;
    __m512 bv[4];
    for (int v = 0; v < 4; ++v)
      bv[v] = _mm512_maskz_loadu_ps(mask[v], row + 16 * v);
    for (int i = 0; i < R; ++i) {
      const __m512 s = _mm512_set1_ps(a[i * lda + k]);
      for (int v = 0; v < 4; ++v)
        acc[i][v] = _mm512_fmadd_ps(s, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v)
      _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

using BlockFn = void (*)(const float*, int64_t, int64_t, const float*,
                         int64_t, float*, int64_t, int64_t);
const BlockFn kBlocks[kRows + 1] = {nullptr,  block<1>, block<2>, block<3>,
                                    block<4>, block<5>, block<6>};

#endif

bool cpu_has_avx512() {
#ifdef MMKW_X86
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

void check_operand(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 &&
                  t.dim() == 2,
              "mix: ", name, " must be a 2-D float32 CPU tensor, got ",
              t.scalar_type(), " of ", t.dim(), " dims on ", t.device());
  TORCH_CHECK((t.size(1) <= 1 || t.stride(1) == 1) &&
                  (t.size(0) <= 1 || t.stride(0) >= t.size(1)),
              "mix: ", name,
              " must have contiguous, non-overlapping rows, got sizes ",
              t.sizes(), " and strides ", t.strides());
}

}  // namespace

bool available() { return cpu_has_avx512(); }

// out = a @ b, written into `out` (any row stride, column stride 1).
void mix(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out) {
  TORCH_CHECK(available(), "mix: this CPU has no AVX-512");
  check_operand(a, "a");
  check_operand(b, "b");
  check_operand(out, "out");
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  TORCH_CHECK(b.size(0) == K && out.size(0) == M && out.size(1) == N,
              "mix: shapes do not match: a ", a.sizes(), ", b ", b.sizes(),
              ", out ", out.sizes());
#ifdef MMKW_X86
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = out.data_ptr<float>();
  const int64_t lda = a.stride(0), ldb = b.stride(0), ldc = out.stride(0);
  const int64_t tiles = (N + kTile - 1) / kTile;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = t * kTile;
      const int64_t width = std::min(kTile, N - j0);
      for (int64_t i0 = 0; i0 < M; i0 += kRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kRows, M - i0));
        kBlocks[rows](pa + i0 * lda, lda, K, pb + j0, ldb,
                      pc + i0 * ldc + j0, ldc, width);
      }
    }
  });
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available,
        "Whether this CPU runs the kernel (x86-64 with AVX-512).");
  m.def("mix", &mix, "out = a @ b (float32, CPU; rows of b and out may be "
                     "strided).");
}
