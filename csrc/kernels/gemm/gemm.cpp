// Blocked GEMM driver in the BLIS style: for each NC column block and KC depth block,
// pack B once (shared by all threads); each thread then packs its block of A rows and
// sweeps register tiles over it.
//
// Determinism: the K blocking (kKc) is a constant, each C element is summed in the same
// order whatever M, the thread count or the tile's position, and threads only split the
// output tiles (never K). So results are bitwise identical for any thread count, and a
// row of C does not depend on the other rows of A (predicting in chunks equals all at once).
#include "isa_kernels.hpp"

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

// Copies rows [i0, i1) x depth [pc, pc + kc) of A into a contiguous block, so the
// microkernel streams it without the cache-set conflicts of a power-of-two row stride.
// Row mode: row-major rows of kc values (lda = kc). Column mode (A = X^T): k-major
// panels of MR values per depth step, zero past the last row.
template <typename T, int MR>
void pack_a_block(index_t kc, index_t i0, index_t i1, const T* a, index_t lda, index_t pc, bool column_a, T* dst) {
  if (!column_a) {
    for (index_t i = i0; i < i1; ++i) {
      const T* src = a + i * lda + pc;
      T* out = dst + (i - i0) * kc;
      for (index_t p = 0; p < kc; ++p) out[p] = src[p];
    }
    return;
  }
  for (index_t t0 = i0; t0 < i1; t0 += MR) {
    const index_t mv = std::min<index_t>(MR, i1 - t0);
    T* out = dst + (t0 - i0) * kc;
    for (index_t p = 0; p < kc; ++p) {
      const T* src = a + (pc + p) * lda + t0;
      for (index_t i = 0; i < MR; ++i) out[p * MR + i] = i < mv ? src[i] : T(0);
    }
  }
}

// pm x pn = nth threads over an (mtiles x npanels) grid, minimizing the largest share.
struct Partition {
  index_t pm = 1, pn = 1;
};
Partition partition(int nth, index_t mtiles, index_t npanels) {
  Partition best;
  index_t best_cost = -1;
  for (index_t pm = 1; pm <= nth; ++pm) {
    if (nth % pm) continue;
    const index_t pn = nth / pm;
    const index_t cost = ceil_div(mtiles, pm) * ceil_div(npanels, pn);
    if (best_cost < 0 || cost < best_cost || (cost == best_cost && pm > best.pm)) {
      best.pm = pm;
      best.pn = pn;
      best_cost = cost;
    }
  }
  return best;
}

template <class D, int MR, int NV>
void gemm_driver(const GemmArgs<typename D::T>& g) {
  using T = typename D::T;
  constexpr int NR = NV * D::W;
  if (g.m <= 0 || g.n <= 0) return;
  const bool column_a = g.csa != 1;  // A = X^T: element (i, p) at a[i + p * csa]
  const index_t lda = column_a ? g.csa : g.rsa;
  // Row-major A is read in place when its rows are short (a dense layer's 16..128 inputs):
  // copying would cost as much as it saves. Long rows are packed, because rows a large
  // (often power-of-two) stride apart fall into the same L1 sets and evict each other.
  const bool pack_a = column_a || lda * index_t(sizeof(T)) >= 1024;
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
        // 2. Each thread owns one rectangle of C tiles (BLIS-style ic x jr partition,
        //    chosen so the rectangles are as equal as the tile grid allows), and sweeps it
        //    in row blocks whose packed A stays in L2.
        const index_t mtiles = ceil_div(g.m, MR);
        const Partition part = partition(nth, mtiles, npanels);
        const index_t tm = tid / part.pn, tn = tid % part.pn;
        const index_t tile_begin = mtiles * tm / part.pm, tile_end = mtiles * (tm + 1) / part.pm;
        const index_t panel_begin = npanels * tn / part.pn, panel_end = npanels * (tn + 1) / part.pn;
        const index_t mb = std::max<index_t>(1, kTaskRows / MR);
        T* apack = nullptr;
        for (index_t tile0 = tile_begin; tile0 < tile_end; tile0 += mb) {
          const index_t tile1 = std::min(tile_end, tile0 + mb);
          if (pack_a && apack == nullptr)
            apack = static_cast<T*>(thread_scratch(ScratchSlot::gemm_packed_a, size_t(mb * MR * kc_max) * sizeof(T)));
          if (pack_a) pack_a_block<T, MR>(kc, tile0 * MR, std::min(g.m, tile1 * MR), g.a, lda, pc, column_a, apack);
          for (index_t p = panel_begin; p < panel_end; ++p) {
            const index_t j0 = jc + p * NR;
            const index_t nv = std::min<index_t>(NR, g.n - j0);
            const T* bp = bpack + p * NR * kc;
            for (index_t tile = tile0; tile < tile1; ++tile) {
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
              if (column_a)
                gemm_ukernel<D, MR, NV, true>(kc, apack + (tile - tile0) * MR * kc, MR, bp, c, g.ldc, mv, nv, load_c,
                                              plain ? nullptr : &ep);
              else if (pack_a)
                gemm_ukernel<D, MR, NV, false>(kc, apack + (tile - tile0) * MR * kc, kc, bp, c, g.ldc, mv, nv, load_c,
                                               plain ? nullptr : &ep);
              else
                gemm_ukernel<D, MR, NV, false>(kc, g.a + i0 * lda + pc, lda, bp, c, g.ldc, mv, nv, load_c,
                                               plain ? nullptr : &ep);
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

void gemm(const GemmArgs<float>& args) { gemm_driver<f32v, kGemmMrF32, kGemmNvF32>(args); }
void gemm(const GemmArgs<double>& args) { gemm_driver<f64v, kGemmMrF64, kGemmNvF64>(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
