// Blocked GEMM driver in the BLIS style: for each NC column block and KC depth block,
// pack B once (shared by all threads); each thread then packs its block of A rows and
// sweeps register tiles over it. Small shapes skip what does not pay: a small row-major B
// is read in place, a caller may hand B prepacked once for many calls (GemmArgs::b_packed),
// edge tiles run narrower kernels, and a one-column C with A read by columns runs a
// matrix-vector kernel (libxsmm and XNNPACK do the same for small GEMMs).
//
// Determinism: the K blocking (kKc, or the caller's GemmArgs::depth_block) is fixed by the
// call, each C element is summed in the same order whatever M, the thread count or the
// tile's position, and threads only split the output tiles (never K). So results are
// bitwise identical for any thread count, and a row of C does not depend on the other rows
// of A (predicting in chunks equals all at once).
// Every path above computes each element as the same fma chain (from zero, p in order,
// per depth block), so which path runs never changes a bit.
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

// The call's depth block: C gets each block's sum (from zero, p in order) added in block order.
template <typename T>
index_t depth_block(const GemmArgs<T>& g) { return g.b_packed || g.depth_block <= 0 ? kKc : g.depth_block; }

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

// How one call reads B. Packing B costs a pass over it per call, which pays only when the
// packed panels are reused by many row tiles or would otherwise thrash the cache; a small
// row-major B (a dense layer's W: 16..128 x 16..128) sits in L1/L2 and is read in place,
// as libxsmm's and XNNPACK's small-GEMM kernels read their (pre-packed or plain) weights.
enum class BSource { pack_per_call, prepacked, in_place };

// The row-major B bytes up to which B is read in place: twice a 48 KiB L1, well inside L2.
constexpr index_t kInPlaceBBytes = 96 * 1024;

template <typename T, int NR>
index_t packed_b_width(index_t n) { return ceil_div(n, NR) * NR; }

// Everything a thread needs to sweep its tiles, fixed for the call.
template <class D, int MR, int NV>
struct GemmPlan {
  using T = typename D::T;
  static constexpr int NR = NV * D::W;
  const GemmArgs<T>& g;
  bool column_a;  // A = X^T: element (i, p) at a[i + p * csa]
  bool pack_a;
  index_t lda;
  BSource b_source;
  T* bpack = nullptr;  // the per-call packed (kc, nc) block (pack_per_call only)

  explicit GemmPlan(const GemmArgs<T>& args) : g(args) {
    column_a = g.csa != 1;
    lda = column_a ? g.csa : g.rsa;
    // A is read in place when its rows (row mode) or depth steps (column mode, A = X^T) are
    // short, a dense layer's 16..128 inputs: copying would cost as much as it saves (a W2
    // step spent 5% of its time packing X^T). Long ones are packed, because lines a large
    // (often power-of-two) stride apart fall into the same L1 sets and evict each other.
    // In column mode a tile of fewer than MR rows is still packed (zero-padded), since the
    // kernel reads MR values per depth step and those past the last row lie outside A.
    pack_a = lda * index_t(sizeof(T)) >= 1024;
    if (g.b_packed)
      b_source = BSource::prepacked;
    else if (g.csb == 1 && g.k * g.rsb * index_t(sizeof(T)) <= kInPlaceBBytes)
      b_source = BSource::in_place;
    else
      b_source = BSource::pack_per_call;
  }

  // The micro-panel of columns [j0, j0 + NR) and depths [pc, pc + kc), and its row stride.
  // p is the panel's index within the column block that starts at jc.
  const T* b_panel(index_t jc, index_t pc, index_t kc, index_t p, index_t& ldb) const {
    const index_t j0 = jc + p * NR;
    switch (b_source) {
      case BSource::in_place: ldb = g.rsb; return g.b + pc * g.rsb + j0;
      case BSource::prepacked: ldb = NR; return g.b_packed + pc * packed_b_width<T, NR>(g.n) + j0 * kc;
      case BSource::pack_per_call: break;
    }
    ldb = NR;
    return bpack + p * NR * kc;
  }
};

// One register tile. Remainder tiles get the narrowest kernel that covers them (half the
// rows, one vector of columns), as libxsmm generates a kernel per edge shape: each C
// element is the same fma chain whichever kernel computes it, so results do not change.
// kPanelNR is the packed panel width (the full tile's NR, also under a narrower kernel).
template <class D, int MR, int NV, bool kColumnA, int kPanelNR = NV * D::W>
void run_tile(index_t kc, const typename D::T* a, index_t lda, const typename D::T* b, index_t ldb, BLayout layout,
              typename D::T* c, index_t ldc, index_t mv, index_t nv, bool load_c,
              const TileEpilogue<typename D::T>* ep) {
  if constexpr (MR % 2 == 0) {
    if (mv <= MR / 2)
      return run_tile<D, MR / 2, NV, kColumnA, kPanelNR>(kc, a, lda, b, ldb, layout, c, ldc, mv, nv, load_c, ep);
  }
  if constexpr (NV > 1) {
    if (nv <= D::W)
      return run_tile<D, MR, 1, kColumnA, kPanelNR>(kc, a, lda, b, ldb, layout, c, ldc, mv, nv, load_c, ep);
  }
  switch (layout) {
    case BLayout::packed:
      return gemm_ukernel<D, MR, NV, kColumnA, BLayout::packed, kPanelNR>(kc, a, lda, b, ldb, c, ldc, mv, nv, load_c,
                                                                          ep);
    case BLayout::in_place:
      return gemm_ukernel<D, MR, NV, kColumnA, BLayout::in_place, kPanelNR>(kc, a, lda, b, ldb, c, ldc, mv, nv,
                                                                            load_c, ep);
    case BLayout::in_place_partial:
      return gemm_ukernel<D, MR, NV, kColumnA, BLayout::in_place_partial, kPanelNR>(kc, a, lda, b, ldb, c, ldc, mv,
                                                                                    nv, load_c, ep);
  }
}

// The last depth block's fused epilogue for the tile at (i0, j0), or null when it has none.
template <typename T>
const TileEpilogue<T>* tile_epilogue(const GemmArgs<T>& g, bool last, index_t i0, index_t j0, TileEpilogue<T>& ep) {
  if (!last || (!g.bias && !g.preact && g.act == Activation::linear)) return nullptr;
  ep.bias = g.bias ? g.bias + j0 : nullptr;
  ep.slope = g.slope ? g.slope + j0 : nullptr;
  ep.preact = g.preact ? g.preact + i0 * g.ldz + j0 : nullptr;
  ep.ldz = g.ldz;
  ep.act = g.act;
  ep.alpha = g.alpha;
  return &ep;
}

// Packs this thread's share of the panels of B's (kc, nc) block at (pc, jc).
template <class D, int MR, int NV>
void pack_b_block(const GemmPlan<D, MR, NV>& plan, index_t jc, index_t nc, index_t pc, index_t kc, int tid, int nth) {
  constexpr int NR = GemmPlan<D, MR, NV>::NR;
  const GemmArgs<typename D::T>& g = plan.g;
  const index_t npanels = ceil_div(nc, NR);
  for (index_t p = npanels * tid / nth; p < npanels * (tid + 1) / nth; ++p) {
    const index_t j0 = jc + p * NR;
    pack_b_panel<typename D::T, NR>(kc, std::min<index_t>(NR, g.n - j0), g.b + pc * g.rsb + j0 * g.csb, g.rsb,
                                    g.csb, plan.bpack + p * NR * kc);
  }
}

// Each thread owns one rectangle of C tiles of the (pc, jc) block (a BLIS-style ic x jr
// partition, as equal as the tile grid allows) and sweeps it in row blocks whose packed A
// stays in L2.
template <class D, int MR, int NV>
void sweep_block(const GemmPlan<D, MR, NV>& plan, index_t jc, index_t nc, index_t pc, index_t kc, int tid, int nth) {
  using T = typename D::T;
  constexpr int NR = GemmPlan<D, MR, NV>::NR;
  const GemmArgs<T>& g = plan.g;
  const bool load_c = g.accumulate || pc > 0;
  const bool last = pc + kc >= g.k;
  const index_t npanels = ceil_div(nc, NR), mtiles = ceil_div(g.m, MR);
  const Partition part = partition(nth, mtiles, npanels);
  const index_t tm = tid / part.pn, tn = tid % part.pn;
  const index_t tile_begin = mtiles * tm / part.pm, tile_end = mtiles * (tm + 1) / part.pm;
  const index_t panel_begin = npanels * tn / part.pn, panel_end = npanels * (tn + 1) / part.pn;
  const index_t mb = std::max<index_t>(1, kTaskRows / MR);
  const index_t kc_max = std::max<index_t>(1, std::min(depth_block(g), g.k));
  T* apack = nullptr;
  for (index_t tile0 = tile_begin; tile0 < tile_end; tile0 += mb) {
    const index_t tile1 = std::min(tile_end, tile0 + mb);
    const bool edge_only = !plan.pack_a && plan.column_a;  // pack just a last partial tile
    const index_t pack0 = edge_only ? std::max(tile0, tile1 - 1) : tile0;
    if ((plan.pack_a || (edge_only && g.m < tile1 * MR)) && pack0 < tile1) {
      if (apack == nullptr)
        apack = static_cast<T*>(thread_scratch(ScratchSlot::gemm_packed_a, size_t(mb * MR * kc_max) * sizeof(T)));
      pack_a_block<T, MR>(kc, pack0 * MR, std::min(g.m, tile1 * MR), g.a, plan.lda, pc, plan.column_a, apack);
    }
    for (index_t p = panel_begin; p < panel_end; ++p) {
      const index_t j0 = jc + p * NR;
      const index_t nv = std::min<index_t>(NR, g.n - j0);
      index_t ldb = 0;
      const T* bp = plan.b_panel(jc, pc, kc, p, ldb);
      const BLayout layout = plan.b_source != BSource::in_place ? BLayout::packed
                             : nv < NR                          ? BLayout::in_place_partial
                                                                : BLayout::in_place;
      for (index_t tile = tile0; tile < tile1; ++tile) {
        const index_t i0 = tile * MR;
        const index_t mv = std::min<index_t>(MR, g.m - i0);
        TileEpilogue<T> storage;
        const TileEpilogue<T>* ep = tile_epilogue(g, last, i0, j0, storage);
        T* c = g.c + i0 * g.ldc + j0;
        const T* a_tile = plan.pack_a ? apack + (tile - tile0) * MR * kc : g.a + i0 * plan.lda + pc;
        if (plan.column_a) {
          const bool packed = plan.pack_a || mv < MR;
          const T* a_col = !packed ? g.a + pc * plan.lda + i0 : apack + (tile - pack0) * MR * kc;
          run_tile<D, MR, NV, true>(kc, a_col, packed ? MR : plan.lda, bp, ldb, layout, c, g.ldc, mv, nv, load_c, ep);
        } else
          run_tile<D, MR, NV, false>(kc, a_tile, plan.pack_a ? kc : plan.lda, bp, ldb, layout, c, g.ldc, mv, nv,
                                     load_c, ep);
      }
    }
  }
}

// C (m x 1) = A B by depth blocks, A read by columns and no epilogue (a one-output
// layer's dW): the matrix-vector kernel instead of tiles that would be 1/NR useful.
template <class D>
void gemv_driver(const GemmArgs<typename D::T>& g) {
  index_t pc = 0;
  do {
    const index_t kc = std::min(depth_block(g), g.k - pc);
    gemv_column_a<D>(g.m, kc, g.a + pc * g.csa, g.csa, g.b + pc * g.rsb, g.rsb, g.c, g.ldc, g.accumulate || pc > 0);
    pc += kc;
  } while (pc < g.k);
}

template <class D, int MR, int NV>
void gemm_driver(const GemmArgs<typename D::T>& g) {
  using T = typename D::T;
  constexpr int NR = NV * D::W;
  if (g.m <= 0 || g.n <= 0) return;
  if (g.n == 1 && g.csa != 1 && !g.b_packed && !g.bias && !g.preact && g.act == Activation::linear)
    return gemv_driver<D>(g);
  GemmPlan<D, MR, NV> plan(g);
  if (plan.b_source == BSource::pack_per_call) {
    const index_t nc_max = std::min(kNc, ceil_div(g.n, NR) * NR);
    const index_t kc_max = std::max<index_t>(1, std::min(depth_block(g), g.k));
    plan.bpack = static_cast<T*>(thread_scratch(ScratchSlot::gemm_packed_b, size_t(kc_max * nc_max) * sizeof(T)));
  }
  // Only a per-call packed B is shared (and rewritten) between threads: the barriers
  // guard it. Threads otherwise touch disjoint C rectangles that stay theirs across pc.
  const bool shared_pack = plan.b_source == BSource::pack_per_call;
  auto body = [&](int tid, int nth) {
    for (index_t jc = 0; jc < g.n; jc += kNc) {
      const index_t nc = std::min(kNc, g.n - jc);
      index_t pc = 0;
      do {
        const index_t kc = std::min(depth_block(g), g.k - pc);
        if (shared_pack) {
          pack_b_block(plan, jc, nc, pc, kc, tid, nth);
          if (nth > 1) {
#pragma omp barrier
          }
        }
        sweep_block(plan, jc, nc, pc, kc, tid, nth);
        if (shared_pack && nth > 1) {
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

// B (k x n, any strides) into the prepacked layout: for each depth block pc, the panels of
// NR columns side by side, each (kc, NR) with zero columns past n: exactly the blocks the
// driver packs per call, so a prepacked call computes the same bits.
template <class D, int NR>
void pack_b_all(const GemmArgs<typename D::T>& g, typename D::T* dst) {
  const index_t width = packed_b_width<typename D::T, NR>(g.n);
  for (index_t pc = 0; pc < g.k; pc += kKc) {
    const index_t kc = std::min(kKc, g.k - pc);
    for (index_t j0 = 0; j0 < g.n; j0 += NR)
      pack_b_panel<typename D::T, NR>(kc, std::min<index_t>(NR, g.n - j0), g.b + pc * g.rsb + j0 * g.csb, g.rsb,
                                      g.csb, dst + pc * width + j0 * kc);
  }
}

}  // namespace

void gemm(const GemmArgs<float>& args) { gemm_driver<f32v, kGemmMrF32, kGemmNvF32>(args); }
void gemm(const GemmArgs<double>& args) { gemm_driver<f64v, kGemmMrF64, kGemmNvF64>(args); }
void gemm_pack_b(const GemmArgs<float>& args, float* dst) { pack_b_all<f32v, kGemmNvF32 * f32v::W>(args, dst); }
void gemm_pack_b(const GemmArgs<double>& args, double* dst) { pack_b_all<f64v, kGemmNvF64 * f64v::W>(args, dst); }
index_t gemm_packed_b_size_f32(index_t k, index_t n) { return k * packed_b_width<float, kGemmNvF32 * f32v::W>(n); }
index_t gemm_packed_b_size_f64(index_t k, index_t n) { return k * packed_b_width<double, kGemmNvF64 * f64v::W>(n); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
