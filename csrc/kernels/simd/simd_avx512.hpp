// AVX-512 (F+BW+DQ+VL) register types behind the small interface the kernels use.
// Included only by translation units compiled with the AVX-512 flags, inside fastnn::avx512.
#pragma once

struct f32v {
  using T = float;
  using R = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(T x) { return _mm512_set1_ps(x); }
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, R v) { _mm512_storeu_ps(p, v); }
  static M first(index_t n) { return n >= W ? M(0xFFFF) : M((1u << n) - 1u); }
  static R load_n(const T* p, index_t n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_n(T* p, R v, index_t n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  // x86 semantics: max(a, b) = a > b ? a : b, so a NaN in b passes through.
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R abs(R a) { return _mm512_abs_ps(a); }
  static M gt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M lt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M eq(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static R select(M m, R if_true, R if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  static R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2^n for integral n in [-126, 127], built in the exponent field.
  static R pow2i(R n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
};

struct f64v {
  using T = double;
  using R = __m512d;
  using M = __mmask8;
  static constexpr int W = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(T x) { return _mm512_set1_pd(x); }
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, R v) { _mm512_storeu_pd(p, v); }
  static M first(index_t n) { return n >= W ? M(0xFF) : M((1u << n) - 1u); }
  static R load_n(const T* p, index_t n) { return _mm512_maskz_loadu_pd(first(n), p); }
  static void store_n(T* p, R v, index_t n) { _mm512_mask_storeu_pd(p, first(n), v); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R div(R a, R b) { return _mm512_div_pd(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R max(R a, R b) { return _mm512_max_pd(a, b); }
  static R min(R a, R b) { return _mm512_min_pd(a, b); }
  static R abs(R a) { return _mm512_abs_pd(a); }
  static M gt(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static M lt(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static M eq(R a, R b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
  static R select(M m, R if_true, R if_false) { return _mm512_mask_blend_pd(m, if_false, if_true); }
  // W floats (or the first n, the rest 0) widened exactly to double; double input as is.
  static R widen(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static R widen_n(const float* p, index_t n) { return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(first(n), p)); }
  static R widen(const double* p) { return load(p); }
  static R widen_n(const double* p, index_t n) { return load_n(p, n); }
};

// GEMM register tiles (rows x vectors). 12x32 floats keeps 24 accumulators in zmm registers,
// the row-major analogue of BLIS's skx 32x12 sgemm tile.
constexpr int kGemmMrF32 = 12, kGemmNvF32 = 2;
constexpr int kGemmMrF64 = 12, kGemmNvF64 = 2;
