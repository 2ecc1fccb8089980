#include "context.h"

#include <omp.h>

#include <cstdlib>
#include <sstream>

namespace fundus {

std::mutex& kernelMutex() {
  static std::mutex m;
  return m;
}

dnnl::engine& cpuEngine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& cpuStream() {
  static dnnl::stream s(cpuEngine());
  return s;
}

namespace {
struct Buffer {
  void* ptr = nullptr;
  size_t bytes = 0;
};
Buffer slots[kSlotCount];
}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  Buffer& b = slots[slot];
  if (bytes == 0) bytes = 64;
  if (b.bytes < bytes) {
    std::free(b.ptr);
    size_t rounded = (bytes + 4095) / 4096 * 4096;
    b.ptr = std::aligned_alloc(64, rounded);
    if (!b.ptr) throw std::bad_alloc();
    b.bytes = rounded;
  }
  return b.ptr;
}

size_t scratchBytes() {
  size_t total = 0;
  for (auto& b : slots) total += b.bytes;
  return total;
}

void releaseScratch() {
  for (auto& b : slots) {
    std::free(b.ptr);
    b.ptr = nullptr;
    b.bytes = 0;
  }
}

namespace {
int configuredThreads = 0;
}

int threadCount() { return configuredThreads > 0 ? configuredThreads : omp_get_max_threads(); }
void setThreadCount(int n) {
  if (n <= 0) return;
  configuredThreads = n;
  omp_set_num_threads(n);
}

int threadsForWork(double flops) { return flops < 2e7 ? 1 : threadCount(); }

ThreadScope::ThreadScope(int n) : previous_(omp_get_max_threads()) {
  if (n != previous_) omp_set_num_threads(n);
}
ThreadScope::~ThreadScope() {
  if (omp_get_max_threads() != previous_) omp_set_num_threads(previous_);
}

float* floatArg(const Napi::CallbackInfo& info, size_t index, size_t minLength, const char* what) {
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Float32Array");
  }
  auto arr = info[index].As<Napi::Float32Array>();
  if (arr.ElementLength() < minLength) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " is too short: " + std::to_string(arr.ElementLength()) +
                                               " < " + std::to_string(minLength));
  }
  return arr.Data();
}

std::vector<int64_t> intListArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsArray()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an array of integers");
  }
  auto arr = info[index].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr[i];
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must hold numbers");
    out[i] = v.As<Napi::Number>().Int64Value();
  }
  return out;
}

std::vector<int64_t> intsArg(const Napi::CallbackInfo& info, size_t index, size_t count, const char* what) {
  auto out = intListArg(info, index, what);
  if (out.size() != count) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must have " + std::to_string(count) + " entries");
  }
  return out;
}

std::string keyOf(const char* kind, const std::vector<int64_t>& p) {
  std::string k(kind);
  for (int64_t v : p) {
    k += ':';
    k += std::to_string(v);
  }
  return k;
}

}  // namespace fundus
