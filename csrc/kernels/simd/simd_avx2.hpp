// AVX2 + FMA register types behind the small interface the kernels use.
// Included only by translation units compiled with -mavx2 -mfma, inside fastnn::avx2.
#pragma once

struct f32v {
  using T = float;
  using R = __m256;
  using M = __m256;  // comparison results are lane masks
  static constexpr int W = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(T x) { return _mm256_set1_ps(x); }
  static R load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, R v) { _mm256_storeu_ps(p, v); }
  static __m256i first(index_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < W ? n : W)), lane);
  }
  static R load_n(const T* p, index_t n) { return _mm256_maskload_ps(p, first(n)); }
  static void store_n(T* p, R v, index_t n) { _mm256_maskstore_ps(p, first(n), v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static M gt(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M lt(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M eq(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static R select(M m, R if_true, R if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  static R round(R a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R pow2i(R n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
};

struct f64v {
  using T = double;
  using R = __m256d;
  using M = __m256d;
  static constexpr int W = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R set1(T x) { return _mm256_set1_pd(x); }
  static R load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, R v) { _mm256_storeu_pd(p, v); }
  static __m256i first(index_t n) {
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n < W ? n : W), lane);
  }
  static R load_n(const T* p, index_t n) { return _mm256_maskload_pd(p, first(n)); }
  static void store_n(T* p, R v, index_t n) { _mm256_maskstore_pd(p, first(n), v); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R div(R a, R b) { return _mm256_div_pd(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R max(R a, R b) { return _mm256_max_pd(a, b); }
  static R min(R a, R b) { return _mm256_min_pd(a, b); }
  static R abs(R a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static M gt(R a, R b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static M lt(R a, R b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
  static M eq(R a, R b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
  static R select(M m, R if_true, R if_false) { return _mm256_blendv_pd(if_false, if_true, m); }
  // W floats (or the first n, the rest 0) widened exactly to double; double input as is.
  static R widen(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static R widen_n(const float* p, index_t n) {
    const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
    return _mm256_cvtps_pd(_mm_maskload_ps(p, _mm_cmpgt_epi32(_mm_set1_epi32(int(n < W ? n : W)), lane)));
  }
  static R widen(const double* p) { return load(p); }
  static R widen_n(const double* p, index_t n) { return load_n(p, n); }
};

// 6x16 floats: 12 accumulators + 2 B vectors + 1 broadcast in 16 ymm registers (BLIS haswell).
constexpr int kGemmMrF32 = 6, kGemmNvF32 = 2;
constexpr int kGemmMrF64 = 6, kGemmNvF64 = 2;
