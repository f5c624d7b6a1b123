// Blocked GEMM driver in the BLIS style: for each NC column block and KC depth block,
// pack B once (shared by all threads), then sweep register tiles over all of A.
//
// Determinism: the K blocking (kKc) is a constant, each C element is summed in the same
// order whatever M, the thread count or the tile's position, and threads only split the
// output tiles (never K). So results are bitwise identical for any thread count, and a
// row of C does not depend on the other rows of A (predicting in chunks equals all at once).
#include "gemm/gemm.hpp"

#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm/gemm_ukernel.hpp"
#include "workspace.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr index_t kKc = 256;      // depth block: a B micro-panel (kKc x NR) stays in L1
constexpr index_t kNc = 4096;     // column block: the packed B block stays in L2/L3
constexpr index_t kTaskRows = 192;  // rows of A swept per task: they stay in L2

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// dst (kc, NR) <- B[0:kc, 0:nv] with zero columns past nv.
template <typename T, int NR>
void pack_b_panel(index_t kc, index_t nv, const T* b, index_t rsb, index_t csb, T* dst) {
  if (csb == 1) {
    for (index_t p = 0; p < kc; ++p) {
      const T* src = b + p * rsb;
      T* out = dst + p * NR;
      for (index_t j = 0; j < nv; ++j) out[j] = src[j];
      for (index_t j = nv; j < NR; ++j) out[j] = T(0);
    }
    return;
  }
  // Transposed or strided B (dY W^T reads W by columns): walk each source column contiguously.
  for (index_t j = 0; j < NR; ++j) {
    if (j < nv) {
      const T* src = b + j * csb;
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p * rsb];
    } else {
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = T(0);
    }
  }
}

template <class D, int MR, int NV>
void gemm_driver(const GemmArgs<typename D::T>& g) {
  using T = typename D::T;
  constexpr int NR = NV * D::W;
  if (g.m <= 0 || g.n <= 0) return;
  const bool column_a = g.csa != 1;  // A = X^T: element (i, p) at a[i + p * csa]
  const index_t lda = column_a ? g.csa : g.rsa;
  const index_t nc_max = std::min(kNc, ceil_div(g.n, NR) * NR);
  const index_t kc_max = std::max<index_t>(1, std::min(kKc, g.k));
  T* bpack = static_cast<T*>(thread_scratch(ScratchSlot::gemm_packed_b, size_t(kc_max * nc_max) * sizeof(T)));

  auto body = [&](int tid, int nth) {
    for (index_t jc = 0; jc < g.n; jc += kNc) {
      const index_t nc = std::min(kNc, g.n - jc);
      const index_t npanels = ceil_div(nc, NR);
      index_t pc = 0;
      do {
        const index_t kc = std::min(kKc, g.k - pc);
        const bool load_c = g.accumulate || pc > 0;
        const bool last = pc + kc >= g.k;
        // 1. Pack this (kc, nc) block of B; threads split its panels.
        for (index_t p = npanels * tid / nth; p < npanels * (tid + 1) / nth; ++p) {
          const index_t j0 = jc + p * NR;
          pack_b_panel<T, NR>(kc, std::min<index_t>(NR, g.n - j0), g.b + pc * g.rsb + j0 * g.csb, g.rsb, g.csb,
                              bpack + p * NR * kc);
        }
        if (nth > 1) {
#pragma omp barrier
        }
        // 2. Tasks = (row block, panel block), panel-block major so a thread's consecutive
        //    tasks share B panels; shrink blocks until every thread has work.
        const index_t mtiles = ceil_div(g.m, MR);
        index_t mb = std::max<index_t>(1, kTaskRows / MR), nb = npanels;
        while (nth > 1 && ceil_div(mtiles, mb) * ceil_div(npanels, nb) < 2 * index_t(nth) && (mb > 1 || nb > 1)) {
          if (mb > 1) mb = ceil_div(mb, 2); else nb = ceil_div(nb, 2);
        }
        const index_t mblocks = ceil_div(mtiles, mb);
        const index_t ntasks = mblocks * ceil_div(npanels, nb);
        alignas(64) T apack[kKc * MR];  // column-mode edge tiles are packed here
        for (index_t t = ntasks * tid / nth; t < ntasks * (tid + 1) / nth; ++t) {
          const index_t pb = t / mblocks, ib = t % mblocks;
          for (index_t p = pb * nb; p < std::min(npanels, (pb + 1) * nb); ++p) {
            const index_t j0 = jc + p * NR;
            const index_t nv = std::min<index_t>(NR, g.n - j0);
            const T* bp = bpack + p * NR * kc;
            for (index_t tile = ib * mb; tile < std::min(mtiles, (ib + 1) * mb); ++tile) {
              const index_t i0 = tile * MR;
              const index_t mv = std::min<index_t>(MR, g.m - i0);
              TileEpilogue<T> ep;
              if (last) {
                ep.bias = g.bias ? g.bias + j0 : nullptr;
                ep.slope = g.slope ? g.slope + j0 : nullptr;
                ep.preact = g.preact ? g.preact + i0 * g.ldz + j0 : nullptr;
                ep.ldz = g.ldz;
                ep.act = g.act;
                ep.alpha = g.alpha;
              }
              const bool plain = !last || (!g.bias && !g.preact && g.act == Activation::linear);
              T* c = g.c + i0 * g.ldc + j0;
              if (column_a) {
                const T* a = g.a + i0 + pc * lda;
                if (mv == MR) {
                  gemm_ukernel<D, MR, NV, true>(kc, a, lda, bp, c, g.ldc, mv, nv, load_c, plain ? nullptr : &ep);
                } else {
                  for (index_t p2 = 0; p2 < kc; ++p2)
                    for (index_t i = 0; i < MR; ++i) apack[p2 * MR + i] = i < mv ? a[p2 * lda + i] : T(0);
                  gemm_ukernel<D, MR, NV, true>(kc, apack, MR, bp, c, g.ldc, mv, nv, load_c, plain ? nullptr : &ep);
                }
              } else {
                gemm_ukernel<D, MR, NV, false>(kc, g.a + i0 * lda + pc, lda, bp, c, g.ldc, mv, nv, load_c,
                                               plain ? nullptr : &ep);
              }
            }
          }
        }
        if (nth > 1) {
#pragma omp barrier
        }
        pc += kc;
      } while (pc < g.k);
    }
  };

#ifdef _OPENMP
  if (g.nthreads > 1) {
#pragma omp parallel num_threads(g.nthreads)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

}  // namespace

void gemm_f32(const GemmArgs<float>& args) { gemm_driver<f32v, kGemmMrF32, kGemmNvF32>(args); }
void gemm_f64(const GemmArgs<double>& args) { gemm_driver<f64v, kGemmMrF64, kGemmNvF64>(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
