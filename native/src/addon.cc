// fundus_native: the N-API entry point. Kernels live in conv.cc, pool.cc, matmul.cc, eltwise.cc, reduce.cc.
#include <omp.h>

#include "context.h"

namespace fundus {
size_t convCacheSize();
void clearConvCache();
size_t packCount();
size_t packedBytes();
size_t poolCacheSize();
void clearPoolCache();

namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const dnnl_version_t* v = dnnl_version();
  o.Set("threads", threadCount());
  o.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  o.Set("cpuRuntime", v->cpu_runtime == DNNL_RUNTIME_OMP ? "omp" : "other");
  o.Set("cachedPrimitives", static_cast<double>(convCacheSize() + poolCacheSize()));
  o.Set("scratchBytes", static_cast<double>(scratchBytes()));
  o.Set("weightPacks", static_cast<double>(packCount()));
  o.Set("packedWeightBytes", static_cast<double>(packedBytes()));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  setThreadCount(info[0].As<Napi::Number>().Int32Value());
  return Napi::Number::New(info.Env(), threadCount());
}

// Frees cached primitives and scratch buffers (tests and long-running servers that change shapes).
Napi::Value ClearCaches(const Napi::CallbackInfo& info) {
  clearConvCache();
  clearPoolCache();
  releaseScratch();
  return info.Env().Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, locked<Info>));
  exports.Set("setThreads", Napi::Function::New(env, locked<SetThreads>));
  exports.Set("clearCaches", Napi::Function::New(env, locked<ClearCaches>));
  initConv(env, exports);
  initPool(env, exports);
  initMatmul(env, exports);
  initEltwise(env, exports);
  initReduce(env, exports);
  return exports;
}

}  // namespace fundus

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return fundus::Init(env, exports); }
NODE_API_MODULE(fundus_native, InitAddon)
