// Batched matrix multiplication through oneDNN's sgemm (row-major, multi-threaded, JIT-compiled for the CPU).
#include "context.h"

namespace fundus {
namespace {

// batchMatMul(a, b, c, [batch, batchA, batchB, m, n, k, transposeA, transposeB])
// Follows tfjs: batch index i reads a[i % batchA] and b[i % batchB].
Napi::Value BatchMatMul(const Napi::CallbackInfo& info) {
  auto p = intsArg(info, 3, 8, "params");
  const int64_t batch = p[0], batchA = p[1], batchB = p[2], m = p[3], n = p[4], k = p[5];
  const bool ta = p[6] != 0, tb = p[7] != 0;
  const float* a = floatArg(info, 0, batchA * m * k, "a");
  const float* b = floatArg(info, 1, batchB * k * n, "b");
  float* c = floatArg(info, 2, batch * m * n, "c");
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  ThreadScope scope(threadsForWork(2.0 * m * n * k));
  for (int64_t i = 0; i < batch; ++i) {
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.f, a + (i % batchA) * m * k, lda,
                                  b + (i % batchB) * k * n, ldb, 0.f, c + i * m * n, n);
    if (st != dnnl_success) return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void initMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("batchMatMul", Napi::Function::New(env, locked<BatchMatMul>));
}

}  // namespace fundus
