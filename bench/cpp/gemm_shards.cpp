// The GEMMs of one training step, timed in C++ (no Python call overhead, which would
// dwarf a 16-row shard's microseconds): for each dense layer of a network, the batch run
// as one call per product or as row shards (the thread-sharded engine of issue 14), at
// one thread. Per layer and shard size it prints the microseconds per batch of
//   forward  y = relu(h W + b)   (m = rows, k = in,  n = out, B = W row-major)
//   dX       dZ W^T              (m = rows, k = out, n = in,  B = W read by columns)
//   dW       X^T dZ              (m = in,   k = rows, n = out, A read by columns)
// with B per call as the driver chooses ("plain") and, where the build has it, with W and
// W^T packed once per batch and reused by every shard ("prepacked": packing time counted).
//
// Build: cmake -DFASTNN_BENCH=ON, target bench_gemm_shards. Run pinned, e.g.
//   FASTNN_SIMD=avx512 taskset -c 1 build/bench/bench_gemm_shards 16-128-64-32-1 256
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"

using fastnn::GemmArgs;
using fastnn::index_t;
using Table = fastnn::TypedKernels<float>;

namespace {

// Older builds have no prepacked B: detect the member so this file times either build.
template <class G, class = void>
struct HasPrepack : std::false_type {};
template <class G>
struct HasPrepack<G, std::void_t<decltype(std::declval<G>().b_packed)>> : std::true_type {};

// The prepacked-B calls, compiled only where the build has them (templates, so that the
// discarded branch is never instantiated against an older GemmArgs).
template <class K, class G>
void pack_b(const K& k, const G& g, float* dst) {
  if constexpr (HasPrepack<G>::value) k.gemm_pack_b(g, dst);
}
template <class G>
void use_packed_b(G& g, const float* packed) {
  if constexpr (HasPrepack<G>::value) g.b_packed = packed;
}
template <class K>
size_t packed_b_size(const K& k, index_t depth, index_t n) {
  if constexpr (HasPrepack<GemmArgs<float>>::value) return size_t(k.gemm_packed_b_size(depth, n));
  return 0;
}

struct Layer {
  index_t in = 0, out = 0;
  std::vector<float> w, b;
};

std::vector<float> random_vector(size_t n, std::mt19937& gen) {
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

GemmArgs<float> forward_args(const Layer& l, index_t rows, const float* h, float* y) {
  GemmArgs<float> g;
  g.m = rows, g.k = l.in, g.n = l.out;
  g.a = h, g.rsa = l.in;
  g.b = l.w.data(), g.rsb = l.out;
  g.c = y, g.ldc = l.out;
  g.bias = l.b.data(), g.act = fastnn::Activation::relu;
  return g;
}

GemmArgs<float> dx_args(const Layer& l, index_t rows, const float* dz, float* dx) {
  GemmArgs<float> g;
  g.m = rows, g.k = l.out, g.n = l.in;
  g.a = dz, g.rsa = l.out;
  g.b = l.w.data(), g.rsb = 1, g.csb = l.out;
  g.c = dx, g.ldc = l.in;
  return g;
}

GemmArgs<float> dw_args(const Layer& l, index_t rows, const float* x, const float* dz, float* dw) {
  GemmArgs<float> g;
  g.m = l.in, g.k = rows, g.n = l.out;
  g.a = x, g.rsa = 1, g.csa = l.in;
  g.b = dz, g.rsb = l.out;
  g.c = dw, g.ldc = l.out;
  return g;
}

template <class F>
double best_us(F&& fn) {
  using clock = std::chrono::steady_clock;
  int inner = 1;
  for (;;) {  // calibrate to ~2 ms blocks
    const auto t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    if (std::chrono::duration<double>(clock::now() - t0).count() > 2e-3 || inner > (1 << 20)) break;
    inner *= 2;
  }
  double best = 1e30;
  for (int r = 0; r < 15; ++r) {
    const auto t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count() / inner);
  }
  return best * 1e6;
}

struct Buffers {
  std::vector<float> x, dz, y, dx, dw, packed_w, packed_wt;
};

// Microseconds per batch of one product, run as batch / shard calls of `shard` rows.
template <class MakeArgs>
double time_product(const Table& k, index_t batch, index_t shard, bool prepack, const GemmArgs<float>& whole_b,
                    std::vector<float>& packed, MakeArgs make) {
  return best_us([&] {
    if (prepack) pack_b(k, whole_b, packed.data());
    for (index_t r0 = 0; r0 < batch; r0 += shard) {
      GemmArgs<float> g = make(r0, std::min(shard, batch - r0));
      if (prepack) use_packed_b(g, packed.data());
      k.gemm(g);
    }
  });
}

void time_layer(const Table& k, const Layer& l, index_t batch, index_t shard, bool prepack, Buffers& buf) {
  const float* x = buf.x.data();
  const float* dz = buf.dz.data();
  std::vector<float> none;
  const double fwd = time_product(k, batch, shard, prepack, forward_args(l, 1, x, buf.y.data()), buf.packed_w,
                                  [&](index_t r0, index_t rows) {
                                    return forward_args(l, rows, x + r0 * l.in, buf.y.data() + r0 * l.out);
                                  });
  const double dx = time_product(k, batch, shard, prepack, dx_args(l, 1, dz, buf.dx.data()), buf.packed_wt,
                                 [&](index_t r0, index_t rows) {
                                   return dx_args(l, rows, dz + r0 * l.out, buf.dx.data() + r0 * l.in);
                                 });
  // dW never has a reusable B (dZ changes per shard): each shard writes its own partial.
  const double dw = time_product(k, batch, shard, false, GemmArgs<float>{}, none, [&](index_t r0, index_t rows) {
    return dw_args(l, rows, x + r0 * l.in, dz + r0 * l.out, buf.dw.data());
  });
  const double flops = 6.0 * double(batch) * double(l.in) * double(l.out);
  std::printf("| %ld-%ld | %ld | %s | %.2f | %.2f | %.2f | %.2f | %.1f |\n", long(l.in), long(l.out), long(shard),
              prepack ? "prepacked" : "plain", fwd, dx, dw, fwd + dx + dw, flops / (fwd + dx + dw) / 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string widths = argc > 1 ? argv[1] : "16-128-64-32-1";
  const index_t batch = argc > 2 ? std::atol(argv[2]) : 256;
  std::vector<index_t> sizes;
  for (size_t pos = 0; pos <= widths.size();) {
    const size_t dash = std::min(widths.find('-', pos), widths.size());
    sizes.push_back(std::atol(widths.substr(pos, dash - pos).c_str()));
    pos = dash + 1;
  }
  fastnn::select_path_from_environment();
  const Table& k = fastnn::kernels().of<float>();
  std::mt19937 gen(12345);
  std::printf("network %s, batch %ld, SIMD path %s, 1 thread, microseconds per batch\n\n", widths.c_str(),
              long(batch), fastnn::kernels().name);
  std::printf("| layer | shard rows | B | forward | dX | dW | total | GFLOP/s |\n|---|---:|---|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    Layer l;
    l.in = sizes[i], l.out = sizes[i + 1];
    l.w = random_vector(size_t(l.in * l.out), gen);
    l.b = random_vector(size_t(l.out), gen);
    Buffers buf;
    buf.x = random_vector(size_t(batch * l.in), gen);
    buf.dz = random_vector(size_t(batch * l.out), gen);
    buf.y.resize(size_t(batch * l.out));
    buf.dx.resize(size_t(batch * l.in));
    buf.dw.resize(size_t(l.in * l.out));
    buf.packed_w.resize(packed_b_size(k, l.in, l.out));
    buf.packed_wt.resize(packed_b_size(k, l.out, l.in));
    // The whole batch in one call, then the shard sizes smaller than it.
    std::vector<index_t> shards{batch};
    for (index_t rows : {64, 32, 16})
      if (rows < batch) shards.push_back(rows);
    for (index_t shard : shards) {
      time_layer(k, l, batch, shard, false, buf);
      if (HasPrepack<GemmArgs<float>>::value) time_layer(k, l, batch, shard, true, buf);
    }
  }
  return 0;
}
