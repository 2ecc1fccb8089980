// Element-wise kernels: broadcasting binary arithmetic, unary activations and their gradients, batch
// normalisation and bias+activation epilogues. Memory-bound, so the point is one multi-threaded pass each
// instead of tfjs's per-element index arithmetic.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "context.h"

namespace fundus {
namespace {

constexpr int64_t kParallelThreshold = 1 << 15;

// Masked selects written with GCC/Clang vector extensions: GCC compiles `x > 0 ? v : 0` over arrays to a
// conditional branch per element (it will not vectorise the select), and with ReLU's mixed signs that branch
// mispredicts about half the time: such a pass ran 5-20x slower than a plain element-wise op.
typedef float F4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));

inline F4 load4(const float* p) {
  F4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, F4 v) { std::memcpy(p, &v, sizeof v); }
inline F4 select4(I4 mask, F4 a, F4 b) { return reinterpret_cast<F4>((mask & reinterpret_cast<I4>(a)) | (~mask & reinterpret_cast<I4>(b))); }

// out[i] = lo < x[i] <= hi ? v[i] : 0 (out may alias v).
void maskInRange(const float* x, const float* v, float* out, int64_t n, float lo, float hi) {
  const F4 zero = {0.f, 0.f, 0.f, 0.f};
  const F4 lo4 = {lo, lo, lo, lo}, hi4 = {hi, hi, hi, hi};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const F4 xv = load4(x + i);
    store4(out + i, select4((xv > lo4) & (xv <= hi4), load4(v + i), zero));
  }
  for (; i < n; ++i) out[i] = (x[i] > lo && x[i] <= hi) ? v[i] : 0.f;
}

enum BinaryOp { kAdd = 0, kSub, kMul, kDiv, kMax, kMin, kSquaredDiff, kMulScaled };

// Scale for kMulScaled (a * b * scale, e.g. Square's gradient dy * x * 2). Set per call; calls never overlap.
float binaryScale = 1.f;

template <int Op>
inline float applyBinary(float a, float b) {
  if constexpr (Op == kMulScaled) return a * b * binaryScale;
  if constexpr (Op == kAdd) return a + b;
  if constexpr (Op == kSub) return a - b;
  if constexpr (Op == kMul) return a * b;
  if constexpr (Op == kDiv) return a / b;
  if constexpr (Op == kMax) return (std::isnan(a) || a > b) ? a : b;
  if constexpr (Op == kMin) return (std::isnan(a) || a < b) ? a : b;
  if constexpr (Op == kSquaredDiff) return (a - b) * (a - b);
  return 0.f;
}

// Broadcast iteration over collapsed dimensions: the innermost run has stride 0 or 1 in each input.
struct BroadcastPlan {
  std::vector<int64_t> dims, aStrides, bStrides;  // outer to inner
  int64_t total = 1;
};

BroadcastPlan plan(const std::vector<int64_t>& aShape, const std::vector<int64_t>& bShape,
                   const std::vector<int64_t>& outShape) {
  const size_t r = outShape.size();
  std::vector<int64_t> aPad(r, 1), bPad(r, 1);
  for (size_t i = 0; i < aShape.size(); ++i) aPad[r - aShape.size() + i] = aShape[i];
  for (size_t i = 0; i < bShape.size(); ++i) bPad[r - bShape.size() + i] = bShape[i];
  std::vector<int64_t> aStr(r), bStr(r);
  int64_t as = 1, bs = 1;
  for (size_t i = r; i-- > 0;) {
    aStr[i] = aPad[i] == 1 ? 0 : as;
    bStr[i] = bPad[i] == 1 ? 0 : bs;
    as *= aPad[i];
    bs *= bPad[i];
  }
  BroadcastPlan pl;
  for (size_t i = 0; i < r; ++i) {
    if (outShape[i] == 1) continue;
    pl.total *= outShape[i];
    if (!pl.dims.empty() && pl.aStrides.back() == aStr[i] * outShape[i] &&
        pl.bStrides.back() == bStr[i] * outShape[i]) {
      pl.dims.back() *= outShape[i];
      pl.aStrides.back() = aStr[i];
      pl.bStrides.back() = bStr[i];
    } else {
      pl.dims.push_back(outShape[i]);
      pl.aStrides.push_back(aStr[i]);
      pl.bStrides.push_back(bStr[i]);
    }
  }
  if (pl.dims.empty()) {
    pl.dims = {1};
    pl.aStrides = {0};
    pl.bStrides = {0};
  }
  return pl;
}

template <int Op>
void runBinary(const float* a, const float* b, float* out, const BroadcastPlan& pl) {
  const size_t d = pl.dims.size();
  const int64_t inner = pl.dims[d - 1];
  const int64_t sa = pl.aStrides[d - 1], sb = pl.bStrides[d - 1];
  const int64_t rows = pl.total / inner;
#pragma omp parallel for schedule(static) if (pl.total >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t ao = 0, bo = 0, rem = row;
    for (size_t j = d - 1; j-- > 0;) {
      int64_t idx = rem % pl.dims[j];
      rem /= pl.dims[j];
      ao += idx * pl.aStrides[j];
      bo += idx * pl.bStrides[j];
    }
    const float* pa = a + ao;
    const float* pb = b + bo;
    float* po = out + row * inner;
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) po[i] = applyBinary<Op>(pa[i], pb[i]);
    } else if (sa == 1) {
      const float bv = pb[0];
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) po[i] = applyBinary<Op>(pa[i], bv);
    } else if (sb == 1) {
      const float av = pa[0];
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) po[i] = applyBinary<Op>(av, pb[i]);
    } else {
      const float v = applyBinary<Op>(pa[0], pb[0]);
      for (int64_t i = 0; i < inner; ++i) po[i] = v;
    }
  }
}

int64_t product(const std::vector<int64_t>& s) {
  int64_t p = 1;
  for (int64_t v : s) p *= v;
  return p;
}

// binary(op, a, aShape, b, bShape, out, outShape) -> boolean
Napi::Value Binary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  auto aShape = intListArg(info, 2, "aShape");
  auto bShape = intListArg(info, 4, "bShape");
  auto outShape = intListArg(info, 6, "outShape");
  if (outShape.size() < aShape.size() || outShape.size() < bShape.size()) {
    throw Napi::TypeError::New(info.Env(), "binary: output rank is smaller than an input's");
  }
  const float* a = floatArg(info, 1, product(aShape), "a");
  const float* b = floatArg(info, 3, product(bShape), "b");
  float* out = floatArg(info, 5, product(outShape), "out");
  BroadcastPlan pl = plan(aShape, bShape, outShape);
  switch (op) {
    case kAdd: runBinary<kAdd>(a, b, out, pl); break;
    case kSub: runBinary<kSub>(a, b, out, pl); break;
    case kMul: runBinary<kMul>(a, b, out, pl); break;
    case kDiv: runBinary<kDiv>(a, b, out, pl); break;
    case kMax: runBinary<kMax>(a, b, out, pl); break;
    case kMin: runBinary<kMin>(a, b, out, pl); break;
    case kSquaredDiff: runBinary<kSquaredDiff>(a, b, out, pl); break;
    case kMulScaled:
      binaryScale = info.Length() > 7 && info[7].IsNumber() ? info[7].As<Napi::Number>().FloatValue() : 1.f;
      runBinary<kMulScaled>(a, b, out, pl);
      break;
    default: return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), true);
}

enum UnaryOp {
  kRelu = 0, kRelu6, kStep, kNeg, kExp, kLog, kSqrt, kRsqrt, kSquare, kAbs, kSigmoid, kTanh, kReciprocal, kElu,
  kLeakyRelu, kCopy
};

template <int Op>
inline float applyUnary(float x, float alpha) {
  if constexpr (Op == kRelu) return x < 0.f ? 0.f : x;
  if constexpr (Op == kRelu6) return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
  if constexpr (Op == kStep) return std::isnan(x) ? x : (x > 0.f ? 1.f : alpha);
  if constexpr (Op == kNeg) return -x;
  if constexpr (Op == kExp) return std::exp(x);
  if constexpr (Op == kLog) return std::log(x);
  if constexpr (Op == kSqrt) return std::sqrt(x);
  if constexpr (Op == kRsqrt) return 1.f / std::sqrt(x);
  if constexpr (Op == kSquare) return x * x;
  if constexpr (Op == kAbs) return std::fabs(x);
  if constexpr (Op == kSigmoid) return 1.f / (1.f + std::exp(-x));
  if constexpr (Op == kTanh) return std::tanh(x);
  if constexpr (Op == kReciprocal) return 1.f / x;
  if constexpr (Op == kElu) return x >= 0.f ? x : std::expm1(x);
  if constexpr (Op == kLeakyRelu) return x < 0.f ? alpha * x : x;
  return x;
}

template <int Op>
void runUnary(const float* x, float* out, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = applyUnary<Op>(x[i], alpha);
}

bool unaryDispatch(int op, const float* x, float* out, int64_t n, float alpha) {
  switch (op) {
    case kRelu: runUnary<kRelu>(x, out, n, alpha); return true;
    case kRelu6: runUnary<kRelu6>(x, out, n, alpha); return true;
    case kStep: runUnary<kStep>(x, out, n, alpha); return true;
    case kNeg: runUnary<kNeg>(x, out, n, alpha); return true;
    case kExp: runUnary<kExp>(x, out, n, alpha); return true;
    case kLog: runUnary<kLog>(x, out, n, alpha); return true;
    case kSqrt: runUnary<kSqrt>(x, out, n, alpha); return true;
    case kRsqrt: runUnary<kRsqrt>(x, out, n, alpha); return true;
    case kSquare: runUnary<kSquare>(x, out, n, alpha); return true;
    case kAbs: runUnary<kAbs>(x, out, n, alpha); return true;
    case kSigmoid: runUnary<kSigmoid>(x, out, n, alpha); return true;
    case kTanh: runUnary<kTanh>(x, out, n, alpha); return true;
    case kReciprocal: runUnary<kReciprocal>(x, out, n, alpha); return true;
    case kElu: runUnary<kElu>(x, out, n, alpha); return true;
    case kLeakyRelu: runUnary<kLeakyRelu>(x, out, n, alpha); return true;
    case kCopy: runUnary<kCopy>(x, out, n, alpha); return true;
    default: return false;
  }
}

// unary(op, x, out, n, alpha) -> boolean
Napi::Value Unary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  int64_t n = info[3].As<Napi::Number>().Int64Value();
  const float* x = floatArg(info, 1, n, "x");
  float* out = floatArg(info, 2, n, "out");
  float alpha = info[4].IsNumber() ? info[4].As<Napi::Number>().FloatValue() : 0.f;
  return Napi::Boolean::New(info.Env(), unaryDispatch(op, x, out, n, alpha));
}

// Activation gradients in one pass. op 0: dy * (x > 0) (ReLU, through Step); 1: dy * (0 < x < 6) (ReLU6);
// 2: ELU's gradient from its output y: dy * (y < 0 ? y + 1 : 1).
Napi::Value ActivationGrad(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  int64_t n = info[4].As<Napi::Number>().Int64Value();
  const float* dy = floatArg(info, 1, n, "dy");
  const float* x = floatArg(info, 2, n, "x");
  float* out = floatArg(info, 3, n, "out");
  switch (op) {
    case 0:
    case 1: {
      const float hi = op == 0 ? std::numeric_limits<float>::infinity() : 6.f;
      const int64_t chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
      for (int64_t start = 0; start < n; start += chunk) {
        maskInRange(x + start, dy + start, out + start, std::min(chunk, n - start), 0.f, hi);
      }
      return Napi::Boolean::New(info.Env(), true);
    }
    case 2:
#pragma omp parallel for simd schedule(static) if (n >= kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) {
        const float d = dy[i];
        const float neg = d * (x[i] + 1.f);
        out[i] = x[i] < 0.f ? neg : d;
      }
      return Napi::Boolean::New(info.Env(), true);
    default:
      return Napi::Boolean::New(info.Env(), false);
  }
}

// batchNorm(x, n, mean, variance, offset | null, scale | null, eps, out): tfjs's FusedBatchNorm, whose
// parameters repeat cyclically over x (length C for a channels-last tensor, or 1).
Napi::Value BatchNorm(const Napi::CallbackInfo& info) {
  int64_t n = info[1].As<Napi::Number>().Int64Value();
  const float* x = floatArg(info, 0, n, "x");
  auto len = [&](size_t i) -> int64_t {
    return info[i].IsTypedArray() ? static_cast<int64_t>(info[i].As<Napi::Float32Array>().ElementLength()) : 0;
  };
  const int64_t mL = len(2), vL = len(3), oL = len(4), sL = len(5);
  const float* m = floatArg(info, 2, 1, "mean");
  const float* v = floatArg(info, 3, 1, "variance");
  static const float zero = 0.f, one = 1.f;
  const float* off = oL ? floatArg(info, 4, 1, "offset") : &zero;
  const float* sc = sL ? floatArg(info, 5, 1, "scale") : &one;
  const float eps = info[6].As<Napi::Number>().FloatValue();
  float* out = floatArg(info, 7, n, "out");
  const int64_t c = mL;
  const bool perChannel = c > 0 && vL == c && (oL == c || oL == 0) && (sL == c || sL == 0) && n % c == 0;
  if (perChannel) {
    std::vector<float> a(c), o(c), mm(m, m + c);
    for (int64_t j = 0; j < c; ++j) {
      a[j] = static_cast<float>((sL ? sc[j] : 1.0) / std::sqrt(static_cast<double>(v[j]) + eps));
      o[j] = oL ? off[j] : 0.f;
    }
    const int64_t rows = n / c;
    const float *pa = a.data(), *po = o.data(), *pm = mm.data();
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * c;
      float* yr = out + r * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - pm[j]) * pa[j] + po[j];
    }
  } else {
    const int64_t oLen = oL ? oL : 1, sLen = sL ? sL : 1;
    for (int64_t i = 0; i < n; ++i) {
      out[i] = static_cast<float>(off[i % oLen] +
                                  (x[i] - m[i % mL]) * sc[i % sLen] / std::sqrt(static_cast<double>(v[i % vL]) + eps));
    }
  }
  return Napi::Boolean::New(info.Env(), true);
}

// Two per-channel sums over the rows of a channels-last tensor of n values and c channels, accumulated in double
// per thread: addRow(r, s1, s2) adds row r's terms to s1[0..c) and s2[0..c). Returns s1 then s2 (2c values).
template <typename AddRow>
std::vector<double> channelSums(int64_t n, int64_t c, AddRow addRow) {
  const int64_t rows = n / c;
  const int threads = n >= kParallelThreshold ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads) * 2 * c, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    double* s1 = partial.data() + static_cast<size_t>(t) * 2 * c;
    for (int64_t r = rows * t / nt; r < rows * (t + 1) / nt; ++r) addRow(r, s1, s1 + c);
  }
  std::vector<double> total(partial.begin(), partial.begin() + 2 * c);
  for (int t = 1; t < threads; ++t) {
    for (int64_t j = 0; j < 2 * c; ++j) total[j] += partial[static_cast<size_t>(t) * 2 * c + j];
  }
  return total;
}

// batchMoments(x, n, c, mean, variance): per-channel mean and (biased) variance of a channels-last tensor in one
// read of x, where tfjs's moments takes five full passes (Mean, Sub, Square, Mean and the copies they write).
// Sums of (x - shift) and its square accumulate in double, the shift being the first row, so that the variance
// keeps float precision when the mean is large against the spread.
Napi::Value BatchMoments(const Napi::CallbackInfo& info) {
  const int64_t n = info[1].As<Napi::Number>().Int64Value();
  const int64_t c = info[2].As<Napi::Number>().Int64Value();
  if (c <= 0 || n <= 0 || n % c != 0) throw Napi::TypeError::New(info.Env(), "batchMoments: size is not a positive multiple of channels");
  const float* x = floatArg(info, 0, n, "x");
  float* mean = floatArg(info, 3, c, "mean");
  float* variance = floatArg(info, 4, c, "variance");
  const float* shift = x;
  const auto sums = channelSums(n, c, [&](int64_t r, double* s1, double* s2) {
    const float* xr = x + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const double d = static_cast<double>(xr[j]) - shift[j];
      s1[j] += d;
      s2[j] += d * d;
    }
  });
  const double rows = static_cast<double>(n / c);
  for (int64_t j = 0; j < c; ++j) {
    const double m = sums[j] / rows;
    mean[j] = static_cast<float>(shift[j] + m);
    variance[j] = static_cast<float>(std::max(0.0, sums[c + j] / rows - m * m));
  }
  return Napi::Boolean::New(info.Env(), true);
}

// batchNormGradStats(x, dy, mean, n, c, sumDy, sumDyXmu): per-channel sums of dy and dy * (x - mean) over a
// channels-last tensor, the only full-size reductions of batch normalisation's backward pass.
Napi::Value BatchNormGradStats(const Napi::CallbackInfo& info) {
  const int64_t n = info[3].As<Napi::Number>().Int64Value();
  const int64_t c = info[4].As<Napi::Number>().Int64Value();
  if (c <= 0 || n % c != 0) throw Napi::TypeError::New(info.Env(), "batchNormGradStats: size is not a multiple of channels");
  const float* x = floatArg(info, 0, n, "x");
  const float* dy = floatArg(info, 1, n, "dy");
  const float* mean = floatArg(info, 2, c, "mean");
  float* sumDy = floatArg(info, 5, c, "sumDy");
  float* sumDyXmu = floatArg(info, 6, c, "sumDyXmu");
  const auto sums = channelSums(n, c, [&](int64_t r, double* s1, double* s2) {
    const float* xr = x + r * c;
    const float* dr = dy + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      s1[j] += dr[j];
      s2[j] += static_cast<double>(dr[j]) * (xr[j] - mean[j]);
    }
  });
  for (int64_t j = 0; j < c; ++j) {
    sumDy[j] = static_cast<float>(sums[j]);
    sumDyXmu[j] = static_cast<float>(sums[c + j]);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// Tile, Pad and Slice copy whole rows (innermost axis). For output row `row`, the offset of its source row in x: each
// outer axis's output index goes through `axis(j, index)` to x's index along that axis, or to -1 when the row lies
// outside x (padding). Returns -1 for such a row.
template <typename AxisMap>
int64_t sourceRow(int64_t row, const std::vector<int64_t>& outShape, const std::vector<int64_t>& xStrides, AxisMap axis) {
  int64_t offset = 0;
  for (size_t j = outShape.size() - 1; j-- > 0;) {
    const int64_t idx = axis(j, row % outShape[j]);
    row /= outShape[j];
    if (idx < 0) return -1;
    offset += idx * xStrides[j];
  }
  return offset;
}

std::vector<int64_t> rowStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size() - 1; i-- > 0;) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

// tile(x, xShape, reps, out): tfjs's Tile (batch norm's gradient tiles per-channel values to the full shape).
Napi::Value Tile(const Napi::CallbackInfo& info) {
  auto shape = intListArg(info, 1, "shape");
  auto reps = intListArg(info, 2, "reps");
  if (shape.empty() || reps.size() != shape.size()) throw Napi::TypeError::New(info.Env(), "tile: bad shape/reps");
  const size_t r = shape.size();
  std::vector<int64_t> outShape(r);
  for (size_t i = 0; i < r; ++i) outShape[i] = shape[i] * reps[i];
  const float* x = floatArg(info, 0, product(shape), "x");
  const int64_t total = product(outShape);
  float* out = floatArg(info, 3, total, "out");
  if (total == 0) return Napi::Boolean::New(info.Env(), true);
  const int64_t inner = outShape[r - 1], xInner = shape[r - 1];
  const int64_t rows = total / inner;
  const auto xStrides = rowStrides(shape);
#pragma omp parallel for schedule(static) if (total >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const float* src = x + sourceRow(row, outShape, xStrides, [&](size_t j, int64_t i) { return i % shape[j]; });
    float* dst = out + row * inner;
    for (int64_t k = 0; k < inner; k += xInner) std::copy(src, src + xInner, dst + k);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// pad(x, xShape, before, after, value, out): tfjs's PadV2 with a constant (Keras's ZeroPadding2D in front of
// ResNet-50's first convolution and pooling). One output row (innermost axis) at a time: fill it, copy x's row in.
Napi::Value Pad(const Napi::CallbackInfo& info) {
  auto shape = intListArg(info, 1, "shape");
  auto before = intListArg(info, 2, "before");
  auto after = intListArg(info, 3, "after");
  const size_t r = shape.size();
  if (r == 0 || before.size() != r || after.size() != r) throw Napi::TypeError::New(info.Env(), "pad: bad shape/paddings");
  for (size_t i = 0; i < r; ++i) {
    if (before[i] < 0 || after[i] < 0) return Napi::Boolean::New(info.Env(), false);
  }
  const float value = info[4].As<Napi::Number>().FloatValue();
  std::vector<int64_t> outShape(r);
  for (size_t i = 0; i < r; ++i) outShape[i] = shape[i] + before[i] + after[i];
  const float* x = floatArg(info, 0, product(shape), "x");
  const int64_t total = product(outShape);
  float* out = floatArg(info, 5, total, "out");
  if (total == 0) return Napi::Boolean::New(info.Env(), true);
  const int64_t inner = outShape[r - 1], xInner = shape[r - 1];
  const int64_t rows = total / inner;
  const auto xStrides = rowStrides(shape);
#pragma omp parallel for schedule(static) if (total >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    float* dst = out + row * inner;
    const int64_t xo = sourceRow(row, outShape, xStrides, [&](size_t j, int64_t i) {
      const int64_t k = i - before[j];
      return k < shape[j] ? k : -1;
    });
    if (xo < 0 || xInner == 0) {
      std::fill(dst, dst + inner, value);
      continue;
    }
    std::fill(dst, dst + before[r - 1], value);
    std::copy(x + xo, x + xo + xInner, dst + before[r - 1]);
    std::fill(dst + before[r - 1] + xInner, dst + inner, value);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// slice(x, xShape, begin, size, out): tfjs's Slice (the gradient of a pad: ResNet-50's ZeroPadding2D before its
// first pooling slices a 16×114×114×64 gradient every step). One output row (innermost axis) at a time.
Napi::Value Slice(const Napi::CallbackInfo& info) {
  auto shape = intListArg(info, 1, "shape");
  auto begin = intListArg(info, 2, "begin");
  auto size = intListArg(info, 3, "size");
  const size_t r = shape.size();
  if (r == 0 || begin.size() != r || size.size() != r) throw Napi::TypeError::New(info.Env(), "slice: bad shape/begin/size");
  for (size_t i = 0; i < r; ++i) {
    if (begin[i] < 0 || size[i] < 0 || begin[i] + size[i] > shape[i]) return Napi::Boolean::New(info.Env(), false);
  }
  const float* x = floatArg(info, 0, product(shape), "x");
  const int64_t total = product(size);
  float* out = floatArg(info, 4, total, "out");
  if (total == 0) return Napi::Boolean::New(info.Env(), true);
  const int64_t inner = size[r - 1];
  const int64_t rows = total / inner;
  const auto xStrides = rowStrides(shape);
#pragma omp parallel for schedule(static) if (total >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t xo = begin[r - 1] + sourceRow(row, size, xStrides, [&](size_t j, int64_t i) { return i + begin[j]; });
    std::copy(x + xo, x + xo + inner, out + row * inner);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// adamUpdate([g, m, v, w, mOut, vOut, wOut] * variables, [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t,
// 1 - beta2^t, eps, -lr]): tfjs's Adam step for every variable in one pass (one parallel region for all of them)
// instead of fourteen full-size ops per variable. Every constant arrives already rounded to float32 and each
// operation rounds to float32 in tfjs's order (no FMA contraction: the addon is built for baseline x86-64), so
// the result is bit-identical to tfjs's AdamOptimizer.
// One chunk of the update. GCC will not vectorise std::sqrt (errno), so the body is written 4-wide with vector
// extensions and SSE's sqrtps, which is correctly rounded like sqrtss: the results do not change.
inline float adamOne(float gi, float mi0, float vi0, float wi, const float* k, float& mOut, float& vOut) {
  const float mi = mi0 * k[0] + gi * k[1];
  const float vi = vi0 * k[2] + (gi * gi) * k[3];
  mOut = mi;
  vOut = vi;
  return ((mi / k[4]) / (std::sqrt(vi / k[5]) + k[6])) * k[7] + wi;
}

void adamChunk(const float* g, const float* m, const float* v, const float* w, float* mOut, float* vOut, float* wOut,
               int64_t n, const float* k) {
  int64_t i = 0;
#if defined(__SSE2__)
  auto splat = [](float x) { return F4{x, x, x, x}; };
  const F4 b1 = splat(k[0]), omb1 = splat(k[1]), b2 = splat(k[2]), omb2 = splat(k[3]), omab1 = splat(k[4]),
           omab2 = splat(k[5]), eps = splat(k[6]), negLr = splat(k[7]);
  for (; i + 4 <= n; i += 4) {
    const F4 gi = load4(g + i);
    const F4 mi = load4(m + i) * b1 + gi * omb1;
    const F4 vi = load4(v + i) * b2 + (gi * gi) * omb2;
    store4(mOut + i, mi);
    store4(vOut + i, vi);
    const F4 denom = __builtin_ia32_sqrtps(vi / omab2) + eps;
    store4(wOut + i, ((mi / omab1) / denom) * negLr + load4(w + i));
  }
#endif
  for (; i < n; ++i) wOut[i] = adamOne(g[i], m[i], v[i], w[i], k, mOut[i], vOut[i]);
}

Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "adamUpdate: arrays must be an array");
  auto list = info[0].As<Napi::Array>();
  if (list.Length() % 7 != 0) throw Napi::TypeError::New(info.Env(), "adamUpdate: 7 arrays per variable");
  const float* k = floatArg(info, 1, 8, "constants");
  struct Var {
    const float *g, *m, *v, *w;
    float *mOut, *vOut, *wOut;
  };
  std::vector<Var> vars;
  struct Chunk {
    size_t var;
    int64_t start, len;
  };
  std::vector<Chunk> chunks;
  constexpr int64_t kChunk = 1 << 14;
  int64_t total = 0;
  for (uint32_t i = 0; i < list.Length(); i += 7) {
    float* p[7];
    int64_t n = -1;
    for (uint32_t j = 0; j < 7; ++j) {
      Napi::Value a = list[i + j];
      if (!a.IsTypedArray() || a.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw Napi::TypeError::New(info.Env(), "adamUpdate: Float32Arrays expected");
      }
      auto f = a.As<Napi::Float32Array>();
      if (n < 0) n = static_cast<int64_t>(f.ElementLength());
      if (static_cast<int64_t>(f.ElementLength()) != n) throw Napi::TypeError::New(info.Env(), "adamUpdate: lengths differ");
      p[j] = f.Data();
    }
    vars.push_back({p[0], p[1], p[2], p[3], p[4], p[5], p[6]});
    for (int64_t s = 0; s < n; s += kChunk) chunks.push_back({vars.size() - 1, s, std::min(kChunk, n - s)});
    total += n;
  }
  const int64_t count = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (total >= kParallelThreshold)
  for (int64_t c = 0; c < count; ++c) {
    const Chunk& ch = chunks[c];
    const Var& x = vars[ch.var];
    const int64_t s = ch.start;
    adamChunk(x.g + s, x.m + s, x.v + s, x.w + s, x.mOut + s, x.vOut + s, x.wOut + s, ch.len, k);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// batchNormGradX(x, dy, mean, a, b, k, n, c, out, reluMask): out = dy * a + b + (x - mean) * k per channel (last
// axis): the whole input gradient of batch normalisation in training, moments included, once the per-channel
// coefficients are known (src/engine/fusion.ts). With reluMask, x is a ReLU's output and out is 0 where x <= 0:
// the gradient of the ReLU's input in the same pass.
Napi::Value BatchNormGradX(const Napi::CallbackInfo& info) {
  const int64_t n = info[6].As<Napi::Number>().Int64Value();
  const int64_t c = info[7].As<Napi::Number>().Int64Value();
  if (c <= 0 || n % c != 0) throw Napi::TypeError::New(info.Env(), "batchNormGradX: size is not a multiple of channels");
  const float* x = floatArg(info, 0, n, "x");
  const float* dy = floatArg(info, 1, n, "dy");
  const float* mean = floatArg(info, 2, c, "mean");
  const float* a = floatArg(info, 3, c, "a");
  const float* b = floatArg(info, 4, c, "b");
  const float* k = floatArg(info, 5, c, "k");
  float* out = floatArg(info, 8, n, "out");
  const bool reluMask = info.Length() > 9 && info[9].ToBoolean().Value();
  const int64_t rows = n / c;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    const float* dr = dy + r * c;
    float* o = out + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) o[j] = dr[j] * a[j] + b[j] + (xr[j] - mean[j]) * k[j];
    if (reluMask) maskInRange(xr, o, o, c, 0.f, std::numeric_limits<float>::infinity());
  }
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void initEltwise(Napi::Env env, Napi::Object exports) {
  exports.Set("binary", Napi::Function::New(env, locked<Binary>));
  exports.Set("unary", Napi::Function::New(env, locked<Unary>));
  exports.Set("activationGrad", Napi::Function::New(env, locked<ActivationGrad>));
  exports.Set("batchNorm", Napi::Function::New(env, locked<BatchNorm>));
  exports.Set("tile", Napi::Function::New(env, locked<Tile>));
  exports.Set("pad", Napi::Function::New(env, locked<Pad>));
  exports.Set("slice", Napi::Function::New(env, locked<Slice>));
  exports.Set("batchNormGradStats", Napi::Function::New(env, locked<BatchNormGradStats>));
  exports.Set("batchMoments", Napi::Function::New(env, locked<BatchMoments>));
  exports.Set("adamUpdate", Napi::Function::New(env, locked<AdamUpdate>));
  exports.Set("batchNormGradX", Napi::Function::New(env, locked<BatchNormGradX>));
}

}  // namespace fundus
