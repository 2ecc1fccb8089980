// Standalone oneDNN 2.6 study for issue #15: ResNet-50's bottleneck blocks at inference (224 px), in three plans:
//   nhwc:    what fundus runs today (src/engine/inference.ts): every convolution on its own with tfjs's NHWC in and
//            out, batch norm folded (bias), ReLU fused, the block's last 1x1 with the shortcut summed in (sum post-op,
//            the shortcut copied into the destination first) and the block's ReLU; weights packed once; the layout
//            chosen as native/src/conv.cc's `auto` does (plain NHWC if oneDNN serves it with a jit/brg kernel, else
//            blocked with reorders around the convolution).
//   mixed:   the first STUDY_SPLIT blocks (default 7: the 56x56 and 28x28 ones) kept as in stack, then one reorder
//            to NHWC and the rest as nhwc with the residual summed in place.
//   block:   (a) the block on the layouts oneDNN picks (format_tag::any), reordered from NHWC at the block's input and
//            back at its output only.
//   stack:   (b) every block kept in the blocked layout: one reorder after the stem, one before the pooling; an
//            identity block's last convolution sums into its input's buffer in place (no residual copy).
// Prints CPU time (one thread unless STUDY_THREADS) per block type and per network (the 16 blocks), medians of
// repetitions after a warm-up, and the largest relative difference of each plan's output against nhwc's.
// Build and run (not part of the addon):
//   g++ -O2 -std=c++17 -fopenmp benchmarks/scripts/resnet-block-study.cc -ldnnl -o /tmp/resnet-block-study
//   taskset -c 1 /tmp/resnet-block-study [batch ...] [--reps R]
#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static engine eng(engine::kind::cpu, 0);
static stream strm(eng);

// Reorders take non-const handles.
static void reo(const reorder& r, memory src, memory dst) { r.execute(strm, src, dst); }

static double cpuMs() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static bool direct(const std::string& impl) {
  return impl.find("ref") == std::string::npos && impl.find("gemm") == std::string::npos &&
         (impl.find("brg") != std::string::npos || impl.find("jit") != std::string::npos);
}

static void fillRandom(memory& m, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  float* p = static_cast<float*>(m.get_data_handle());
  const size_t n = m.get_desc().get_size() / sizeof(float);
  for (size_t i = 0; i < n; ++i) p[i] = d(rng);
}

// One convolution of a block: geometry and its own (random, He-scaled) weights and bias in plain layouts.
struct ConvSpec {
  int64_t c, o, k, stride, pad;  // "same": pad k/2 both sides for 3x3 at stride 1; 0 for the 1x1s
  memory w, b;                   // oihw, x
};

static ConvSpec makeSpec(int64_t c, int64_t o, int64_t k, int64_t stride, unsigned seed) {
  ConvSpec s{c, o, k, stride, k / 2, memory({{o, c, k, k}, dt::f32, tag::oihw}, eng), memory({{o}, dt::f32, tag::x}, eng)};
  fillRandom(s.w, std::sqrt(2.f / (c * k * k)), seed);
  fillRandom(s.b, 0.1f, seed + 1000);
  return s;
}

// A primitive with its packed weights. With a residual: the sum post-op (the destination holds the residual first).
struct Conv {
  convolution_forward prim;
  convolution_forward::primitive_desc pd;
  memory w, b, scratch;
  std::string impl;
};

static Conv makeConv(const ConvSpec& s, int64_t n, int64_t h, const memory::desc& src, const memory::desc& dst, bool relu, bool sum,
                     prop_kind prop) {
  const int64_t oh = (h + 2 * s.pad - s.k) / s.stride + 1;
  (void)oh;
  primitive_attr attr;
  attr.set_scratchpad_mode(scratchpad_mode::user);
  post_ops po;
  if (sum) po.append_sum(1.f);
  if (relu) po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  attr.set_post_ops(po);
  convolution_forward::desc d(prop, algorithm::convolution_direct, src, memory::desc({s.o, s.c, s.k, s.k}, dt::f32, tag::any), s.b.get_desc(), dst,
                              {s.stride, s.stride}, {s.pad, s.pad}, {s.pad, s.pad});
  Conv c{convolution_forward(), convolution_forward::primitive_desc(d, attr, eng), memory(), s.b, memory(), ""};
  c.prim = convolution_forward(c.pd);
  c.impl = c.pd.impl_info_str();
  c.w = memory(c.pd.weights_desc(), eng);
  reo(reorder(s.w, c.w), s.w, c.w);
  c.scratch = memory(c.pd.scratchpad_desc(), eng);
  return c;
}

static void run(Conv& c, const memory& src, const memory& dst) {
  c.prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, c.w}, {DNNL_ARG_BIAS, c.b}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, c.scratch}});
}

// Block geometry: input c x h x h, mid width m, output o, stride s on the first 1x1 (Keras ResNet-50 v1) and on the
// projection shortcut (first block of a stage).
struct BlockSpec {
  int64_t c, h, m, o, stride;
  bool projection;
  ConvSpec c1, c2, c3, sc;
  int64_t oh() const { return h / stride; }
};

static BlockSpec makeBlock(int64_t c, int64_t h, int64_t m, int64_t o, int64_t stride, bool projection, unsigned seed) {
  BlockSpec b{c, h, m, o, stride, projection, makeSpec(c, m, 1, stride, seed), makeSpec(m, m, 3, 1, seed + 1), makeSpec(m, o, 1, 1, seed + 2),
              projection ? makeSpec(c, o, 1, stride, seed + 3) : ConvSpec{}};
  // Keep the residual branch's scale moderate (like a trained network's last batch-norm gamma).
  float* w3 = static_cast<float*>(b.c3.w.get_data_handle());
  for (size_t i = 0; i < b.c3.w.get_desc().get_size() / sizeof(float); ++i) w3[i] *= 0.3f;
  return b;
}

static memory::desc nhwc(int64_t n, int64_t c, int64_t h) { return {{n, c, h, h}, dt::f32, tag::nhwc}; }
// The activations' layout of the blocked plans: what oneDNN picks (any, default), or one forced by STUDY_LAYOUT
// (nChw16c, nChw8c: the blocked layouts of oneDNN's jit_avx512_common / jit_avx2 kernels and onnxruntime's NCHWc).
static tag blockedLayout() {
  const char* e = std::getenv("STUDY_LAYOUT");
  if (e && std::string(e) == "nChw16c") return tag::nChw16c;
  if (e && std::string(e) == "nChw8c") return tag::nChw8c;
  return tag::any;
}
static memory::desc anyOf(int64_t n, int64_t c, int64_t h) { return {{n, c, h, h}, dt::f32, blockedLayout()}; }

// ---- nhwc plan: fundus's convolution step as conv.cc runs it (auto layout, reorders if not served on NHWC) ----
struct NhwcConv {
  Conv conv;
  bool plain;
  memory::desc userSrc, userDst;
  memory bsrc, bdst;  // blocked buffers when not plain
  reorder rin, rout, rres;
};

static memory::desc anyDesc(int64_t n, int64_t c, int64_t h) { return {{n, c, h, h}, dt::f32, tag::any}; }

static NhwcConv makeNhwcConv(const ConvSpec& s, int64_t n, int64_t h, bool relu, bool sum) {
  const int64_t oh = (h + 2 * s.pad - s.k) / s.stride + 1;
  NhwcConv r{};
  r.userSrc = nhwc(n, s.c, h);
  r.userDst = nhwc(n, s.o, oh);
  // fundus's forwardDescWith uses prop_kind::forward_training (STUDY_NHWC_PROP=inference: forward_inference).
  const prop_kind prop = std::getenv("STUDY_NHWC_PROP") && std::string(std::getenv("STUDY_NHWC_PROP")) == "inference" ? prop_kind::forward_inference
                                                                                                                 : prop_kind::forward_training;
  r.conv = makeConv(s, n, h, r.userSrc, r.userDst, relu, sum, prop);
  r.plain = direct(r.conv.impl);
  if (!r.plain) {
    r.conv = makeConv(s, n, h, anyDesc(n, s.c, h), anyDesc(n, s.o, oh), relu, sum, prop);
    r.bsrc = memory(r.conv.pd.src_desc(), eng);
    r.bdst = memory(r.conv.pd.dst_desc(), eng);
    r.rin = reorder(reorder::primitive_desc(eng, r.userSrc, eng, r.conv.pd.src_desc()));
    r.rout = reorder(reorder::primitive_desc(eng, r.conv.pd.dst_desc(), eng, r.userDst));
    r.rres = reorder(reorder::primitive_desc(eng, r.userDst, eng, r.conv.pd.dst_desc()));
  }
  return r;
}

// dst (NHWC) = conv(src) [+ residual (NHWC)]
static void runNhwc(NhwcConv& c, const memory& src, const memory& dst, const memory* residual) {
  if (c.plain) {
    if (residual && residual->get_data_handle() != dst.get_data_handle()) std::memcpy(dst.get_data_handle(), residual->get_data_handle(), dst.get_desc().get_size());
    run(c.conv, src, dst);
    return;
  }
  reo(c.rin, src, c.bsrc);
  if (residual) reo(c.rres, *residual, c.bdst);
  run(c.conv, c.bsrc, c.bdst);
  reo(c.rout, c.bdst, dst);
}

struct NhwcBlock {
  NhwcConv c1, c2, c3, sc;
  memory t1, t2, tsc;
  bool projection;
};

static NhwcBlock makeNhwcBlock(const BlockSpec& b, int64_t n) {
  NhwcBlock r{makeNhwcConv(b.c1, n, b.h, true, false), makeNhwcConv(b.c2, n, b.oh(), true, false), makeNhwcConv(b.c3, n, b.oh(), true, true),
              b.projection ? makeNhwcConv(b.sc, n, b.h, false, false) : NhwcConv{}, memory(nhwc(n, b.m, b.oh()), eng),
              memory(nhwc(n, b.m, b.oh()), eng), b.projection ? memory(nhwc(n, b.o, b.oh()), eng) : memory(), b.projection};
  return r;
}

// Keras's order: branch 2a, 2b, 2c reads the shortcut (the projection runs first in fundus's plan? the plan runs the
// layers in model order: 2a, 2b, then the shortcut 1 and 2c at the Add).
static void runNhwcBlock(NhwcBlock& b, const memory& x, const memory& y) {
  runNhwc(b.c1, x, b.t1, nullptr);
  runNhwc(b.c2, b.t1, b.t2, nullptr);
  if (b.projection) runNhwc(b.sc, x, b.tsc, nullptr);
  runNhwc(b.c3, b.t2, y, b.projection ? &b.tsc : &x);
}

// The same with the residual summed in place: an identity block's last convolution writes into its input's buffer
// (y is x), a projection block's into the shortcut's output (no copy of the residual).
static void runNhwcBlockInPlace(NhwcBlock& b, const memory& x, const memory& y) {
  runNhwc(b.c1, x, b.t1, nullptr);
  runNhwc(b.c2, b.t1, b.t2, nullptr);
  if (b.projection) runNhwc(b.sc, x, y, nullptr);
  runNhwc(b.c3, b.t2, y, &y);
}

// ---- blocked block: the block's convolutions on the layouts oneDNN picks ----
struct BlockedBlock {
  Conv c1, c2, c3, sc;
  memory t1, t2;
  memory::desc in, out;  // the blocked layouts of the block's input and output
  bool projection;
};

static BlockedBlock makeBlockedBlock(const BlockSpec& b, int64_t n, const memory::desc* inLayout) {
  BlockedBlock r{};
  r.projection = b.projection;
  const int64_t oh = b.oh();
  r.c1 = makeConv(b.c1, n, b.h, inLayout ? *inLayout : anyOf(n, b.c, b.h), anyOf(n, b.m, oh), true, false, prop_kind::forward_inference);
  r.in = r.c1.pd.src_desc();
  r.c2 = makeConv(b.c2, n, oh, r.c1.pd.dst_desc(), anyOf(n, b.m, oh), true, false, prop_kind::forward_inference);
  r.c3 = makeConv(b.c3, n, oh, r.c2.pd.dst_desc(), b.projection ? anyOf(n, b.o, oh) : r.in, true, true, prop_kind::forward_inference);
  r.out = r.c3.pd.dst_desc();
  if (b.projection) r.sc = makeConv(b.sc, n, b.h, r.in, r.out, false, false, prop_kind::forward_inference);
  if (r.c2.pd.src_desc() != r.c1.pd.dst_desc() || r.c3.pd.src_desc() != r.c2.pd.dst_desc() || (b.projection && (r.sc.pd.src_desc() != r.in || r.sc.pd.dst_desc() != r.out))) {
    std::fprintf(stderr, "layouts do not chain\n");
    std::exit(1);
  }
  r.t1 = memory(r.c1.pd.dst_desc(), eng);
  r.t2 = memory(r.c2.pd.dst_desc(), eng);
  return r;
}

// y (blocked, may be x itself for an identity block: in place) = block(x (blocked)).
static void runBlocked(BlockedBlock& b, const memory& x, const memory& y) {
  run(b.c1, x, b.t1);
  run(b.c2, b.t1, b.t2);
  if (b.projection) run(b.sc, x, y);
  else if (y.get_data_handle() != x.get_data_handle()) std::memcpy(y.get_data_handle(), x.get_data_handle(), y.get_desc().get_size());
  run(b.c3, b.t2, y);
}

struct Stage {
  int64_t c, h, m, o, stride, blocks;
};
// ResNet-50 at 224 px: the stem leaves 64 x 56 x 56.
static const Stage kStages[] = {{64, 56, 64, 256, 1, 3}, {256, 56, 128, 512, 2, 4}, {512, 28, 256, 1024, 2, 6}, {1024, 14, 512, 2048, 2, 3}};

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static double maxRelDiff(const memory& a, const memory& b) {
  const float* p = static_cast<const float*>(a.get_data_handle());
  const float* q = static_cast<const float*>(b.get_data_handle());
  const size_t n = a.get_desc().get_size() / sizeof(float);
  double maxRef = 0, maxDiff = 0;
  for (size_t i = 0; i < n; ++i) {
    maxRef = std::max(maxRef, (double)std::fabs(p[i]));
    maxDiff = std::max(maxDiff, (double)std::fabs(p[i] - q[i]));
  }
  return maxDiff / std::max(maxRef, 1e-30);
}

// The same data in NHWC (reordered from whatever layout m has).
static memory toNhwc(const memory& m) {
  auto dims = m.get_desc().dims();
  memory out({dims, dt::f32, tag::nhwc}, eng);
  reo(reorder(m, out), m, out);
  strm.wait();
  return out;
}

// The inner blocking of a layout, e.g. "16c" for nChw16c.
static std::string blockedTag(const memory::desc& d) {
  const auto& b = d.data.format_desc.blocking;
  std::string s;
  for (int i = 0; i < b.inner_nblks; ++i) s += std::to_string(b.inner_blks[i]) + "abcd"[b.inner_idxs[i]];
  return s.empty() ? "plain" : s;
}

int main(int argc, char** argv) {
  std::vector<int64_t> batches;
  int reps = 7;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--reps") reps = std::atoi(argv[++i]);
    else batches.push_back(std::atoll(argv[i]));
  }
  if (batches.empty()) batches = {16, 1};
  const int threads = std::getenv("STUDY_THREADS") ? std::atoi(std::getenv("STUDY_THREADS")) : 1;
  omp_set_num_threads(threads);
  std::printf("oneDNN %d.%d.%d, %d thread(s), %d repetitions (medians of CPU ms), blocked plans' layout: %s\n", dnnl_version()->major,
              dnnl_version()->minor, dnnl_version()->patch, threads, reps, std::getenv("STUDY_LAYOUT") ? std::getenv("STUDY_LAYOUT") : "any");
  for (int64_t n : batches) {
    // The network's 16 blocks (each with its own weights).
    std::vector<BlockSpec> specs;
    unsigned seed = 1;
    for (const Stage& s : kStages) {
      for (int64_t i = 0; i < s.blocks; ++i, seed += 10) {
        const bool first = i == 0;
        specs.push_back(makeBlock(first ? s.c : s.o, first ? s.h : s.h / s.stride, s.m, s.o, first ? s.stride : 1, first, seed));
      }
    }
    std::vector<NhwcBlock> nb;
    std::vector<BlockedBlock> ab, sb;  // (a) per block, (b) stack
    for (auto& b : specs) nb.push_back(makeNhwcBlock(b, n));
    for (auto& b : specs) ab.push_back(makeBlockedBlock(b, n, nullptr));
    for (size_t i = 0; i < specs.size(); ++i) sb.push_back(makeBlockedBlock(specs[i], n, i == 0 ? nullptr : &sb[i - 1].out));
    // Activations (NHWC) between blocks for the nhwc and block plans.
    std::vector<memory> acts;
    acts.emplace_back(nhwc(n, specs[0].c, specs[0].h), eng);
    fillRandom(acts[0], 1.f, 99);
    { float* p = static_cast<float*>(acts[0].get_data_handle()); for (size_t i = 0; i < acts[0].get_desc().get_size() / 4; ++i) p[i] = std::max(p[i], 0.f); }
    for (auto& b : specs) acts.emplace_back(nhwc(n, b.o, b.oh()), eng);
    std::vector<memory> aacts(acts.size());
    aacts[0] = acts[0];
    for (size_t i = 1; i < acts.size(); ++i) aacts[i] = memory(acts[i].get_desc(), eng);
    // Per block (a): blocked buffers of input and output, reorders.
    std::vector<memory> ain, aout;
    std::vector<reorder> rin, rout;
    for (size_t i = 0; i < specs.size(); ++i) {
      ain.emplace_back(ab[i].in, eng);
      aout.emplace_back(ab[i].out, eng);
      rin.emplace_back(reorder::primitive_desc(eng, acts[i].get_desc(), eng, ab[i].in));
      rout.emplace_back(reorder::primitive_desc(eng, ab[i].out, eng, acts[i + 1].get_desc()));
    }
    // Stack (b): one reorder in, buffers per projection block, identity blocks in place, one reorder out.
    memory sx(sb[0].in, eng);
    reorder sin(reorder::primitive_desc(eng, acts[0].get_desc(), eng, sb[0].in));
    std::vector<memory> souts;  // the output buffer of each block (a projection block's own, an identity block's input)
    for (size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].projection) souts.emplace_back(sb[i].out, eng);
      else souts.push_back(i == 0 ? sx : souts.back());
    }
    memory sy(acts.back().get_desc(), eng);
    reorder sout(reorder::primitive_desc(eng, sb.back().out, eng, acts.back().get_desc()));

    auto runNhwcNet = [&](std::vector<double>* per) {
      for (size_t i = 0; i < specs.size(); ++i) {
        const double t = cpuMs();
        runNhwcBlock(nb[i], acts[i], acts[i + 1]);
        strm.wait();
        if (per) per[i].push_back(cpuMs() - t);
      }
    };
    // In place: projection blocks write their own buffer (pouts), identity blocks their input's.
    std::vector<memory> pouts;
    memory px(acts[0].get_desc(), eng);
    for (size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].projection) pouts.emplace_back(acts[i + 1].get_desc(), eng);
      else pouts.push_back(pouts.back());
    }
    auto runInPlaceNet = [&](std::vector<double>* per) {
      for (size_t i = 0; i < specs.size(); ++i) {
        const double t = cpuMs();
        runNhwcBlockInPlace(nb[i], i == 0 ? acts[0] : pouts[i - 1], pouts[i]);
        strm.wait();
        if (per) per[i].push_back(cpuMs() - t);
      }
    };
    // Mixed: stack blocks [0, split), one reorder to NHWC, in-place NHWC blocks [split, 16).
    const size_t split = std::getenv("STUDY_SPLIT") ? std::atoi(std::getenv("STUDY_SPLIT")) : 7;
    memory mx(acts[split].get_desc(), eng);
    reorder mreo(reorder::primitive_desc(eng, sb[split - 1].out, eng, acts[split].get_desc()));
    std::vector<memory> mouts(specs.size());
    for (size_t i = split; i < specs.size(); ++i) mouts[i] = specs[i].projection ? memory(acts[i + 1].get_desc(), eng) : (i == split ? mx : mouts[i - 1]);
    auto runMixedNet = [&](std::vector<double>* per) {
      double t = cpuMs();
      reo(sin, acts[0], sx);
      for (size_t i = 0; i < specs.size(); ++i) {
        if (i < split) {
          runBlocked(sb[i], i == 0 ? sx : souts[i - 1], souts[i]);
          if (i + 1 == split) reo(mreo, souts[i], mx);
        } else {
          runNhwcBlockInPlace(nb[i], i == split ? mx : mouts[i - 1], mouts[i]);
        }
        strm.wait();
        if (per) per[i].push_back(cpuMs() - t);
        t = cpuMs();
      }
    };
    auto runBlockNet = [&](std::vector<double>* per) {
      for (size_t i = 0; i < specs.size(); ++i) {
        const double t = cpuMs();
        reo(rin[i], aacts[i], ain[i]);
        runBlocked(ab[i], ain[i], aout[i]);
        reo(rout[i], aout[i], aacts[i + 1]);
        strm.wait();
        if (per) per[i].push_back(cpuMs() - t);
      }
    };
    auto runStackNet = [&](std::vector<double>* per) {
      double t = cpuMs();
      reo(sin, acts[0], sx);
      for (size_t i = 0; i < specs.size(); ++i) {
        const memory& x = i == 0 ? sx : souts[i - 1];
        runBlocked(sb[i], x, souts[i]);
        if (i + 1 == specs.size()) reo(sout, souts[i], sy);
        strm.wait();
        if (per) per[i].push_back(cpuMs() - t);
        t = cpuMs();
      }
    };
    // Exactness: one pass of each from the same input.
    runNhwcNet(nullptr);
    runBlockNet(nullptr);
    runStackNet(nullptr);
    runInPlaceNet(nullptr);
    runMixedNet(nullptr);
    std::printf("mixed (first %zu blocks as stack, the rest NHWC in place): max relative difference at the output %.2e\n", split,
                maxRelDiff(acts.back(), mouts.back()));
    std::printf("\nbatch %lld: max |x - nhwc| / max |nhwc| at the network's output: block %.2e, stack %.2e, nhwc in place %.2e\n", (long long)n,
                maxRelDiff(acts.back(), aacts.back()), maxRelDiff(acts.back(), sy), maxRelDiff(acts.back(), pouts.back()));
    // Per-block exactness from the same input (each block fed nhwc's input).
    double worst = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      reo(rin[i], acts[i], ain[i]);
      runBlocked(ab[i], ain[i], aout[i]);
      strm.wait();
      worst = std::max(worst, maxRelDiff(acts[i + 1], toNhwc(aout[i])));
    }
    std::printf("worst per-block max relative difference (block plan vs nhwc, same input): %.2e\n", worst);
    std::vector<double> pn[16], pa[16], ps[16], pi[16], pm[16], tn, ta, ts, ti, tm;
    for (int r = 0; r < reps + 1; ++r) {
      const bool keep = r > 0;
      double t = cpuMs();
      runNhwcNet(keep ? pn : nullptr);
      if (keep) tn.push_back(cpuMs() - t);
      t = cpuMs();
      runBlockNet(keep ? pa : nullptr);
      if (keep) ta.push_back(cpuMs() - t);
      t = cpuMs();
      runStackNet(keep ? ps : nullptr);
      if (keep) ts.push_back(cpuMs() - t);
      t = cpuMs();
      runInPlaceNet(keep ? pi : nullptr);
      if (keep) ti.push_back(cpuMs() - t);
      t = cpuMs();
      runMixedNet(keep ? pm : nullptr);
      if (keep) tm.push_back(cpuMs() - t);
    }
    std::printf("%-34s %9s %9s %9s %9s %9s  %s\n", "block (in -> mid -> out, map, stride)", "nhwc", "block(a)", "stack(b)", "inplace", "mixed", "implementations nhwc 1x1a/3x3/1x1c[/sc] | blocked");
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& b = specs[i];
      char name[96];
      std::snprintf(name, sizeof name, "%2zu %4lld->%3lld->%4lld %3lldx%-3lld s%lld%s", i, (long long)b.c, (long long)b.m, (long long)b.o,
                    (long long)b.h, (long long)b.h, (long long)b.stride, b.projection ? " proj" : "");
      std::string impls = nb[i].c1.conv.impl + (nb[i].c1.plain ? "" : "*") + "/" + nb[i].c2.conv.impl + (nb[i].c2.plain ? "" : "*") + "/" +
                          nb[i].c3.conv.impl + (nb[i].c3.plain ? "" : "*") + " | " + ab[i].c1.impl + "/" + ab[i].c2.impl + "/" + ab[i].c3.impl + " " + blockedTag(ab[i].out);
      std::printf("%-34s %9.2f %9.2f %9.2f %9.2f %9.2f  %s\n", name, median(pn[i]), median(pa[i]), median(ps[i]), median(pi[i]), median(pm[i]), impls.c_str());
    }
    std::printf("%-34s %9.2f %9.2f %9.2f %9.2f %9.2f  (network: medians of whole passes; stack and mixed include their reorders)\n", "all 16 blocks",
                median(tn), median(ta), median(ts), median(ti), median(tm));
    std::printf("saving against nhwc: block(a) %.1f %%, stack(b) %.1f %%, nhwc in place %.1f %%, mixed %.1f %%; mixed against nhwc in place %.1f %%\n",
                100 * (1 - median(ta) / median(tn)), 100 * (1 - median(ts) / median(tn)), 100 * (1 - median(ti) / median(tn)),
                100 * (1 - median(tm) / median(tn)), 100 * (1 - median(tm) / median(ti)));
  }
  return 0;
}
