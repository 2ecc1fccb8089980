// Shared state of the addon: the oneDNN engine and stream, reusable scratch buffers, argument helpers.
#pragma once
#include <napi.h>
#include <dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace fundus {

dnnl::engine& cpuEngine();
dnnl::stream& cpuStream();

// Scratch slots reused by every primitive. Calls are synchronous and never nest, so one buffer per role
// (blocked source, blocked weights, blocked destination, oneDNN scratchpad, pooling workspace; a block of
// convolutions' second and third filters) is enough and keeps the memory footprint at the size of the largest layer
// instead of the sum over all cached shapes.
enum ScratchSlot { kSrc = 0, kWeights, kDst, kScratchpad, kWorkspace, kExtra, kWeights2, kWeights3, kSlotCount };
void* scratch(ScratchSlot slot, size_t bytes);
size_t scratchBytes();
void releaseScratch();

int threadCount();
void setThreadCount(int n);

// Small primitives run on one thread: with 2 threads their run time is dominated by OpenMP barriers, which
// become very slow when the cores are shared with other processes. The choice is made per cached primitive
// (oneDNN wants the same thread count at creation and execution).
int threadsForWork(double flops);
class ThreadScope {
 public:
  explicit ThreadScope(int n);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int previous_;
};

// Argument helpers: throw a JS TypeError on misuse so that a wrong call never reads past a buffer.
float* floatArg(const Napi::CallbackInfo& info, size_t index, size_t minLength, const char* what);
std::vector<int64_t> intsArg(const Napi::CallbackInfo& info, size_t index, size_t count, const char* what);
std::vector<int64_t> intListArg(const Napi::CallbackInfo& info, size_t index, const char* what);

std::string keyOf(const char* kind, const std::vector<int64_t>& p);

// A bounded per-shape cache: primitive creation costs milliseconds, execution of small layers microseconds.
template <typename T>
class ShapeCache {
 public:
  std::shared_ptr<T> find(const std::string& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  void put(const std::string& key, std::shared_ptr<T> value) {
    if (map_.size() >= 512) map_.clear();
    map_[key] = std::move(value);
  }
  size_t size() const { return map_.size(); }
  void clear() { map_.clear(); }

 private:
  std::unordered_map<std::string, std::shared_ptr<T>> map_;
};

// Caches and scratch buffers are process-wide while tfjs may run in several worker threads, each with its own
// copy of the addon's JS side: kernels take this lock so that two threads never share a scratch buffer.
std::mutex& kernelMutex();
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value locked(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> guard(kernelMutex());
  return F(info);
}

void initConv(Napi::Env env, Napi::Object exports);
void initPool(Napi::Env env, Napi::Object exports);
void initMatmul(Napi::Env env, Napi::Object exports);
void initEltwise(Napi::Env env, Napi::Object exports);
void initReduce(Napi::Env env, Napi::Object exports);

}  // namespace fundus
