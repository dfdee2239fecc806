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
// Under bf16 autocast A and B are bf16 and C is bf16 (the kernels) or
// float32 (a warehouse gradient): the same tiles, with AVX512_BF16's
// pairwise dot product (vdpbf16ps: two bf16 products per float32 lane,
// float32 accumulation). It takes the two B rows of each pair of K
// interleaved, which one unpack per 32 columns gives in a permuted column
// order; the accumulators are put back in order once, when stored. With
// more than 12 rows of A a tile is interleaved once into a packed buffer
// that every block of rows reads (see kPack).
//
// Built by setup.py when a C++ compiler is at hand; compiled for x86-64
// with AVX-512 code selected at run time. Elsewhere (or without AVX-512)
// `available()` is false and mmkw uses oneDNN / torch.mm.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MMKW_X86 1
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kTile = 64;  // columns per tile (4 x 16 floats)
constexpr int kRows = 6;       // rows per register block
constexpr int64_t kPrefetch = 2 * kTile;  // prefetch distance (columns)

#ifdef MMKW_X86
#define MMKW_F32_TARGET __attribute__((target("avx512f")))
#define MMKW_BF16_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// The masks of a tile `width` columns wide: 4 x 16 floats, 2 x 32 bf16.
struct Masks {
  __mmask16 f32[4];
  __mmask32 bf16[2];
  explicit Masks(int64_t width) {
    for (int v = 0; v < 4; ++v) {
      const int64_t left =
          std::min<int64_t>(16, std::max<int64_t>(0, width - 16 * v));
      f32[v] = static_cast<__mmask16>((1u << left) - 1u);
    }
    for (int h = 0; h < 2; ++h)
      bf16[h] = static_cast<__mmask32>(f32[2 * h]) |
                (static_cast<__mmask32>(f32[2 * h + 1]) << 16);
  }
};

// The accumulators of a block of R rows, zeroed (float32 and bf16 blocks).
template <int R>
MMKW_F32_TARGET inline void zero(__m512 (&acc)[R][4]) {
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
}

// -- float32 ---------------------------------------------------------------
// acc[0:R] += A[0:R, k] * B[k, tile], B's row given as 4 vectors.
template <int R>
MMKW_F32_TARGET inline void fma_f32(__m512 (&acc)[R][4], const float* a,
                                    int64_t lda, const __m512 (&bv)[4]) {
  for (int i = 0; i < R; ++i) {
    const __m512 s = _mm512_set1_ps(a[i * lda]);
    for (int v = 0; v < 4; ++v)
      acc[i][v] = _mm512_fmadd_ps(s, bv[v], acc[i][v]);
  }
}

// One 6-or-fewer-row block of one tile: C[0:R, j0:j0+width] = A[0:R] @ B,
// B's rows read in place (masked past width).
template <int R>
MMKW_F32_TARGET void block_f32(const float* a, int64_t lda, int64_t K,
                               const float* b, int64_t ldb, float* c,
                               int64_t ldc, int64_t width) {
  __m512 acc[R][4];
  zero(acc);
  const Masks masks(width);
  if (width == kTile) {
    for (int64_t k = 0; k < K; ++k) {
      const float* row = b + k * ldb;
      for (int v = 0; v < 4; ++v)
        _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetch + 16 * v),
                     _MM_HINT_T0);
      const __m512 bv[4] = {_mm512_loadu_ps(row), _mm512_loadu_ps(row + 16),
                            _mm512_loadu_ps(row + 32),
                            _mm512_loadu_ps(row + 48)};
      fma_f32<R>(acc, a + k, lda, bv);
    }
  } else {  // the last, narrower tile
    for (int64_t k = 0; k < K; ++k) {
      const float* row = b + k * ldb;
      __m512 bv[4];
      for (int v = 0; v < 4; ++v)
        bv[v] = _mm512_maskz_loadu_ps(masks.f32[v], row + 16 * v);
      fma_f32<R>(acc, a + k, lda, bv);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v)
      _mm512_mask_storeu_ps(c + i * ldc + 16 * v, masks.f32[v], acc[i][v]);
}

// -- bf16 ------------------------------------------------------------------
// a[k], a[k + 1] (or a[k] and zero: the last of an odd K), broadcast.
MMKW_BF16_TARGET inline __m512bh pair(const uint16_t* a, bool both) {
  int32_t bits;
  if (both) {
    std::memcpy(&bits, a, sizeof(bits));  // one broadcast from memory
  } else {
    bits = a[0];
  }
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(bits));
}

// Rows k, k + 1 of B's tile as 4 vectors of pairs (B[k, j], B[k + 1, j])
// (zeros for row k + 1 unless kBoth): columns 8l + 0..3 of each 128-bit
// lane l in the low unpacks (vectors 0, 2), 8l + 4..7 in the high ones.
// kFull: 64 columns, loaded whole, and the next tiles prefetched; else
// masked loads.
template <bool kBoth, bool kFull>
MMKW_BF16_TARGET inline void pairs_bf16(const uint16_t* r0, int64_t ldb,
                                        const Masks& masks,
                                        __m512bh (&bv)[4]) {
  const uint16_t* r1 = r0 + ldb;
  __m512i x[2], y[2];
  for (int h = 0; h < 2; ++h) {
    if constexpr (kFull) {
      _mm_prefetch(reinterpret_cast<const char*>(r0 + 2 * kPrefetch + 32 * h),
                   _MM_HINT_T0);
      x[h] = _mm512_loadu_si512(r0 + 32 * h);
    } else {
      x[h] = _mm512_maskz_loadu_epi16(masks.bf16[h], r0 + 32 * h);
    }
    if constexpr (!kBoth) {
      y[h] = _mm512_setzero_si512();
    } else if constexpr (kFull) {
      _mm_prefetch(reinterpret_cast<const char*>(r1 + 2 * kPrefetch + 32 * h),
                   _MM_HINT_T0);
      y[h] = _mm512_loadu_si512(r1 + 32 * h);
    } else {
      y[h] = _mm512_maskz_loadu_epi16(masks.bf16[h], r1 + 32 * h);
    }
  }
  for (int h = 0; h < 2; ++h) {
    bv[2 * h] = reinterpret_cast<__m512bh>(_mm512_unpacklo_epi16(x[h], y[h]));
    bv[2 * h + 1] =
        reinterpret_cast<__m512bh>(_mm512_unpackhi_epi16(x[h], y[h]));
  }
}

// acc[0:R] += A[0:R, k:k+2] @ pairs (A[:, k + 1] taken as zero unless
// kBoth).
template <int R, bool kBoth>
MMKW_BF16_TARGET inline void dot_bf16(__m512 (&acc)[R][4], const uint16_t* a,
                                      int64_t lda, const __m512bh (&bv)[4]) {
  for (int i = 0; i < R; ++i) {
    const __m512bh s = pair(a + i * lda, kBoth);
    for (int v = 0; v < 4; ++v)
      acc[i][v] = _mm512_dpbf16_ps(acc[i][v], s, bv[v]);
  }
}

// Stores 16 float32 results as bf16 or float32.
template <typename Out>
MMKW_BF16_TARGET inline void store16(Out* out, __m512 v, __mmask16 mask) {
  if constexpr (std::is_same_v<Out, float>) {
    _mm512_mask_storeu_ps(out, mask, v);
  } else {
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    _mm256_mask_storeu_epi16(out, mask, h);
  }
}

// C[0:R, j0:j0+width] = A[0:R] @ B for bf16 A and B; Out is uint16_t
// (bf16) or float. kPacked: B is the tile packed by pack_bf16 (4 vectors
// of pairs per pair of rows), else B's rows are read in place.
template <int R, typename Out, bool kPacked>
MMKW_BF16_TARGET void block_bf16(const uint16_t* a, int64_t lda, int64_t K,
                                 const uint16_t* b, int64_t ldb, Out* c,
                                 int64_t ldc, int64_t width) {
  __m512 acc[R][4];
  zero(acc);
  const Masks masks(width);
  const int64_t even = K & ~int64_t(1);
  __m512bh bv[4];
  if constexpr (kPacked) {
    for (int64_t k = 0; k < even; k += 2) {
      const uint16_t* p = b + k * kTile;  // a pair of rows: 2 x 64
      for (int v = 0; v < 4; ++v)
        bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(p + 32 * v));
      dot_bf16<R, true>(acc, a + k, lda, bv);
    }
    if (even < K) {
      const uint16_t* p = b + even * kTile;
      for (int v = 0; v < 4; ++v)
        bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(p + 32 * v));
      dot_bf16<R, false>(acc, a + even, lda, bv);
    }
  } else if (width == kTile) {
    for (int64_t k = 0; k < even; k += 2) {
      pairs_bf16<true, true>(b + k * ldb, ldb, masks, bv);
      dot_bf16<R, true>(acc, a + k, lda, bv);
    }
    if (even < K) {
      pairs_bf16<false, true>(b + even * ldb, ldb, masks, bv);
      dot_bf16<R, false>(acc, a + even, lda, bv);
    }
  } else {
    for (int64_t k = 0; k < even; k += 2) {
      pairs_bf16<true, false>(b + k * ldb, ldb, masks, bv);
      dot_bf16<R, true>(acc, a + k, lda, bv);
    }
    if (even < K) {
      pairs_bf16<false, false>(b + even * ldb, ldb, masks, bv);
      dot_bf16<R, false>(acc, a + even, lda, bv);
    }
  }
  // Back in column order: lanes lo.0, hi.0, lo.1, hi.1 | lo.2, hi.2, ...
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5,
                                          6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27,
                                           12, 13, 14, 15, 28, 29, 30, 31);
  for (int i = 0; i < R; ++i) {
    Out* out = c + i * ldc;
    for (int h = 0; h < 2; ++h) {
      const __m512 lo = acc[i][2 * h], hi = acc[i][2 * h + 1];
      store16(out + 32 * h, _mm512_permutex2var_ps(lo, first, hi),
              masks.f32[2 * h]);
      store16(out + 32 * h + 16, _mm512_permutex2var_ps(lo, second, hi),
              masks.f32[2 * h + 1]);
    }
  }
}

// Packs a tile of B as the pairs block_bf16 reads (zeros past width and
// past an odd K), prefetching the next tile.
MMKW_BF16_TARGET void pack_bf16(const uint16_t* b, int64_t ldb, int64_t K,
                                int64_t width, uint16_t* packed) {
  const Masks masks(width);
  __m512bh bv[4];
  for (int64_t k = 0; k < K; k += 2) {
    const uint16_t* r0 = b + k * ldb;
    _mm_prefetch(reinterpret_cast<const char*>(r0 + kTile), _MM_HINT_T0);
    if (k + 1 < K) {
      _mm_prefetch(reinterpret_cast<const char*>(r0 + ldb + kTile),
                   _MM_HINT_T0);
      pairs_bf16<true, false>(r0, ldb, masks, bv);
    } else {
      pairs_bf16<false, false>(r0, ldb, masks, bv);
    }
    for (int v = 0; v < 4; ++v)
      _mm512_storeu_si512(packed + k * kTile + 32 * v,
                          reinterpret_cast<__m512i>(bv[v]));
  }
}

template <typename T, typename Out>
using BlockFn = void (*)(const T*, int64_t, int64_t, const T*, int64_t, Out*,
                         int64_t, int64_t);

// Register blocks of 1-6 rows: float32 (B in place) and bf16 (B in place
// or packed).
template <typename T, typename Out, bool kPacked>
struct Blocks;
template <>
struct Blocks<float, float, false> {
  static constexpr BlockFn<float, float> fn[kRows + 1] = {
      nullptr,      block_f32<1>, block_f32<2>, block_f32<3>,
      block_f32<4>, block_f32<5>, block_f32<6>};
};
template <typename Out, bool kPacked>
struct Blocks<uint16_t, Out, kPacked> {
  static constexpr BlockFn<uint16_t, Out> fn[kRows + 1] = {
      nullptr,
      block_bf16<1, Out, kPacked>,
      block_bf16<2, Out, kPacked>,
      block_bf16<3, Out, kPacked>,
      block_bf16<4, Out, kPacked>,
      block_bf16<5, Out, kPacked>,
      block_bf16<6, Out, kPacked>};
};

// Whether tiles of B are packed before the blocks of rows read them, and
// from how many rows of A on. Packing costs one more pass over the tile;
// it pays where B's rows lie pages apart (rows of a long matrix) and many
// blocks of rows read them: bf16 at ResNet50's batch-8 shapes (72 x 138 x
// 65536: 64 -> 120 GFLOP/s on one core; 1.07-1.19x faster steps). Not at
// batch 1 (4-9 rows: 1.2x slower), nor in float32, where whole ResNet50
// steps took the same time either way.
template <typename T>
constexpr bool kPack = std::is_same_v<T, uint16_t>;
constexpr int64_t kPackRows = 2 * kRows;

// C = A @ B over 64-column tiles split among threads, each tile in blocks
// of 6 rows (packed first where kPack and M > kPackRows).
template <typename T, typename Out>
void mix_tiles(const T* a, int64_t lda, int64_t M, int64_t K, const T* b,
               int64_t ldb, Out* c, int64_t ldc, int64_t N) {
  const int64_t tiles = (N + kTile - 1) / kTile;
  const bool packed = kPack<T> && M > kPackRows;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(packed ? (K + 1) * kTile : 0);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = t * kTile;
      const int64_t width = std::min(kTile, N - j0);
      if constexpr (kPack<T>) {
        if (packed) pack_bf16(b + j0, ldb, K, width, buffer.data());
      }
      for (int64_t i0 = 0; i0 < M; i0 += kRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kRows, M - i0));
        if constexpr (kPack<T>) {
          if (packed) {
            Blocks<T, Out, true>::fn[rows](a + i0 * lda, lda, K,
                                           buffer.data(), kTile,
                                           c + i0 * ldc + j0, ldc, width);
            continue;
          }
        }
        Blocks<T, Out, false>::fn[rows](a + i0 * lda, lda, K, b + j0, ldb,
                                        c + i0 * ldc + j0, ldc, width);
      }
    }
  });
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

bool cpu_has_avx512_bf16() {
#ifdef MMKW_X86
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

const char* dtype_name(torch::ScalarType dtype) {
  return dtype == torch::kBFloat16 ? "bfloat16" : "float32";
}

void check_operand(const torch::Tensor& t, const char* name,
                   torch::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype &&
                  t.dim() == 2,
              "mix: ", name, " must be a 2-D ", dtype_name(dtype),
              " CPU tensor, got ", t.scalar_type(), " of ", t.dim(),
              " dims on ", t.device());
  TORCH_CHECK((t.size(1) <= 1 || t.stride(1) == 1) &&
                  (t.size(0) <= 1 || t.stride(0) >= t.size(1)),
              "mix: ", name,
              " must have contiguous, non-overlapping rows, got sizes ",
              t.sizes(), " and strides ", t.strides());
}

}  // namespace

bool available() { return cpu_has_avx512(); }

bool available_bf16() { return cpu_has_avx512_bf16(); }

// out = a @ b, written into `out` (any row stride, column stride 1):
// float32 operands and result, or bf16 operands and a bf16 or float32
// result.
void mix(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out) {
  const bool bf16 = a.scalar_type() == torch::kBFloat16;
  TORCH_CHECK(bf16 || a.scalar_type() == torch::kFloat32,
              "mix: a must be float32 or bfloat16, got ", a.scalar_type());
  if (bf16) {
    TORCH_CHECK(available_bf16(), "mix: this CPU has no AVX512_BF16");
    check_operand(b, "b", torch::kBFloat16);
    TORCH_CHECK(out.scalar_type() == torch::kFloat32 ||
                    out.scalar_type() == torch::kBFloat16,
                "mix: out must be bfloat16 or float32 for bfloat16 "
                "operands, got ", out.scalar_type());
    check_operand(out, "out", out.scalar_type());
  } else {
    TORCH_CHECK(available(), "mix: this CPU has no AVX-512");
    check_operand(b, "b", torch::kFloat32);
    check_operand(out, "out", torch::kFloat32);
  }
  check_operand(a, "a", bf16 ? torch::kBFloat16 : torch::kFloat32);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  TORCH_CHECK(b.size(0) == K && out.size(0) == M && out.size(1) == N,
              "mix: shapes do not match: a ", a.sizes(), ", b ", b.sizes(),
              ", out ", out.sizes());
#ifdef MMKW_X86
  const int64_t lda = a.stride(0), ldb = b.stride(0), ldc = out.stride(0);
  if (!bf16) {
    mix_tiles(a.data_ptr<float>(), lda, M, K, b.data_ptr<float>(), ldb,
              out.data_ptr<float>(), ldc, N);
    return;
  }
  const auto* pa = reinterpret_cast<const uint16_t*>(a.data_ptr());
  const auto* pb = reinterpret_cast<const uint16_t*>(b.data_ptr());
  if (out.scalar_type() == torch::kFloat32)
    mix_tiles(pa, lda, M, K, pb, ldb, out.data_ptr<float>(), ldc, N);
  else
    mix_tiles(pa, lda, M, K, pb, ldb,
              reinterpret_cast<uint16_t*>(out.data_ptr()), ldc, N);
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available,
        "Whether this CPU runs the kernel (x86-64 with AVX-512).");
  m.def("available_bf16", &available_bf16,
        "Whether this CPU runs the bf16 kernel (AVX512_BF16).");
  m.def("mix", &mix,
        "out = a @ b (CPU; float32, or bf16 operands and a bf16 or float32 "
        "result; rows of b and out may be strided).");
}
