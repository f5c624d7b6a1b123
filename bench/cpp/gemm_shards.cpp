// The GEMMs of one training step, timed in C++ (no Python call overhead, which would
// dwarf a 16-row shard's microseconds): for each dense layer of a network, the batch run
// as one call per product or as row shards (the thread-sharded engine of issue 14), at
// one thread. Per layer and shard size it prints the microseconds per batch of
//   forward  y = relu(h W + b)   (m = rows, k = in,  n = out, B = W row-major)
//   dX       dZ W^T              (m = rows, k = out, n = in,  B = W read by columns)
//   dW       X^T dZ              (m = in,   k = rows, n = out, A read by columns)
// in three ways: B as each call finds it ("plain"); W and W^T packed once per batch and
// reused by every shard ("prepacked", where the build has it); W^T stored row-major once
// per batch so dX reads a row-major B ("W^T stored"). Once-per-batch work is timed too.
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
  std::vector<float> wt;  // (out, in): W transposed, for the "W^T stored" mode
};

enum class Mode { plain, prepacked, wt_stored };
const char* mode_name(Mode mode) {
  return mode == Mode::plain ? "plain" : mode == Mode::prepacked ? "prepacked" : "W^T stored";
}

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

GemmArgs<float> dx_args(const Layer& l, index_t rows, const float* dz, float* dx, bool from_wt) {
  GemmArgs<float> g;
  g.m = rows, g.k = l.out, g.n = l.in;
  g.a = dz, g.rsa = l.out;
  if (from_wt)
    g.b = l.wt.data(), g.rsb = l.in, g.csb = 1;
  else
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

// Microseconds per batch of one product: once_per_batch(), then batch / shard calls of
// `shard` rows, each with the arguments make(first row, rows) returns.
template <class Once, class MakeArgs>
double time_product(const Table& k, index_t batch, index_t shard, Once once_per_batch, MakeArgs make) {
  return best_us([&] {
    once_per_batch();
    for (index_t r0 = 0; r0 < batch; r0 += shard) k.gemm(make(r0, std::min(shard, batch - r0)));
  });
}

void time_layer(const Table& k, Layer& l, index_t batch, index_t shard, Mode mode, Buffers& buf) {
  const float* x = buf.x.data();
  const float* dz = buf.dz.data();
  const bool prepack = mode == Mode::prepacked, from_wt = mode == Mode::wt_stored;
  const GemmArgs<float> whole_w = forward_args(l, 1, x, buf.y.data());
  const GemmArgs<float> whole_wt = dx_args(l, 1, dz, buf.dx.data(), false);
  const double fwd = time_product(
      k, batch, shard, [&] { if (prepack) pack_b(k, whole_w, buf.packed_w.data()); },
      [&](index_t r0, index_t rows) {
        GemmArgs<float> g = forward_args(l, rows, x + r0 * l.in, buf.y.data() + r0 * l.out);
        if (prepack) use_packed_b(g, buf.packed_w.data());
        return g;
      });
  const double dx = time_product(
      k, batch, shard,
      [&] {
        if (prepack) pack_b(k, whole_wt, buf.packed_wt.data());
        if (from_wt)  // what an engine pays after each update to keep W^T beside W
          for (index_t i = 0; i < l.in; ++i)
            for (index_t j = 0; j < l.out; ++j) l.wt[size_t(j * l.in + i)] = l.w[size_t(i * l.out + j)];
      },
      [&](index_t r0, index_t rows) {
        GemmArgs<float> g = dx_args(l, rows, dz + r0 * l.out, buf.dx.data() + r0 * l.in, from_wt);
        if (prepack) use_packed_b(g, buf.packed_wt.data());
        return g;
      });
  // dW never has a reusable B (dZ changes per shard): each shard writes its own partial.
  const double dw = time_product(k, batch, shard, [] {}, [&](index_t r0, index_t rows) {
    return dw_args(l, rows, x + r0 * l.in, dz + r0 * l.out, buf.dw.data());
  });
  const double flops = 6.0 * double(batch) * double(l.in) * double(l.out);
  std::printf("| %ld-%ld | %ld | %s | %.2f | %.2f | %.2f | %.2f | %.1f |\n", long(l.in), long(l.out), long(shard),
              mode_name(mode), fwd, dx, dw, fwd + dx + dw, flops / (fwd + dx + dw) / 1e3);
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
    l.wt.resize(l.w.size());
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
      time_layer(k, l, batch, shard, Mode::plain, buf);
      if (HasPrepack<GemmArgs<float>>::value) time_layer(k, l, batch, shard, Mode::prepacked, buf);
      time_layer(k, l, batch, shard, Mode::wt_stored, buf);
    }
  }
  return 0;
}
