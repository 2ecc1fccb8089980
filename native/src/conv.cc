// 2-D convolution forward, backward-data and backward-weights on oneDNN.
// tfjs keeps activations in NHWC (or NCHW) and filters in HWIO; oneDNN runs fastest on blocked layouts that it
// chooses itself (format_tag::any), so every call reorders from and to the tfjs layouts around the primitive, except
// for weights packed once (conv2dPack): constant weights (an inference plan's) are reordered on their first call and
// kept in the primitive's layout with the primitive itself.
#include <algorithm>
#include <atomic>
#include <optional>
#include <cstdlib>
#include <cstring>

#include "context.h"

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace fundus {
namespace {

// Parameter vector shared with src/engine/kernels/conv.ts. `groups` is 1 for an ordinary convolution and c for a
// depthwise one (tfjs's DepthwiseConv2dNative: o = c × multiplier, output channel ci × multiplier + m).
struct ConvParams {
  int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl, pb, pr, nchw, hasBias, act, groups;
  explicit ConvParams(const std::vector<int64_t>& p)
      : n(p[0]), c(p[1]), h(p[2]), w(p[3]), o(p[4]), kh(p[5]), kw(p[6]), oh(p[7]), ow(p[8]), sh(p[9]), sw(p[10]),
        dh(p[11]), dw(p[12]), pt(p[13]), pl(p[14]), pb(p[15]), pr(p[16]), nchw(p[17]), hasBias(p[18]), act(p[19]),
        groups(p[20]) {}
  memory::desc src(bool any) const { return {{n, c, h, w}, dt::f32, any ? tag::any : (nchw ? tag::nchw : tag::nhwc)}; }
  memory::desc dst(bool any) const { return {{n, o, oh, ow}, dt::f32, any ? tag::any : (nchw ? tag::nchw : tag::nhwc)}; }
  memory::desc weights(bool any) const {
    if (groups == 1) return {{o, c, kh, kw}, dt::f32, any ? tag::any : tag::hwio};
    // Depthwise: tfjs's filter is [kh, kw, c, multiplier]; oneDNN's grouped dims are {g, o/g, c/g = 1, kh, kw}.
    const int64_t m = o / groups;
    memory::dims dims{groups, m, c / groups, kh, kw};
    if (any) return {dims, dt::f32, tag::any};
    return {dims, dt::f32, memory::dims{m, 1, 1, kw * c * m, c * m}};
  }
  memory::desc bias() const { return {{o}, dt::f32, tag::x}; }
  bool valid() const { return groups >= 1 && c % groups == 0 && o % groups == 0; }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims dilates() const { return {dh - 1, dw - 1}; }
  memory::dims padL() const { return {pt, pl}; }
  memory::dims padR() const { return {pb, pr}; }
};
constexpr size_t kConvParamCount = 21;

// One side of a primitive: the tfjs-layout user memory and the layout the primitive wants.
struct Port {
  memory::desc user, prim;
  bool needsReorder = false;
  dnnl::reorder reorder;
  static Port input(const memory::desc& user, const memory::desc& prim) {
    Port p;
    p.user = user;
    p.prim = prim;
    if (user != prim) {
      p.needsReorder = true;
      p.reorder = dnnl::reorder(dnnl::reorder::primitive_desc(cpuEngine(), user, cpuEngine(), prim));
    }
    return p;
  }
  static Port output(const memory::desc& user, const memory::desc& prim) {
    Port p;
    p.user = user;
    p.prim = prim;
    if (user != prim) {
      p.needsReorder = true;
      p.reorder = dnnl::reorder(dnnl::reorder::primitive_desc(cpuEngine(), prim, cpuEngine(), user));
    }
    return p;
  }
  memory bindInput(const float* data, ScratchSlot slot) {
    memory u(user, cpuEngine(), const_cast<float*>(data));
    if (!needsReorder) return u;
    memory m(prim, cpuEngine(), scratch(slot, prim.get_size()));
    reorder.execute(cpuStream(), u, m);
    return m;
  }
  memory bindOutput(float* data, ScratchSlot slot) {
    if (!needsReorder) return memory(user, cpuEngine(), data);
    return memory(prim, cpuEngine(), scratch(slot, prim.get_size()));
  }
  void finishOutput(memory& m, float* data) {
    if (!needsReorder) return;
    memory u(user, cpuEngine(), data);
    reorder.execute(cpuStream(), m, u);
  }
};

dnnl::primitive_attr baseAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

memory scratchpadMemory(const memory::desc& md) {
  return memory(md, cpuEngine(), scratch(kScratchpad, md.get_size()));
}

// Activation layout policy. Weights are always left to oneDNN (format_tag::any). Activations: oneDNN's blocked
// layouts (any) need a reorder from and to tfjs's NHWC on every call; on CPUs where oneDNN has a direct kernel for
// plain NHWC (e.g. brgconv on AVX-512) that kernel is as fast and saves the reorders. `auto` tries plain NHWC and
// keeps it only when the implementation is such a kernel (never a gemm or reference fallback, which can be 100x
// slower), else uses any. FUNDUS_CONV_LAYOUT=any|plain|auto (default auto).
enum class Layout { kAny, kPlain, kAuto };
Layout parseLayout(const char* e, Layout fallback) {
  if (e && std::string(e) == "any") return Layout::kAny;
  if (e && std::string(e) == "plain") return Layout::kPlain;
  if (e && std::string(e) == "auto") return Layout::kAuto;
  return fallback;
}
Layout layoutPolicy() {
  static const Layout v = parseLayout(std::getenv("FUNDUS_CONV_LAYOUT"), Layout::kAuto);
  return v;
}
// Backward-data alone (FUNDUS_CONV_LAYOUT_BWD_DATA, default: as FUNDUS_CONV_LAYOUT).
Layout backwardDataPolicy() {
  static const Layout v = parseLayout(std::getenv("FUNDUS_CONV_LAYOUT_BWD_DATA"), layoutPolicy());
  return v;
}

template <typename PD>
bool isDirectKernel(const PD& pd) {
  const std::string impl = pd.impl_info_str();
  return impl.find("ref") == std::string::npos && impl.find("gemm") == std::string::npos &&
         (impl.find("brg") != std::string::npos || impl.find("jit") != std::string::npos);
}

// Builds the primitive descriptor with plain activations if the policy allows and it is fast, else with any.
template <typename PD, typename Make>
PD choose(Make make, Layout policy = layoutPolicy()) {
  if (policy != Layout::kAny) {
    try {
      PD pd = make(false);
      if (policy == Layout::kPlain || isDirectKernel(pd)) return pd;
    } catch (const dnnl::error&) {
      if (policy == Layout::kPlain) throw;
    }
  }
  return make(true);
}

dnnl::convolution_forward::primitive_desc forwardDescWith(const ConvParams& q, bool withBias, const dnnl::primitive_attr& attr, bool any) {
  auto d = withBias ? dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                      q.src(any), q.weights(true), q.bias(), q.dst(any), q.strides(),
                                                      q.dilates(), q.padL(), q.padR())
                    : dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                      q.src(any), q.weights(true), q.dst(any), q.strides(),
                                                      q.dilates(), q.padL(), q.padR());
  return dnnl::convolution_forward::primitive_desc(d, attr, cpuEngine());
}

dnnl::convolution_forward::primitive_desc forwardDesc(const ConvParams& q, bool withBias, const dnnl::primitive_attr& attr) {
  return choose<dnnl::convolution_forward::primitive_desc>([&](bool any) { return forwardDescWith(q, withBias, attr, any); });
}

double convFlops(const ConvParams& q) { return 2.0 * q.n * q.oh * q.ow * q.o * (q.c / q.groups) * q.kh * q.kw; }

struct ForwardEntry {
  int threads = 1;
  dnnl::convolution_forward prim;
  Port src, weights, dst;
  // With a residual: the reorder of the residual (tfjs layout) into the primitive's destination layout.
  Port residual;
  memory::desc scratchpad;
};

struct BackwardDataEntry {
  int threads = 1;
  dnnl::convolution_backward_data prim;
  Port diffDst, weights, diffSrc;
  memory::desc scratchpad;
};

struct BackwardWeightsEntry {
  int threads = 1;
  dnnl::convolution_backward_weights prim;
  Port src, diffDst, diffWeights;
  memory::desc scratchpad;
};

ShapeCache<ForwardEntry> forwardCache;
ShapeCache<BackwardDataEntry> backwardDataCache;
ShapeCache<BackwardWeightsEntry> backwardWeightsCache;

// Weights packed once: one pack per constant filter (the JS side maps the filter's data to its pack id), holding per
// forward call signature (parameters, activation alpha, residual) the primitive and the weights already in its
// layout. Variants whose primitives want the same layout (e.g. two batch sizes) share one packed copy. Owning the
// primitive also keeps it alive when the bounded shape cache is cleared.
std::atomic<int64_t> packedBytesTotal{0};
struct PackedMemory {
  memory m;
  size_t bytes;
  PackedMemory(const memory::desc& d) : m(d, cpuEngine()), bytes(d.get_size()) { packedBytesTotal += static_cast<int64_t>(bytes); }
  ~PackedMemory() { packedBytesTotal -= static_cast<int64_t>(bytes); }
  PackedMemory(const PackedMemory&) = delete;
  PackedMemory& operator=(const PackedMemory&) = delete;
};
struct BlockEntry;
struct PackedVariant {
  std::vector<int64_t> key;
  // The primitive(s) the packed copy serves: a convolution's, or an inverted-residual block's (one variant per
  // filter of the block, its role in the key).
  std::shared_ptr<ForwardEntry> entry;
  std::shared_ptr<BlockEntry> block;
  // Null when the primitive takes the tfjs layout itself (nothing to pack).
  std::shared_ptr<PackedMemory> weights;
};
// A pack serves a handful of batch sizes; beyond that the oldest variant goes (a server fed ever new batch sizes).
constexpr size_t kMaxPackedVariants = 8;
struct Pack {
  std::vector<PackedVariant> variants;
};
std::unordered_map<int64_t, Pack> packs;
int64_t nextPackId = 1;

bool appendActivation(dnnl::post_ops& po, int64_t act, float alpha) {
  switch (act) {
    case 0: return true;
    case 1: po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f); return true;
    case 2: po.append_eltwise(1.f, algorithm::eltwise_clip, 0.f, 6.f); return true;
    case 3: po.append_eltwise(1.f, algorithm::eltwise_elu, 1.f, 0.f); return true;
    case 4: po.append_eltwise(1.f, algorithm::eltwise_relu, alpha, 0.f); return true;
    case 5: po.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f); return true;
    default: return false;
  }
}

std::vector<int64_t> forwardKey(const std::vector<int64_t>& p, float alpha, bool withResidual) {
  std::vector<int64_t> kp(p);
  kp.push_back(static_cast<int64_t>(alpha * 1e6f));
  kp.push_back(withResidual ? 1 : 0);
  return kp;
}

std::shared_ptr<ForwardEntry> forwardEntry(const std::vector<int64_t>& p, float alpha, bool withResidual) {
  std::string key = keyOf("fwd", forwardKey(p, alpha, withResidual));
  if (auto e = forwardCache.find(key)) return e;
  ConvParams q(p);
  const int threads = threadsForWork(convFlops(q));
  ThreadScope scope(threads);
  auto attr = baseAttr();
  dnnl::post_ops po;
  // y = act(conv(x) + bias + residual): the residual is put in the destination first and summed into it.
  if (withResidual) po.append_sum(1.f);
  if (!appendActivation(po, q.act, alpha)) return nullptr;
  attr.set_post_ops(po);
  auto pd = forwardDesc(q, q.hasBias != 0, attr);
  auto e = std::make_shared<ForwardEntry>();
  e->threads = threads;
  e->prim = dnnl::convolution_forward(pd);
  e->src = Port::input(q.src(false), pd.src_desc());
  e->weights = Port::input(q.weights(false), pd.weights_desc());
  e->dst = Port::output(q.dst(false), pd.dst_desc());
  if (withResidual) e->residual = Port::input(q.dst(false), pd.dst_desc());
  e->scratchpad = pd.scratchpad_desc();
  forwardCache.put(key, e);
  return e;
}

std::shared_ptr<BackwardDataEntry> backwardDataEntry(const std::vector<int64_t>& p) {
  std::string key = keyOf("bwd_data", p);
  if (auto e = backwardDataCache.find(key)) return e;
  ConvParams q(p);
  const int threads = threadsForWork(convFlops(q));
  ThreadScope scope(threads);
  auto pd = choose<dnnl::convolution_backward_data::primitive_desc>([&](bool any) {
    auto hint = forwardDescWith(q, false, dnnl::primitive_attr(), any);
    dnnl::convolution_backward_data::desc d(algorithm::convolution_direct, q.src(any), q.weights(true), q.dst(any),
                                            q.strides(), q.dilates(), q.padL(), q.padR());
    return dnnl::convolution_backward_data::primitive_desc(d, baseAttr(), cpuEngine(), hint);
  }, backwardDataPolicy());
  auto e = std::make_shared<BackwardDataEntry>();
  e->threads = threads;
  e->prim = dnnl::convolution_backward_data(pd);
  e->diffDst = Port::input(q.dst(false), pd.diff_dst_desc());
  e->weights = Port::input(q.weights(false), pd.weights_desc());
  e->diffSrc = Port::output(q.src(false), pd.diff_src_desc());
  e->scratchpad = pd.scratchpad_desc();
  backwardDataCache.put(key, e);
  return e;
}

std::shared_ptr<BackwardWeightsEntry> backwardWeightsEntry(const std::vector<int64_t>& p) {
  std::string key = keyOf("bwd_weights", p);
  if (auto e = backwardWeightsCache.find(key)) return e;
  ConvParams q(p);
  const int threads = threadsForWork(convFlops(q));
  ThreadScope scope(threads);
  auto pd = choose<dnnl::convolution_backward_weights::primitive_desc>([&](bool any) {
    auto hint = forwardDescWith(q, false, dnnl::primitive_attr(), any);
    dnnl::convolution_backward_weights::desc d(algorithm::convolution_direct, q.src(any), q.weights(true), q.dst(any),
                                               q.strides(), q.dilates(), q.padL(), q.padR());
    return dnnl::convolution_backward_weights::primitive_desc(d, baseAttr(), cpuEngine(), hint);
  });
  auto e = std::make_shared<BackwardWeightsEntry>();
  e->threads = threads;
  e->prim = dnnl::convolution_backward_weights(pd);
  e->src = Port::input(q.src(false), pd.src_desc());
  e->diffDst = Port::input(q.dst(false), pd.diff_dst_desc());
  e->diffWeights = Port::output(q.weights(false), pd.diff_weights_desc());
  e->scratchpad = pd.scratchpad_desc();
  backwardWeightsCache.put(key, e);
  return e;
}

const PackedVariant* findVariant(const Pack& pack, const std::vector<int64_t>& key) {
  for (const auto& v : pack.variants) {
    if (v.key == key) return &v;
  }
  return nullptr;
}

// w in the layout `port` wants, owned by the pack: the copy of another variant that wants the same layout (e.g. the
// same filter at another batch size), else a new one. Null when the primitive takes the tfjs layout itself.
std::shared_ptr<PackedMemory> packedCopy(const Pack& pack, Port& port, const float* w, int threads) {
  if (!port.needsReorder) return nullptr;
  for (const auto& other : pack.variants) {
    if (other.weights && other.weights->m.get_desc() == port.prim) return other.weights;
  }
  ThreadScope scope(threads);
  auto m = std::make_shared<PackedMemory>(port.prim);
  memory u(port.user, cpuEngine(), const_cast<float*>(w));
  port.reorder.execute(cpuStream(), u, m->m);
  cpuStream().wait();
  return m;
}

const PackedVariant* addVariant(Pack& pack, PackedVariant v) {
  if (pack.variants.size() >= kMaxPackedVariants) pack.variants.erase(pack.variants.begin());
  pack.variants.push_back(std::move(v));
  return &pack.variants.back();
}

// The pack's variant for this call, created on first use: its primitive, and w reordered into the primitive's
// layout (or the packed copy of an earlier variant that wants the same layout). Null when unsupported.
const PackedVariant* packedVariant(Pack& pack, const std::vector<int64_t>& p, float alpha, bool withResidual, const float* w) {
  const auto key = forwardKey(p, alpha, withResidual);
  if (const PackedVariant* v = findVariant(pack, key)) return v;
  auto e = forwardEntry(p, alpha, withResidual);
  if (!e) return nullptr;
  return addVariant(pack, PackedVariant{key, e, nullptr, packedCopy(pack, e->weights, w, e->threads)});
}

// The pack a JS argument names (a conv2dPack id), null for undefined or null; a TypeError for anything else.
Pack* packArg(const Napi::Env& env, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto it = v.IsNumber() ? packs.find(v.As<Napi::Number>().Int64Value()) : packs.end();
  if (it == packs.end()) throw Napi::TypeError::New(env, "pack must be the id of a live conv2dPack");
  return &it->second;
}

// conv2dForward(x, w, bias | null, y, params, alpha, residual | null?, pack?) -> boolean (false: not supported, use
// the JS kernel). With a residual (y's shape), y = act(conv(x) + bias + residual). With a pack id (conv2dPack), w
// is taken to be the pack's constant weights: reordered on the pack's first call of this signature, then reused.
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  auto p = intsArg(info, 4, kConvParamCount, "params");
  ConvParams q(p);
  if (!q.valid()) return Napi::Boolean::New(info.Env(), false);
  const float* x = floatArg(info, 0, q.n * q.c * q.h * q.w, "x");
  const float* w = floatArg(info, 1, q.kh * q.kw * (q.c / q.groups) * q.o, "filter");
  const float* bias = q.hasBias ? floatArg(info, 2, q.o, "bias") : nullptr;
  float* y = floatArg(info, 3, q.n * q.o * q.oh * q.ow, "y");
  float alpha = info.Length() > 5 && info[5].IsNumber() ? info[5].As<Napi::Number>().FloatValue() : 0.f;
  const bool withResidual = info.Length() > 6 && info[6].IsTypedArray();
  const float* residual = withResidual ? floatArg(info, 6, q.n * q.o * q.oh * q.ow, "residual") : nullptr;
  Pack* pack = info.Length() > 7 ? packArg(info.Env(), info[7]) : nullptr;
  std::shared_ptr<ForwardEntry> e;
  std::shared_ptr<PackedMemory> packed;
  try {
    if (pack) {
      const PackedVariant* v = packedVariant(*pack, p, alpha, withResidual, w);
      if (v) {
        e = v->entry;
        packed = v->weights;
      }
    } else {
      e = forwardEntry(p, alpha, withResidual);
    }
  } catch (const dnnl::error&) {
    return Napi::Boolean::New(info.Env(), false);
  }
  if (!e) return Napi::Boolean::New(info.Env(), false);
  ThreadScope scope(e->threads);
  memory src = e->src.bindInput(x, kSrc);
  memory wts = packed ? packed->m : e->weights.bindInput(w, kWeights);
  memory dst = e->dst.bindOutput(y, kDst);
  if (residual) {
    if (e->residual.needsReorder) {
      memory r(e->residual.user, cpuEngine(), const_cast<float*>(residual));
      e->residual.reorder.execute(cpuStream(), r, dst);
    } else if (residual != y) {
      std::memcpy(y, residual, static_cast<size_t>(q.n * q.o * q.oh * q.ow) * sizeof(float));
    }
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                       {DNNL_ARG_WEIGHTS, wts},
                                       {DNNL_ARG_DST, dst},
                                       {DNNL_ARG_SCRATCHPAD, scratchpadMemory(e->scratchpad)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory({{q.o}, dt::f32, tag::x}, cpuEngine(), const_cast<float*>(bias)));
  e->prim.execute(cpuStream(), args);
  e->dst.finishOutput(dst, y);
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

// conv2dBackwardData(dy, w, dx, params) -> boolean
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  auto p = intsArg(info, 3, kConvParamCount, "params");
  ConvParams q(p);
  if (!q.valid()) return Napi::Boolean::New(info.Env(), false);
  const float* dy = floatArg(info, 0, q.n * q.o * q.oh * q.ow, "dy");
  const float* w = floatArg(info, 1, q.kh * q.kw * (q.c / q.groups) * q.o, "filter");
  float* dx = floatArg(info, 2, q.n * q.c * q.h * q.w, "dx");
  std::shared_ptr<BackwardDataEntry> e;
  try {
    e = backwardDataEntry(p);
  } catch (const dnnl::error&) {
    return Napi::Boolean::New(info.Env(), false);
  }
  ThreadScope scope(e->threads);
  memory diffDst = e->diffDst.bindInput(dy, kSrc);
  memory wts = e->weights.bindInput(w, kWeights);
  memory diffSrc = e->diffSrc.bindOutput(dx, kDst);
  e->prim.execute(cpuStream(), {{DNNL_ARG_DIFF_DST, diffDst},
                                {DNNL_ARG_WEIGHTS, wts},
                                {DNNL_ARG_DIFF_SRC, diffSrc},
                                {DNNL_ARG_SCRATCHPAD, scratchpadMemory(e->scratchpad)}});
  e->diffSrc.finishOutput(diffSrc, dx);
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

// conv2dBackwardWeights(x, dy, dw, params) -> boolean
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info) {
  auto p = intsArg(info, 3, kConvParamCount, "params");
  ConvParams q(p);
  if (!q.valid()) return Napi::Boolean::New(info.Env(), false);
  const float* x = floatArg(info, 0, q.n * q.c * q.h * q.w, "x");
  const float* dy = floatArg(info, 1, q.n * q.o * q.oh * q.ow, "dy");
  float* dw = floatArg(info, 2, q.kh * q.kw * (q.c / q.groups) * q.o, "dw");
  std::shared_ptr<BackwardWeightsEntry> e;
  try {
    e = backwardWeightsEntry(p);
  } catch (const dnnl::error&) {
    return Napi::Boolean::New(info.Env(), false);
  }
  ThreadScope scope(e->threads);
  memory src = e->src.bindInput(x, kSrc);
  memory diffDst = e->diffDst.bindInput(dy, kDst);
  memory diffW = e->diffWeights.bindOutput(dw, kWeights);
  e->prim.execute(cpuStream(), {{DNNL_ARG_SRC, src},
                                {DNNL_ARG_DIFF_DST, diffDst},
                                {DNNL_ARG_DIFF_WEIGHTS, diffW},
                                {DNNL_ARG_SCRATCHPAD, scratchpadMemory(e->scratchpad)}});
  e->diffWeights.finishOutput(diffW, dw);
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

// MobileNetV2's inverted-residual block in inference: the 1x1 expansion (its activation) and the depthwise 3x3
// convolution that alone reads it (its activation) as one primitive, oneDNN's depthwise post-op, so that the wide
// expanded tensor never goes to memory; then the 1x1 projection (with the block's shortcut summed in, if any) reading
// the depthwise output in the layout the fused primitive wrote it. The activations stay in oneDNN's blocked layout
// (nChw8c on AVX2) between the primitives: oneDNN 2.6's fused primitive gives wrong results on NHWC maps larger than
// about 10x10 (docs/backbones.md, third pass) and exact ones blocked. Only the block's narrow input and output are
// reordered from and to tfjs's NHWC.
struct BlockEntry {
  // Each primitive runs on the threads its own work calls for (threadsForWork), as the three convolutions would;
  // the reorders of the narrow input and output are small work of their own.
  int fusedThreads = 1, projectThreads = 1, reorderThreads = 1;
  // False for a shape oneDNN declined (remembered so that it is not tried again).
  bool supported = false;
  dnnl::convolution_forward fused, project;
  Port src, expandWeights, dwWeights, projectWeights, dst, residual;
  memory::desc mid, fusedScratchpad, projectScratchpad;
};
ShapeCache<BlockEntry> blockCache;

bool isPointwise(const ConvParams& q) {
  return q.kh == 1 && q.kw == 1 && q.sh == 1 && q.sw == 1 && q.dh == 1 && q.dw == 1 && q.pt == 0 && q.pl == 0 && q.pb == 0 &&
         q.pr == 0 && q.groups == 1 && q.nchw == 0;
}

// The expansion, the depthwise convolution (multiplier 1, equal strides and near-side paddings: what the post-op
// takes) and the projection, each reading the one before.
bool chained(const ConvParams& e, const ConvParams& d, const ConvParams& p) {
  const bool depthwise = d.kh == 3 && d.kw == 3 && d.groups == d.c && d.o == d.c && d.sh == d.sw && d.dh == 1 && d.dw == 1 &&
                         d.pt == d.pl && d.nchw == 0;
  const auto reads = [](const ConvParams& a, const ConvParams& b) { return b.n == a.n && b.c == a.o && b.h == a.oh && b.w == a.ow; };
  return isPointwise(e) && depthwise && isPointwise(p) && reads(e, d) && reads(d, p) && e.hasBias && d.hasBias;
}

std::vector<int64_t> blockKey(const std::vector<int64_t>& e, const std::vector<int64_t>& d, const std::vector<int64_t>& p, bool withResidual) {
  std::vector<int64_t> k(e);
  k.insert(k.end(), d.begin(), d.end());
  k.insert(k.end(), p.begin(), p.end());
  k.push_back(withResidual ? 1 : 0);
  return k;
}

// The block's primitives, or null when oneDNN cannot run it as one (then the three convolutions run).
std::shared_ptr<BlockEntry> makeBlockEntry(const std::vector<int64_t>& pe, const std::vector<int64_t>& pd, const std::vector<int64_t>& pp, bool withResidual) {
  ConvParams qe(pe), qd(pd), qp(pp);
  if (!chained(qe, qd, qp)) return nullptr;
  auto e = std::make_shared<BlockEntry>();
  e->fusedThreads = threadsForWork(convFlops(qe) + convFlops(qd));
  e->projectThreads = threadsForWork(convFlops(qp));
  e->reorderThreads = threadsForWork(static_cast<double>(std::max(qe.n * qe.c * qe.h * qe.w, qp.n * qp.o * qp.oh * qp.ow)));
  std::optional<ThreadScope> scope(std::in_place, e->fusedThreads);
  auto fusedAttr = baseAttr();
  dnnl::post_ops fusedOps;
  if (!appendActivation(fusedOps, qe.act, 0.f)) return nullptr;
  // The post-op derives its far-side padding from its output size, checked below against tfjs's.
  fusedOps.append_dw(dt::f32, dt::f32, dt::f32, 3, qd.sh, qd.pt, 0, {});
  if (!appendActivation(fusedOps, qd.act, 0.f)) return nullptr;
  fusedAttr.set_post_ops(fusedOps);
  dnnl::convolution_forward::desc fd(prop_kind::forward_inference, algorithm::convolution_direct, qe.src(true), qe.weights(true), qe.bias(),
                                     qe.dst(true), qe.strides(), qe.dilates(), qe.padL(), qe.padR());
  dnnl::convolution_forward::primitive_desc fusedPd(fd, fusedAttr, cpuEngine());
  const memory::desc mid = fusedPd.dst_desc();
  if (mid.dims() != memory::dims{qd.n, qd.o, qd.oh, qd.ow}) return nullptr;
  e->fused = dnnl::convolution_forward(fusedPd);
  scope.emplace(e->projectThreads);
  auto projectAttr = baseAttr();
  dnnl::post_ops projectOps;
  if (withResidual) projectOps.append_sum(1.f);
  if (!appendActivation(projectOps, qp.act, 0.f)) return nullptr;
  projectAttr.set_post_ops(projectOps);
  auto pdesc = qp.hasBias ? dnnl::convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, mid, qp.weights(true), qp.bias(),
                                                            qp.dst(true), qp.strides(), qp.dilates(), qp.padL(), qp.padR())
                          : dnnl::convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, mid, qp.weights(true),
                                                            qp.dst(true), qp.strides(), qp.dilates(), qp.padL(), qp.padR());
  dnnl::convolution_forward::primitive_desc projectPd(pdesc, projectAttr, cpuEngine());
  if (projectPd.src_desc() != mid) return nullptr;
  e->project = dnnl::convolution_forward(projectPd);
  scope.emplace(e->reorderThreads);
  e->src = Port::input(qe.src(false), fusedPd.src_desc());
  e->expandWeights = Port::input(qe.weights(false), fusedPd.weights_desc());
  e->dwWeights = Port::input(qd.weights(false), fusedPd.query_md(dnnl::query::exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS));
  e->projectWeights = Port::input(qp.weights(false), projectPd.weights_desc());
  e->dst = Port::output(qp.dst(false), projectPd.dst_desc());
  if (withResidual) e->residual = Port::input(qp.dst(false), projectPd.dst_desc());
  e->mid = mid;
  e->fusedScratchpad = fusedPd.scratchpad_desc();
  e->projectScratchpad = projectPd.scratchpad_desc();
  e->supported = true;
  return e;
}

// The cached entry of this block shape; a shape oneDNN declined is remembered too (trying costs milliseconds).
std::shared_ptr<BlockEntry> blockEntry(const std::vector<int64_t>& pe, const std::vector<int64_t>& pd, const std::vector<int64_t>& pp, bool withResidual) {
  const std::string key = keyOf("block", blockKey(pe, pd, pp, withResidual));
  if (auto e = blockCache.find(key)) return e;
  std::shared_ptr<BlockEntry> e;
  try {
    e = makeBlockEntry(pe, pd, pp, withResidual);
  } catch (const dnnl::error&) {
    e = nullptr;
  }
  if (!e) e = std::make_shared<BlockEntry>();
  blockCache.put(key, e);
  return e;
}

// One filter of the block: its pack's copy for this block variant (role: 0 expansion, 1 depthwise, 2 projection),
// made on first use; without a pack, w reordered into `slot` for this call.
memory blockWeights(Pack* pack, const std::shared_ptr<BlockEntry>& e, const std::vector<int64_t>& key, int64_t role, Port& port,
                    const float* w, ScratchSlot slot) {
  if (!pack) return port.bindInput(w, slot);
  std::vector<int64_t> k(key);
  k.push_back(role);
  const PackedVariant* v = findVariant(*pack, k);
  if (!v) v = addVariant(*pack, PackedVariant{k, nullptr, e, packedCopy(*pack, port, w, e->reorderThreads)});
  return v->weights ? v->weights->m : memory(port.user, cpuEngine(), const_cast<float*>(w));
}

// invertedResidualForward(x, we, be, wd, bd, wp, bp | null, residual | null, y, pe, pd, pp, packs?) -> boolean
// (false: not supported, run the three convolutions). pe, pd, pp: the expansion's, the depthwise convolution's and
// the projection's ConvParams, each with its activation code; y = project(dw(expand(x))) (+ residual, before the
// projection's activation). packs: [expansion, depthwise, projection] conv2dPack ids (each may be null), whose
// filters are then taken to be constant.
Napi::Value InvertedResidualForward(const Napi::CallbackInfo& info) {
  auto pe = intsArg(info, 9, kConvParamCount, "expand params");
  auto pd = intsArg(info, 10, kConvParamCount, "depthwise params");
  auto pp = intsArg(info, 11, kConvParamCount, "project params");
  ConvParams qe(pe), qd(pd), qp(pp);
  if (!qe.valid() || !qd.valid() || !qp.valid()) return Napi::Boolean::New(info.Env(), false);
  const float* x = floatArg(info, 0, qe.n * qe.c * qe.h * qe.w, "x");
  const float* we = floatArg(info, 1, qe.c * qe.o * qe.kh * qe.kw, "expand filter");
  const float* be = floatArg(info, 2, qe.o, "expand bias");
  const float* wd = floatArg(info, 3, qd.kh * qd.kw * qd.o, "depthwise filter");
  const float* bd = floatArg(info, 4, qd.o, "depthwise bias");
  const float* wp = floatArg(info, 5, qp.c * qp.o * qp.kh * qp.kw, "project filter");
  const float* bp = qp.hasBias ? floatArg(info, 6, qp.o, "project bias") : nullptr;
  const size_t outSize = static_cast<size_t>(qp.n * qp.o * qp.oh * qp.ow);
  const bool withResidual = info[7].IsTypedArray();
  const float* residual = withResidual ? floatArg(info, 7, outSize, "residual") : nullptr;
  float* y = floatArg(info, 8, outSize, "y");
  Pack* packsOf[3] = {nullptr, nullptr, nullptr};
  if (info.Length() > 12 && info[12].IsArray()) {
    auto ids = info[12].As<Napi::Array>();
    for (uint32_t i = 0; i < 3 && i < ids.Length(); ++i) packsOf[i] = packArg(info.Env(), ids.Get(i));
  }
  std::shared_ptr<BlockEntry> e = blockEntry(pe, pd, pp, withResidual);
  if (!e->supported) return Napi::Boolean::New(info.Env(), false);
  std::optional<ThreadScope> scope(std::in_place, e->reorderThreads);
  const auto key = blockKey(pe, pd, pp, withResidual);
  memory weE = blockWeights(packsOf[0], e, key, 0, e->expandWeights, we, kWeights);
  memory wdE = blockWeights(packsOf[1], e, key, 1, e->dwWeights, wd, kWeights2);
  memory wpE = blockWeights(packsOf[2], e, key, 2, e->projectWeights, wp, kWeights3);
  memory src = e->src.bindInput(x, kSrc);
  memory mid(e->mid, cpuEngine(), scratch(kExtra, e->mid.get_size()));
  memory dst = e->dst.bindOutput(y, kDst);
  if (residual) {
    if (e->residual.needsReorder) {
      memory r(e->residual.user, cpuEngine(), const_cast<float*>(residual));
      e->residual.reorder.execute(cpuStream(), r, dst);
    } else {
      std::memcpy(y, residual, outSize * sizeof(float));
    }
  }
  scope.emplace(e->fusedThreads);
  // The two primitives run one after the other and share the scratchpad slot.
  void* pad = scratch(kScratchpad, std::max(e->fusedScratchpad.get_size(), e->projectScratchpad.get_size()));
  const memory::desc biasDesc({qe.o}, dt::f32, tag::x);
  e->fused.execute(cpuStream(), {{DNNL_ARG_SRC, src},
                                 {DNNL_ARG_WEIGHTS, weE},
                                 {DNNL_ARG_BIAS, memory(biasDesc, cpuEngine(), const_cast<float*>(be))},
                                 {DNNL_ARG_DST, mid},
                                 {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, wdE},
                                 {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, memory(biasDesc, cpuEngine(), const_cast<float*>(bd))},
                                 {DNNL_ARG_SCRATCHPAD, memory(e->fusedScratchpad, cpuEngine(), pad)}});
  scope.emplace(e->projectThreads);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mid},
                                       {DNNL_ARG_WEIGHTS, wpE},
                                       {DNNL_ARG_DST, dst},
                                       {DNNL_ARG_SCRATCHPAD, memory(e->projectScratchpad, cpuEngine(), pad)}};
  if (bp) args.emplace(DNNL_ARG_BIAS, memory({{qp.o}, dt::f32, tag::x}, cpuEngine(), const_cast<float*>(bp)));
  e->project.execute(cpuStream(), args);
  scope.emplace(e->reorderThreads);
  e->dst.finishOutput(dst, y);
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

// conv2dPack() -> id: a new, empty pack for one constant filter (filled by conv2dForward's calls with it).
Napi::Value Conv2dPack(const Napi::CallbackInfo& info) {
  const int64_t id = nextPackId++;
  packs.emplace(id, Pack());
  return Napi::Number::New(info.Env(), static_cast<double>(id));
}

// conv2dReleasePack(id) -> boolean: frees the pack's primitives and packed weights (false: no such pack).
Napi::Value Conv2dReleasePack(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "pack must be a number");
  return Napi::Boolean::New(info.Env(), packs.erase(info[0].As<Napi::Number>().Int64Value()) > 0);
}

}  // namespace

size_t packCount() { return packs.size(); }
size_t packedBytes() { return static_cast<size_t>(packedBytesTotal.load()); }

size_t convCacheSize() { return forwardCache.size() + backwardDataCache.size() + backwardWeightsCache.size() + blockCache.size(); }
void clearConvCache() {
  forwardCache.clear();
  blockCache.clear();
  backwardDataCache.clear();
  backwardWeightsCache.clear();
}

void initConv(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, locked<Conv2dForward>));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, locked<Conv2dBackwardData>));
  exports.Set("conv2dBackwardWeights", Napi::Function::New(env, locked<Conv2dBackwardWeights>));
  exports.Set("invertedResidualForward", Napi::Function::New(env, locked<InvertedResidualForward>));
  exports.Set("conv2dPack", Napi::Function::New(env, locked<Conv2dPack>));
  exports.Set("conv2dReleasePack", Napi::Function::New(env, locked<Conv2dReleasePack>));
}

}  // namespace fundus
