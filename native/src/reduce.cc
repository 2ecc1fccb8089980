// Sum / mean / max / min over any set of axes that collapses to [outer kept, reduced, inner kept]
// (covers batch-norm statistics over N,H,W, bias gradients, and last-axis reductions). Sums accumulate in
// double, like tfjs's JS kernels do, so results agree to float precision.
#include <omp.h>

#include <cmath>
#include <limits>

#include "context.h"

namespace fundus {
namespace {

enum ReduceOp { kSum = 0, kMean, kMax, kMin };

template <int Op>
struct Acc {
  using T = std::conditional_t<(Op == kSum || Op == kMean), double, float>;
  static T init() {
    if constexpr (Op == kMax) return -std::numeric_limits<float>::infinity();
    if constexpr (Op == kMin) return std::numeric_limits<float>::infinity();
    return 0.0;
  }
  static T add(T acc, float v) {
    if constexpr (Op == kMax) return (v > acc || std::isnan(v)) ? v : acc;
    if constexpr (Op == kMin) return (v < acc || std::isnan(v)) ? v : acc;
    return acc + v;
  }
  static T merge(T a, T b) {
    if constexpr (Op == kMax || Op == kMin) return add(a, b);
    return a + b;
  }
};

// out[k1, k2] = reduce_r x[k1, r, k2]
template <int Op>
void run(const float* x, float* out, int64_t k1, int64_t r, int64_t k2) {
  using A = Acc<Op>;
  using T = typename A::T;
  const double scale = Op == kMean ? 1.0 / static_cast<double>(r) : 1.0;
  const int64_t total = k1 * r * k2;
  const bool parallel = total >= (1 << 15);
  if (k2 == 1) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < k1; ++i) {
      const float* row = x + i * r;
      T acc = A::init();
      for (int64_t j = 0; j < r; ++j) acc = A::add(acc, row[j]);
      out[i] = static_cast<float>(acc * scale);
    }
    return;
  }
  const int threads = parallel ? omp_get_max_threads() : 1;
  if (k1 >= threads) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < k1; ++i) {
      std::vector<T> acc(k2, A::init());
      for (int64_t j = 0; j < r; ++j) {
        const float* row = x + (i * r + j) * k2;
        T* pa = acc.data();
#pragma omp simd
        for (int64_t k = 0; k < k2; ++k) pa[k] = A::add(pa[k], row[k]);
      }
      for (int64_t k = 0; k < k2; ++k) out[i * k2 + k] = static_cast<float>(acc[k] * scale);
    }
    return;
  }
  // Few output rows (e.g. per-channel statistics): split the reduced axis across threads, then merge.
  for (int64_t i = 0; i < k1; ++i) {
    std::vector<std::vector<T>> partial(threads, std::vector<T>(k2, A::init()));
#pragma omp parallel num_threads(threads) if (parallel)
    {
      const int t = omp_get_thread_num();
      const int nt = omp_get_num_threads();
      const int64_t begin = r * t / nt, end = r * (t + 1) / nt;
      T* pa = partial[t].data();
      for (int64_t j = begin; j < end; ++j) {
        const float* row = x + (i * r + j) * k2;
#pragma omp simd
        for (int64_t k = 0; k < k2; ++k) pa[k] = A::add(pa[k], row[k]);
      }
    }
    for (int64_t k = 0; k < k2; ++k) {
      T acc = partial[0][k];
      for (int t = 1; t < threads; ++t) acc = A::merge(acc, partial[t][k]);
      out[i * k2 + k] = static_cast<float>(acc * scale);
    }
  }
}

// reduce(op, x, shape, axes, out) -> boolean (false: the axes do not collapse to [kept, reduced, kept])
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  auto shape = intListArg(info, 2, "shape");
  auto axes = intListArg(info, 3, "axes");
  std::vector<bool> reduced(shape.size(), false);
  for (int64_t a : axes) {
    if (a < 0 || a >= static_cast<int64_t>(shape.size())) throw Napi::RangeError::New(info.Env(), "reduce: bad axis");
    reduced[a] = true;
  }
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  const float* x = floatArg(info, 1, total, "x");
  // Collapse into runs of kept / reduced dimensions, ignoring size-1 dimensions.
  std::vector<std::pair<bool, int64_t>> runs;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!runs.empty() && runs.back().first == reduced[i]) {
      runs.back().second *= shape[i];
    } else {
      runs.emplace_back(reduced[i], shape[i]);
    }
  }
  int64_t k1 = 1, r = 1, k2 = 1;
  size_t i = 0;
  if (i < runs.size() && !runs[i].first) k1 = runs[i++].second;
  if (i < runs.size() && runs[i].first) r = runs[i++].second;
  if (i < runs.size() && !runs[i].first) k2 = runs[i++].second;
  if (i != runs.size()) return Napi::Boolean::New(info.Env(), false);
  float* out = floatArg(info, 4, k1 * k2, "out");
  if (total == 0) return Napi::Boolean::New(info.Env(), false);
  switch (op) {
    case kSum: run<kSum>(x, out, k1, r, k2); break;
    case kMean: run<kMean>(x, out, k1, r, k2); break;
    case kMax: run<kMax>(x, out, k1, r, k2); break;
    case kMin: run<kMin>(x, out, k1, r, k2); break;
    default: return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void initReduce(Napi::Env env, Napi::Object exports) {
  exports.Set("reduce", Napi::Function::New(env, locked<Reduce>));
}

}  // namespace fundus
