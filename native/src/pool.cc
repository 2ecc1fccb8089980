// Max and average pooling (forward and backward) on oneDNN, in tfjs's NHWC layout.
// Pooling is memory-bound, so it runs on the plain layout directly (no reorders).
#include "context.h"

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace fundus {
namespace {

struct PoolParams {
  int64_t n, c, h, w, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr;
  explicit PoolParams(const std::vector<int64_t>& p)
      : n(p[0]), c(p[1]), h(p[2]), w(p[3]), oh(p[4]), ow(p[5]), kh(p[6]), kw(p[7]), sh(p[8]), sw(p[9]), pt(p[10]),
        pl(p[11]), pb(p[12]), pr(p[13]) {}
  memory::desc src() const { return {{n, c, h, w}, dt::f32, tag::nhwc}; }
  memory::desc dst() const { return {{n, c, oh, ow}, dt::f32, tag::nhwc}; }
};
constexpr size_t kPoolParamCount = 14;

// kind 0 = max; 1 = average over the in-bounds part of the window (tfjs's forward);
// 2 = average over the whole window (tfjs's AvgPoolGrad divides by the full window size even where it is padded).
algorithm algorithmOf(int kind) {
  if (kind == 0) return algorithm::pooling_max;
  if (kind == 1) return algorithm::pooling_avg_exclude_padding;
  return algorithm::pooling_avg_include_padding;
}

dnnl::pooling_forward::primitive_desc forwardDesc(const PoolParams& q, int kind, prop_kind prop) {
  dnnl::pooling_forward::desc d(prop, algorithmOf(kind), q.src(), q.dst(), {q.sh, q.sw}, {q.kh, q.kw}, {q.pt, q.pl},
                                {q.pb, q.pr});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::pooling_forward::primitive_desc(d, attr, cpuEngine());
}

double poolWork(const PoolParams& q) { return static_cast<double>(q.n) * q.oh * q.ow * q.c * q.kh * q.kw * 10; }

struct ForwardEntry {
  int threads = 1;
  dnnl::pooling_forward prim;
  memory::desc workspace, scratchpad;
};
struct BackwardEntry {
  int threads = 1;
  dnnl::pooling_forward forward;  // max pooling: recomputes the argmax workspace
  memory::desc workspace, forwardScratchpad;
  dnnl::pooling_backward prim;
  memory::desc scratchpad;
};

ShapeCache<ForwardEntry> forwardCache;
ShapeCache<BackwardEntry> backwardCache;

std::shared_ptr<ForwardEntry> forwardEntry(int kind, const std::vector<int64_t>& p) {
  std::string key = keyOf(kind == 0 ? "maxpool" : "avgpool", p);
  if (auto e = forwardCache.find(key)) return e;
  const int threads = threadsForWork(poolWork(PoolParams(p)));
  ThreadScope scope(threads);
  auto pd = forwardDesc(PoolParams(p), kind, prop_kind::forward_inference);
  auto e = std::make_shared<ForwardEntry>();
  e->threads = threads;
  e->prim = dnnl::pooling_forward(pd);
  e->scratchpad = pd.scratchpad_desc();
  forwardCache.put(key, e);
  return e;
}

std::shared_ptr<BackwardEntry> backwardEntry(int kind, const std::vector<int64_t>& p) {
  std::string key = keyOf(kind == 0 ? "maxpool_bwd" : "avgpool_bwd", p);
  if (auto e = backwardCache.find(key)) return e;
  PoolParams q(p);
  const int threads = threadsForWork(poolWork(q));
  ThreadScope scope(threads);
  auto fwd = forwardDesc(q, kind, prop_kind::forward_training);
  dnnl::pooling_backward::desc d(algorithmOf(kind), q.src(), q.dst(), {q.sh, q.sw}, {q.kh, q.kw}, {q.pt, q.pl},
                                 {q.pb, q.pr});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::pooling_backward::primitive_desc pd(d, attr, cpuEngine(), fwd);
  auto e = std::make_shared<BackwardEntry>();
  e->threads = threads;
  if (kind == 0) {
    e->forward = dnnl::pooling_forward(fwd);
    e->workspace = fwd.workspace_desc();
    e->forwardScratchpad = fwd.scratchpad_desc();
  }
  e->prim = dnnl::pooling_backward(pd);
  e->scratchpad = pd.scratchpad_desc();
  backwardCache.put(key, e);
  return e;
}

memory scratchMemory(const memory::desc& md, ScratchSlot slot) {
  return memory(md, cpuEngine(), scratch(slot, md.get_size()));
}

// poolForward(kind, x, y, params) -> boolean
Napi::Value PoolForward(const Napi::CallbackInfo& info) {
  int kind = info[0].As<Napi::Number>().Int32Value();
  auto p = intsArg(info, 3, kPoolParamCount, "params");
  PoolParams q(p);
  const float* x = floatArg(info, 1, q.n * q.h * q.w * q.c, "x");
  float* y = floatArg(info, 2, q.n * q.oh * q.ow * q.c, "y");
  std::shared_ptr<ForwardEntry> e;
  try {
    e = forwardEntry(kind, p);
  } catch (const dnnl::error&) {
    return Napi::Boolean::New(info.Env(), false);
  }
  ThreadScope scope(e->threads);
  e->prim.execute(cpuStream(), {{DNNL_ARG_SRC, memory(q.src(), cpuEngine(), const_cast<float*>(x))},
                                {DNNL_ARG_DST, memory(q.dst(), cpuEngine(), y)},
                                {DNNL_ARG_SCRATCHPAD, scratchMemory(e->scratchpad, kScratchpad)}});
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

// poolBackward(kind, dy, x | null, dx, params) -> boolean; x is needed for max pooling only.
Napi::Value PoolBackward(const Napi::CallbackInfo& info) {
  int kind = info[0].As<Napi::Number>().Int32Value();
  auto p = intsArg(info, 4, kPoolParamCount, "params");
  PoolParams q(p);
  const float* dy = floatArg(info, 1, q.n * q.oh * q.ow * q.c, "dy");
  const float* x = kind == 0 ? floatArg(info, 2, q.n * q.h * q.w * q.c, "x") : nullptr;
  float* dx = floatArg(info, 3, q.n * q.h * q.w * q.c, "dx");
  std::shared_ptr<BackwardEntry> e;
  try {
    e = backwardEntry(kind, p);
  } catch (const dnnl::error&) {
    return Napi::Boolean::New(info.Env(), false);
  }
  ThreadScope scope(e->threads);
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, memory(q.dst(), cpuEngine(), const_cast<float*>(dy))},
                                       {DNNL_ARG_DIFF_SRC, memory(q.src(), cpuEngine(), dx)}};
  if (kind == 0) {
    memory ws = scratchMemory(e->workspace, kWorkspace);
    e->forward.execute(cpuStream(), {{DNNL_ARG_SRC, memory(q.src(), cpuEngine(), const_cast<float*>(x))},
                                     {DNNL_ARG_DST, scratchMemory(q.dst(), kExtra)},
                                     {DNNL_ARG_WORKSPACE, ws},
                                     {DNNL_ARG_SCRATCHPAD, scratchMemory(e->forwardScratchpad, kScratchpad)}});
    args.emplace(DNNL_ARG_WORKSPACE, ws);
  }
  // Bound only now: the forward pass above may have grown (moved) the shared scratchpad.
  args.emplace(DNNL_ARG_SCRATCHPAD, scratchMemory(e->scratchpad, kScratchpad));
  e->prim.execute(cpuStream(), args);
  cpuStream().wait();
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

size_t poolCacheSize() { return forwardCache.size() + backwardCache.size(); }
void clearPoolCache() {
  forwardCache.clear();
  backwardCache.clear();
}

void initPool(Napi::Env env, Napi::Object exports) {
  exports.Set("poolForward", Napi::Function::New(env, locked<PoolForward>));
  exports.Set("poolBackward", Napi::Function::New(env, locked<PoolBackward>));
}

}  // namespace fundus
