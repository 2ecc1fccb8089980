// JPEG decoding with libjpeg-turbo's DCT-domain scaling, for preprocessing.
//
// Why not sharp: a 512x512 fundus JPEG costs sharp (libvips + mozjpeg) about 2.7 ms of CPU to decode, while
// libjpeg-turbo decodes it in 0.56 ms, and in 0.35 ms at half scale, where the 8x8 inverse DCT shrinks to 4x4 and
// the image is never produced at full size. At inference, decoding a photo took longer than running the network on
// it; this brings it well below.
//
// Only plain JPEGs take this path: a file with an EXIF orientation other than "normal", an ICC profile or CMYK data
// is reported as `unsupported` and the caller decodes it with sharp, which rotates and colour-manages it.

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <jpeglib.h>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  std::string message;
};

void OnError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  char buf[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buf);
  err->message = buf;
  longjmp(err->jump, 1);
}

// libjpeg only warns about corrupt or truncated data and fills the rest with grey; a network must not see that,
// so warnings fail the decode (as sharp's failOn: 'warning' does).
void OnMessage(j_common_ptr cinfo, int level) {
  if (level < 0) OnError(cinfo);
}

uint16_t Read16(const uint8_t* p, bool little) { return little ? (p[0] | p[1] << 8) : (p[0] << 8 | p[1]); }
uint32_t Read32(const uint8_t* p, bool little) {
  return little ? (p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24) : (uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]);
}

// The EXIF orientation tag of an APP1 segment, 1 ("normal") when absent or unreadable.
int ExifOrientation(const uint8_t* d, size_t n) {
  if (n < 14 || std::memcmp(d, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* tiff = d + 6;
  size_t len = n - 6;
  bool little = tiff[0] == 'I';
  uint32_t ifd = Read32(tiff + 4, little);
  if (ifd + 2 > len) return 1;
  uint16_t count = Read16(tiff + ifd, little);
  for (uint16_t i = 0; i < count; i++) {
    size_t e = ifd + 2 + size_t(i) * 12;
    if (e + 12 > len) return 1;
    if (Read16(tiff + e, little) == 0x0112) return Read16(tiff + e + 8, little);
  }
  return 1;
}

struct Decoded {
  std::vector<uint8_t> pixels;
  int width = 0;
  int height = 0;
  int fullWidth = 0;
  int fullHeight = 0;
  bool unsupported = false;
  std::string error;
};

// Decodes to 8-bit RGB at the smallest of the scales 1, 1/2, 1/4, 1/8 whose shorter side is still at least
// `minShortSide` pixels (full size when even that is smaller).
void Decode(const uint8_t* data, size_t size, int minShortSide, Decoded& out) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = OnError;
  err.pub.emit_message = OnMessage;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    out.error = err.message;
    return;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xffff);
  jpeg_read_header(&cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && std::memcmp(m->data, "ICC_PROFILE", 11) == 0) out.unsupported = true;
    if (m->marker == JPEG_APP0 + 1 && ExifOrientation(m->data, m->data_length) != 1) out.unsupported = true;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) out.unsupported = true;
  if (out.unsupported) {
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  out.fullWidth = static_cast<int>(cinfo.image_width);
  out.fullHeight = static_cast<int>(cinfo.image_height);
  cinfo.out_color_space = JCS_RGB;
  const int shortSide = out.fullWidth < out.fullHeight ? out.fullWidth : out.fullHeight;
  int denom = 1;
  while (denom < 8 && (shortSide + 2 * denom - 1) / (2 * denom) >= minShortSide) denom *= 2;
  cinfo.scale_num = 1;
  cinfo.scale_denom = denom;
  // The defaults (accurate integer IDCT, fancy upsampling) are what libvips uses too.
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  const size_t stride = size_t(out.width) * 3;
  if (out.pixels.size() < stride * out.height) out.pixels.resize(stride * out.height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
}

// ---- Crop and resample, ported line for line from src/data/preprocess.ts (findDiscSquare) and
// src/data/resample.ts (resampleSquareArea), in the same floating-point order, so that both give the same bytes;
// test/data/jpeg-native.test.ts checks it. Doing this here keeps the whole of a photo's preprocessing on the thread
// pool: in JavaScript these two steps took four times as long as decoding.

struct Square {
  double x, y, side;
};

// Same as JS Math.round.
double RoundHalfUp(double v) { return std::floor(v + 0.5); }

// Per row and per column, the number of pixels (every `step`-th in both directions) whose brightest channel
// exceeds `level`: what separates the fundus from the black surround.
void CountBrightPixelsStrided(const uint8_t* raw, int width, int height, int step, int level, uint32_t* rowCount,
                              uint32_t* colCount) {
  for (int y = 0; y < height; y += step) {
    const uint8_t* p = raw + size_t(y) * width * 3;
    for (int x = 0; x < width; x += step, p += 3 * step) {
      const uint32_t bright = std::max(p[0], std::max(p[1], p[2])) > level;
      rowCount[y] += bright;
      colCount[x] += bright;
    }
  }
}

// The same for every pixel. With SSE2, 48 bytes (16 pixels) at a time: max(b[i], b[i+1], b[i+2]) > level at every
// byte position i, which at i = 3x is pixel x's test. The row's count sums the flags at pixel starts; each byte
// position keeps a 16-bit count of bright rows, and colCount[x] takes position 3x's at the end.
void CountBrightPixels(const uint8_t* raw, int width, int height, int level, uint32_t* rowCount, uint32_t* colCount) {
  const size_t line = size_t(width) * 3;
  size_t vecEnd = 0;
#if defined(__SSE2__)
  vecEnd = line >= 50 ? ((line - 50) / 48 + 1) * 48 : 0;  // the last block's third load ends at byte vecEnd + 1
  thread_local std::vector<uint16_t> brightRows;
  brightRows.assign(vecEnd, 0);
  const __m128i above = _mm_set1_epi8(char(level + 1));
  const __m128i zero = _mm_setzero_si128();
  // 1 at the bytes where a pixel starts, for blocks that begin 0, 16 and 32 bytes into a 48-byte group.
  const __m128i starts[3] = {_mm_setr_epi8(1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1),
                             _mm_setr_epi8(0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0),
                             _mm_setr_epi8(0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0)};
  auto flush = [&]() {
    for (size_t x = 0; x < vecEnd / 3; x++) colCount[x] += brightRows[3 * x];
    std::fill(brightRows.begin(), brightRows.end(), 0);
  };
#endif
  for (int y = 0; y < height; y++) {
    const uint8_t* p = raw + size_t(y) * line;
    uint32_t count = 0;
#if defined(__SSE2__)
    __m128i sums = zero;
    for (size_t i = 0; i < vecEnd; i += 48) {
      for (int b = 0; b < 3; b++) {
        const uint8_t* q = p + i + 16 * b;
        const __m128i m = _mm_max_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)),
                                       _mm_max_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 1)),
                                                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2))));
        const __m128i bright = _mm_cmpeq_epi8(_mm_max_epu8(m, above), m);  // m >= level + 1, as 0xff
        sums = _mm_add_epi64(sums, _mm_sad_epu8(_mm_and_si128(bright, starts[b]), zero));
        __m128i* acc = reinterpret_cast<__m128i*>(brightRows.data() + i + 16 * b);
        _mm_storeu_si128(acc, _mm_sub_epi16(_mm_loadu_si128(acc), _mm_unpacklo_epi8(bright, bright)));  // -(-1)
        _mm_storeu_si128(acc + 1, _mm_sub_epi16(_mm_loadu_si128(acc + 1), _mm_unpackhi_epi8(bright, bright)));
      }
    }
    count = uint32_t(_mm_cvtsi128_si32(sums) + _mm_cvtsi128_si32(_mm_unpackhi_epi64(sums, sums)));
    if ((y + 1) % 65535 == 0) flush();
#endif
    for (size_t i = vecEnd; i < line; i += 3) {
      const uint32_t bright = std::max(p[i], std::max(p[i + 1], p[i + 2])) > level;
      count += bright;
      colCount[i / 3] += bright;
    }
    rowCount[y] = count;
  }
#if defined(__SSE2__)
  flush();
#endif
}

Square FindDiscSquare(const uint8_t* raw, int width, int height) {
  const int kBorderLevel = 18;
  const double kLineFraction = 0.02;
  std::vector<uint32_t> rowCount(height), colCount(width);
  const int step = double(width) * height > 1000000 ? 2 : 1;
  if (step == 1) {
    CountBrightPixels(raw, width, height, kBorderLevel, rowCount.data(), colCount.data());
  } else {
    CountBrightPixelsStrided(raw, width, height, step, kBorderLevel, rowCount.data(), colCount.data());
  }
  auto span = [&](const std::vector<uint32_t>& counts, int n, int lineLen, int& lo, int& hi) {
    const double min = std::max(1.0, (kLineFraction * lineLen) / step);
    int a = 0;
    while (a < n && counts[a] < min) a++;
    int b = n - 1;
    while (b > a && counts[b] < min) b--;
    lo = a;
    hi = b + step;
    return a < b;
  };
  auto whole = [&]() {
    const int side = std::max(width, height);
    return Square{std::floor((width - side) / 2.0), std::floor((height - side) / 2.0), double(side)};
  };
  int y0, y1, x0, x1;
  if (!span(rowCount, height, width, y0, y1) || !span(colCount, width, height, x0, x1)) return whole();
  const int w = std::min(x1, width) - x0;
  const int h = std::min(y1, height) - y0;
  if (std::max(w, h) < 0.25 * std::min(width, height)) return whole();
  const int side = std::max(w, h);
  return Square{RoundHalfUp(x0 + (w - side) / 2.0), RoundHalfUp(y0 + (h - side) / 2.0), double(side)};
}

struct Footprints {
  std::vector<int32_t> start, index;
  std::vector<float> weight;
  int lo = 0, hi = 0;
};

Footprints MakeFootprints(double origin, double s, int size, int limit) {
  Footprints f;
  f.start.resize(size + 1);
  long lo = LONG_MAX, hi = LONG_MIN;
  for (int u = 0; u < size; u++) {
    f.start[u] = int32_t(f.index.size());
    const double a = origin + u * s;
    const double b = a + s;
    const long first = std::max(0L, long(std::floor(a)));
    const long last = std::min(long(limit), long(std::ceil(b)));
    for (long p = first; p < last; p++) {
      const double overlap = std::min(b, double(p + 1)) - std::max(a, double(p));
      if (overlap <= 0) continue;
      f.index.push_back(int32_t(p));
      f.weight.push_back(float(overlap / s));
      if (p < lo) lo = p;
      if (p + 1 > hi) hi = p + 1;
    }
  }
  f.start[size] = int32_t(f.index.size());
  if (lo == LONG_MAX) lo = hi = 0;
  f.lo = int(lo);
  f.hi = int(hi);
  return f;
}

// The horizontal taps in a fixed-width layout: output u reads the `taps` pixels from first[u] on, with weights
// weight[u * taps ...], zero where its footprint is shorter. A zero weight adds exactly 0.0 to a sum that is never
// negative, so the sums are bit for bit those of the JavaScript's walk over each footprint, while a fixed trip count
// over contiguous pixels lets two channels share one SSE2 register.
struct DenseTaps {
  int taps = 0;
  int lo = 0, hi = 0;  // the pixels the taps read, zero weights included
  std::vector<int32_t> first;
  std::vector<double> weight;  // the float weights, widened once instead of at every tap
};

// Every footprint lies in [0, limit), so taps <= limit; at least one tap (all zero weights when the window misses
// the image), so that every output is written.
DenseTaps MakeDenseTaps(const Footprints& f, int size, int limit) {
  DenseTaps d;
  int taps = 1;
  for (int u = 0; u < size; u++) {
    if (f.start[u + 1] > f.start[u]) taps = std::max(taps, f.index[f.start[u + 1] - 1] - f.index[f.start[u]] + 1);
  }
  d.taps = taps;
  d.first.assign(size, 0);
  d.weight.assign(size_t(size) * taps, 0.0);
  d.lo = limit;
  d.hi = 0;
  for (int u = 0; u < size; u++) {
    // Near the right edge, start early rather than read past the row; the extra taps in front weigh zero.
    const int first = f.start[u + 1] == f.start[u] ? 0 : std::min(f.index[f.start[u]], limit - taps);
    d.first[u] = first;
    d.lo = std::min(d.lo, first);
    d.hi = std::max(d.hi, first + taps);
    for (int k = f.start[u]; k < f.start[u + 1]; k++) d.weight[size_t(u) * taps + (f.index[k] - first)] = f.weight[k];
  }
  return d;
}

template <int kTaps>
void HorizontalRow(const double* row, const DenseTaps& d, int size, float* out) {
  const int taps = kTaps > 0 ? kTaps : d.taps;
  const int32_t* first = d.first.data();
  const double* weight = d.weight.data();
  for (int u = 0; u < size; u++) {
    const double* q = row + size_t(first[u]) * 3;
    const double* w = weight + size_t(u) * taps;
#if defined(__SSE2__)
    __m128d s01 = _mm_setzero_pd();
    __m128d s2 = _mm_setzero_pd();
    for (int t = 0; t < taps; t++) {
      const __m128d wt = _mm_set1_pd(w[t]);
      s01 = _mm_add_pd(s01, _mm_mul_pd(wt, _mm_loadu_pd(q + 3 * t)));
      s2 = _mm_add_sd(s2, _mm_mul_sd(wt, _mm_load_sd(q + 3 * t + 2)));
    }
    const __m128 f01 = _mm_cvtpd_ps(s01);
    _mm_storel_pi(reinterpret_cast<__m64*>(out + 3 * u), f01);
    out[3 * u + 2] = _mm_cvtss_f32(_mm_cvtsd_ss(_mm_setzero_ps(), s2));
#else
    double s0 = 0, s1 = 0, s2 = 0;
    for (int t = 0; t < taps; t++) {
      s0 += w[t] * q[3 * t];
      s1 += w[t] * q[3 * t + 1];
      s2 += w[t] * q[3 * t + 2];
    }
    out[3 * u] = float(s0);
    out[3 * u + 1] = float(s1);
    out[3 * u + 2] = float(s2);
#endif
  }
}

std::vector<uint8_t> ResampleSquareArea(const uint8_t* src, int width, int height, Square window, int size) {
  const int channels = 3;
  const double s = window.side / size;
  const Footprints cols = MakeFootprints(window.x, s, size, width);
  const Footprints rows = MakeFootprints(window.y, s, size, height);
  const int rowLo = rows.lo;
  const int rowCount = rows.hi - rowLo;
  const size_t line = size_t(size) * channels;
  // Scratch kept per thread (see DecodeWorker::Execute); every element read is written first.
  thread_local std::vector<float> tmp;
  thread_local std::vector<double> row;
  tmp.resize(std::max(tmp.size(), size_t(std::max(0, rowCount)) * line));
  if (rowCount > 0) {
    const DenseTaps dense = MakeDenseTaps(cols, size, width);
    row.resize(std::max(row.size(), size_t(width) * channels));
    const size_t from = size_t(dense.lo) * channels, to = size_t(dense.hi) * channels;
    auto pass = [&](auto kernel) {
      for (int r = 0; r < rowCount; r++) {
        const uint8_t* srcRow = src + size_t(rowLo + r) * width * channels;
        for (size_t i = from; i < to; i++) row[i] = srcRow[i];
        kernel(row.data(), dense, size, tmp.data() + size_t(r) * line);
      }
    };
    switch (dense.taps) {  // the usual tap counts with a fixed trip count
      case 2: pass(HorizontalRow<2>); break;
      case 3: pass(HorizontalRow<3>); break;
      case 4: pass(HorizontalRow<4>); break;
      default: pass(HorizontalRow<0>); break;
    }
  }
  std::vector<uint8_t> out(line * size);
  std::vector<float> accBuf(line, 0.0f);
  float* __restrict acc = accBuf.data();
  for (int v = 0; v < size; v++) {
    for (int k = rows.start[v]; k < rows.start[v + 1]; k++) {
      const double w = rows.weight[k];
      const float* __restrict from = tmp.data() + size_t(rows.index[k] - rowLo) * line;
      for (size_t i = 0; i < line; i++) acc[i] = float(double(acc[i]) + w * double(from[i]));
    }
    uint8_t* dst = out.data() + size_t(v) * line;
    // Math.round without floor(): the sums are never negative, so truncating v + 0.5 rounds half up exactly, and
    // unlike std::floor (a libm call on baseline x86-64, which was most of the time of a 224 px resample) it
    // vectorises. A negative sum would truncate towards zero instead, and clamp to 0 all the same.
    for (size_t i = 0; i < line; i++) {
      const int32_t val = int32_t(double(acc[i]) + 0.5);
      dst[i] = uint8_t(val < 0 ? 0 : val > 255 ? 255 : val);
      acc[i] = 0;
    }
  }
  return out;
}

// What src/data/preprocess.ts's cropByArea does, from the decoded pixels on.
struct Prepared {
  std::vector<uint8_t> rgb;
  double x = 0, y = 0, side = 0;
};

void CropByArea(const Decoded& im, int size, bool crop, Prepared& out) {
  const double fx = double(im.fullWidth) / im.width;
  const double fy = double(im.fullHeight) / im.height;
  if (crop) {
    const Square g = FindDiscSquare(im.pixels.data(), im.width, im.height);
    out.x = RoundHalfUp(g.x * fx);
    out.y = RoundHalfUp(g.y * fy);
    out.side = RoundHalfUp(g.side * std::max(fx, fy));
  } else {
    const int side = std::max(im.fullWidth, im.fullHeight);
    out.x = std::floor((im.fullWidth - side) / 2.0);
    out.y = std::floor((im.fullHeight - side) / 2.0);
    out.side = side;
  }
  out.rgb = ResampleSquareArea(im.pixels.data(), im.width, im.height, Square{out.x / fx, out.y / fy, out.side / fx}, size);
}

bool ReadFile(const std::string& path, std::vector<uint8_t>& out, std::string& error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = std::string("cannot read the image: ") + std::strerror(errno);
    return false;
  }
  uint8_t chunk[65536];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) out.insert(out.end(), chunk, chunk + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    error = "cannot read the image: read error";
    return false;
  }
  return true;
}

// Decoding beside inference: the thread-pool threads that decode can run at a lower priority (a higher nice value)
// than the engine's threads, so that a parallel kernel never waits for a thread that a decoder preempted; decoding
// then fills the time the engine leaves idle. Set by setDecodeNice(); each thread applies it at its next job. Linux
// only: elsewhere setpriority() on a thread id would renice the whole process.
std::atomic<int> gDecodeNice{0};

void ApplyDecodeNice() {
#if defined(__linux__)
  thread_local int applied = 0;
  const int wanted = gDecodeNice.load(std::memory_order_relaxed);
  if (wanted == applied) return;
  // Going back down to 0 needs a privilege most processes lack: one try per thread, then leave it.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), wanted);
  applied = wanted;
#endif
}

class DecodeWorker : public Napi::AsyncWorker {
 public:
  // size 0: decode only; size > 0: decode, crop and resample to size x size (cropping to the disc when crop).
  DecodeWorker(Napi::Env env, Napi::Uint8Array input, int minShortSide, int size = 0, bool crop = false)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), minShortSide_(minShortSide), size_out_(size), crop_(crop) {
    // The JS buffer may be collected or reused while we decode on the thread pool: keep a reference to it.
    input_ = Napi::Persistent(input);
    data_ = input.Data();
    size_ = input.ByteLength();
  }

  // Reads the file itself on the thread pool: one hop instead of the four of fs.readFile (open, stat, read, close).
  DecodeWorker(Napi::Env env, std::string path, int minShortSide, int size, bool crop)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), minShortSide_(minShortSide), size_out_(size), crop_(crop) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    ApplyDecodeNice();
    if (!path_.empty()) {
      if (!ReadFile(path_, file_, out_.error)) return;
      data_ = file_.data();
      size_ = file_.size();
      // Not a JPEG: the caller decodes it with sharp.
      if (size_ < 3 || data_[0] != 0xff || data_[1] != 0xd8 || data_[2] != 0xff) {
        out_.unsupported = true;
        return;
      }
    }
    // The decoded photo is scratch when it is cropped and resampled here: each thread-pool thread keeps one buffer
    // for it rather than have a fresh one mapped and zeroed for every photo (a sixth of the time at 224 px).
    thread_local std::vector<uint8_t> decodeScratch;
    const bool scratch = size_out_ > 0;
    if (scratch) out_.pixels.swap(decodeScratch);
    Decode(data_, size_, minShortSide_, out_);
    if (!scratch) return;
    const bool decoded = out_.error.empty() && !out_.unsupported;
    if (decoded) CropByArea(out_, size_out_, crop_, prepared_);
    out_.pixels.swap(decodeScratch);
    if (!decoded) return;
    out_.pixels = std::move(prepared_.rgb);
    if (!norm_.scale.empty()) Normalize();
  }

  // Optional last step: the network's input as float32, for 1 (green) or 3 channels. Same arithmetic as
  // normalizeBytes in src/data/preprocess.ts (v * scale - shift in double, rounded once to float32).
  struct Normalization {
    std::vector<double> scale, shift;  // per output channel
  };
  void SetNormalization(Normalization n) { norm_ = std::move(n); }

  void Normalize() {
    const size_t n = size_t(size_out_) * size_out_;
    const size_t channels = norm_.scale.size();
    std::vector<float> lut(channels * 256);
    for (size_t c = 0; c < channels; c++)
      for (int v = 0; v < 256; v++) lut[c * 256 + v] = float(v * norm_.scale[c] - norm_.shift[c]);
    floats_.resize(n * channels);
    const uint8_t* rgb = out_.pixels.data();
    if (channels == 3) {
      for (size_t i = 0; i < 3 * n; i += 3) {
        floats_[i] = lut[rgb[i]];
        floats_[i + 1] = lut[256 + rgb[i + 1]];
        floats_[i + 2] = lut[512 + rgb[i + 2]];
      }
    } else {
      for (size_t i = 0; i < n; i++) floats_[i] = lut[rgb[3 * i + 1]];  // green
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    input_.Reset();
    if (!out_.error.empty()) {
      deferred_.Reject(Napi::Error::New(env, out_.error).Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    if (out_.unsupported) {
      result.Set("unsupported", true);
      deferred_.Resolve(result);
      return;
    }
    if (!floats_.empty()) {
      auto* values = new std::vector<float>(std::move(floats_));
      auto buffer = Napi::ArrayBuffer::New(env, values->data(), values->size() * sizeof(float),
                                           [](Napi::Env, void*, std::vector<float>* v) { delete v; }, values);
      result.Set("data", Napi::Float32Array::New(env, values->size(), buffer, 0));
    } else {
      auto* pixels = new std::vector<uint8_t>(std::move(out_.pixels));
      auto buffer = Napi::ArrayBuffer::New(env, pixels->data(), pixels->size(),
                                           [](Napi::Env, void*, std::vector<uint8_t>* v) { delete v; }, pixels);
      result.Set("data", Napi::Uint8Array::New(env, buffer.ByteLength(), buffer, 0));
    }
    if (size_out_ > 0) {
      Napi::Object g = Napi::Object::New(env);
      g.Set("width", out_.fullWidth);
      g.Set("height", out_.fullHeight);
      g.Set("x", prepared_.x);
      g.Set("y", prepared_.y);
      g.Set("side", prepared_.side);
      result.Set("geometry", g);
    } else {
      result.Set("width", out_.width);
      result.Set("height", out_.height);
      result.Set("fullWidth", out_.fullWidth);
      result.Set("fullHeight", out_.fullHeight);
    }
    deferred_.Resolve(result);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> input_;
  std::string path_;
  std::vector<uint8_t> file_;
  Normalization norm_;
  std::vector<float> floats_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int minShortSide_;
  int size_out_;
  bool crop_;
  Decoded out_;
  Prepared prepared_;
};

// decodeJpeg(bytes: Uint8Array, minShortSide: number):
//   Promise<{ data, width, height, fullWidth, fullHeight } | { unsupported: true }>
Napi::Value DecodeJpeg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "decodeJpeg(bytes: Uint8Array, minShortSide: number)");
  }
  auto input = info[0].As<Napi::Uint8Array>();
  int minShortSide = info[1].As<Napi::Number>().Int32Value();
  auto* worker = new DecodeWorker(env, input, minShortSide);
  worker->Queue();
  return worker->Promise();
}

// preprocessJpeg(bytesOrPath: Uint8Array | string, minShortSide: number, size: number, crop: boolean, norm?):
//   Promise<{ data /* size*size*3 RGB bytes, or float32 with norm */, geometry: CropGeometry } | { unsupported: true }>
Napi::Value PreprocessJpeg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !(info[0].IsTypedArray() || info[0].IsString()) || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsBoolean()) {
    throw Napi::TypeError::New(env, "preprocessJpeg(bytesOrPath: Uint8Array | string, minShortSide: number, size: number, crop: boolean)");
  }
  const int size = info[2].As<Napi::Number>().Int32Value();
  if (size < 1 || size > 8192) throw Napi::RangeError::New(env, "size out of range");
  const int minShortSide = info[1].As<Napi::Number>().Int32Value();
  const bool crop = info[3].As<Napi::Boolean>().Value();
  auto* worker = info[0].IsString() ? new DecodeWorker(env, info[0].As<Napi::String>().Utf8Value(), minShortSide, size, crop)
                                    : new DecodeWorker(env, info[0].As<Napi::Uint8Array>(), minShortSide, size, crop);
  // Optional 5th argument { scale: number[], shift: number[] } (1 entry: green; 3: RGB): float32 network input.
  if (info.Length() >= 5 && info[4].IsObject()) {
    Napi::Object o = info[4].As<Napi::Object>();
    DecodeWorker::Normalization norm;
    Napi::Array scale = o.Get("scale").As<Napi::Array>();
    Napi::Array shift = o.Get("shift").As<Napi::Array>();
    if (scale.Length() != shift.Length() || (scale.Length() != 1 && scale.Length() != 3)) {
      delete worker;
      throw Napi::TypeError::New(env, "normalization needs 1 or 3 scale and shift values");
    }
    for (uint32_t c = 0; c < scale.Length(); c++) {
      norm.scale.push_back(scale.Get(c).As<Napi::Number>().DoubleValue());
      norm.shift.push_back(shift.Get(c).As<Napi::Number>().DoubleValue());
    }
    worker->SetNormalization(std::move(norm));
  }
  worker->Queue();
  return worker->Promise();
}

// setDecodeNice(nice: number): the nice value (0..19) of the threads that run later decode jobs; returns it.
Napi::Value SetDecodeNice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setDecodeNice(nice: number)");
  const int nice = std::clamp(info[0].As<Napi::Number>().Int32Value(), 0, 19);
  gDecodeNice.store(nice, std::memory_order_relaxed);
  return Napi::Number::New(env, nice);
}

}  // namespace

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setDecodeNice", Napi::Function::New(env, SetDecodeNice));
  exports.Set("decodeJpeg", Napi::Function::New(env, DecodeJpeg));
  exports.Set("preprocessJpeg", Napi::Function::New(env, PreprocessJpeg));
  return exports;
}

NODE_API_MODULE(fundus_jpeg, Init)
