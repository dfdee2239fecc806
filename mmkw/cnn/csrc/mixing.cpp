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
#ifndef MMKW_PF
#define MMKW_PF 2
#endif
constexpr int64_t kPrefetch = MMKW_PF * kTile;  // prefetch distance (columns)

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

constexpr int kDotRows = 4;     // rows of a per register block
constexpr int kDotCols = 6;     // rows of b per register block
constexpr int64_t kChunk = 512;  // columns per pass (L2-sized operands)

__attribute__((target("avx512f"))) inline float sum16(__m512 v) {
  return _mm512_reduce_add_ps(v);
}

// c[0:R, 0:S] += a[0:R, l0:l1] . b[0:S, l0:l1] (row by row dot products).
template <int R, int S>
__attribute__((target("avx512f"))) void dots(const float* a, int64_t lda,
                                             const float* b, int64_t ldb,
                                             int64_t width, float* c,
                                             int64_t ldc) {
  __m512 acc[R][S];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < S; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t l = 0;
  for (; l + 16 <= width; l += 16) {
    __m512 bv[S];
    for (int j = 0; j < S; ++j) bv[j] = _mm512_loadu_ps(b + j * ldb + l);
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + l);
      for (int j = 0; j < S; ++j)
        acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (l < width) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (width - l)) - 1u);
    __m512 bv[S];
    for (int j = 0; j < S; ++j)
      bv[j] = _mm512_maskz_loadu_ps(mask, b + j * ldb + l);
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(mask, a + i * lda + l);
      for (int j = 0; j < S; ++j)
        acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < S; ++j) c[i * ldc + j] += sum16(acc[i][j]);
}

using DotFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t,
                       float*, int64_t);

template <int R>
constexpr DotFn dot_row(int s) {
  return s == 1   ? dots<R, 1>
         : s == 2 ? dots<R, 2>
         : s == 3 ? dots<R, 3>
         : s == 4 ? dots<R, 4>
         : s == 5 ? dots<R, 5>
                  : dots<R, 6>;
}

DotFn dot_fn(int r, int s) {
  switch (r) {
    case 1: return dot_row<1>(s);
    case 2: return dot_row<2>(s);
    case 3: return dot_row<3>(s);
    default: return dot_row<4>(s);
  }
}

// c[M, S] = a[M, N] @ b[S, N]^T over columns [l0, l1), added to c.
void dots_range(const float* a, int64_t lda, const float* b, int64_t ldb,
                int64_t M, int64_t S, int64_t l0, int64_t l1, float* c) {
  for (int64_t c0 = l0; c0 < l1; c0 += kChunk) {
    const int64_t width = std::min(kChunk, l1 - c0);
    for (int64_t i0 = 0; i0 < M; i0 += kDotRows) {
      const int r = static_cast<int>(std::min<int64_t>(kDotRows, M - i0));
      for (int64_t j0 = 0; j0 < S; j0 += kDotCols) {
        const int s = static_cast<int>(std::min<int64_t>(kDotCols, S - j0));
        dot_fn(r, s)(a + i0 * lda + c0, lda, b + j0 * ldb + c0, ldb, width,
                     c + i0 * S + j0, S);
      }
    }
  }
}
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

// out = a @ b.t() (a [M, N], b [S, N]: a long inner dimension, a small
// result); each thread sums its share of the columns, then the shares are
// added.
void mix_t(const torch::Tensor& a, const torch::Tensor& b,
           torch::Tensor& out) {
  TORCH_CHECK(available(), "mix_t: this CPU has no AVX-512");
  check_operand(a, "a");
  check_operand(b, "b");
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == torch::kFloat32,
              "mix_t: out must be a contiguous float32 tensor");
  const int64_t M = a.size(0), N = a.size(1), S = b.size(0);
  TORCH_CHECK(b.size(1) == N && out.dim() == 2 && out.size(0) == M &&
                  out.size(1) == S,
              "mix_t: shapes do not match: a ", a.sizes(), ", b ", b.sizes(),
              ", out ", out.sizes());
#ifdef MMKW_X86
  const int64_t threads = at::get_num_threads();
  auto shares = torch::zeros({threads, M, S}, a.options());
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* ps = shares.data_ptr<float>();
  const int64_t lda = a.stride(0), ldb = b.stride(0);
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    float* share = ps + at::get_thread_num() * M * S;
    dots_range(pa, lda, pb, ldb, M, S, begin * kChunk,
               std::min(N, end * kChunk), share);
  });
  at::sum_out(out, shares, 0);
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available,
        "Whether this CPU runs the kernel (x86-64 with AVX-512).");
  m.def("mix", &mix, "out = a @ b (float32, CPU; rows of b and out may be "
                     "strided).");
  m.def("mix_t", &mix_t, "out = a @ b.t() (float32, CPU; rows of a and b "
                         "may be strided).");
}
