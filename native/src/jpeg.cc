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
#include <climits>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <jpeglib.h>

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
  out.pixels.resize(stride * out.height);
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

Square FindDiscSquare(const uint8_t* raw, int width, int height) {
  const int channels = 3;
  const int kBorderLevel = 18;
  const double kLineFraction = 0.02;
  std::vector<uint32_t> rowCount(height), colCount(width);
  const int step = double(width) * height > 1000000 ? 2 : 1;
  for (int y = 0; y < height; y += step) {
    const uint8_t* p = raw + size_t(y) * width * channels;
    for (int x = 0; x < width; x += step, p += channels * step) {
      uint8_t v = p[0];
      if (p[1] > v) v = p[1];
      if (p[2] > v) v = p[2];
      if (v > kBorderLevel) {
        rowCount[y]++;
        colCount[x]++;
      }
    }
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

std::vector<uint8_t> ResampleSquareArea(const uint8_t* src, int width, int height, Square window, int size) {
  const int channels = 3;
  const double s = window.side / size;
  const Footprints cols = MakeFootprints(window.x, s, size, width);
  const Footprints rows = MakeFootprints(window.y, s, size, height);
  const int rowLo = rows.lo;
  const int rowCount = rows.hi - rowLo;
  const size_t line = size_t(size) * channels;
  std::vector<float> tmp(size_t(std::max(0, rowCount)) * line);
  // Each channel's sum runs over the taps in the same order as the JavaScript, so the floats come out the same;
  // the three channels share one walk over the taps, and the vertical pass is a plain vectorisable loop.
  const int32_t* colStart = cols.start.data();
  const int32_t* colIndex = cols.index.data();
  const float* colWeight = cols.weight.data();
  for (int r = 0; r < rowCount; r++) {
    const uint8_t* srcRow = src + size_t(rowLo + r) * width * channels;
    float* dstRow = tmp.data() + size_t(r) * line;
    for (int u = 0; u < size; u++) {
      double s0 = 0, s1 = 0, s2 = 0;
      for (int k = colStart[u]; k < colStart[u + 1]; k++) {
        const double w = colWeight[k];
        const uint8_t* p = srcRow + size_t(colIndex[k]) * channels;
        s0 += w * p[0];
        s1 += w * p[1];
        s2 += w * p[2];
      }
      dstRow[u * channels] = float(s0);
      dstRow[u * channels + 1] = float(s1);
      dstRow[u * channels + 2] = float(s2);
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
    for (size_t i = 0; i < line; i++) {
      const double val = RoundHalfUp(acc[i]);
      dst[i] = val < 0 ? 0 : val > 255 ? 255 : uint8_t(val);
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
    Decode(data_, size_, minShortSide_, out_);
    if (size_out_ > 0 && out_.error.empty() && !out_.unsupported) {
      CropByArea(out_, size_out_, crop_, prepared_);
      out_.pixels = std::move(prepared_.rgb);
      if (!norm_.scale.empty()) Normalize();
    }
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

}  // namespace

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeJpeg", Napi::Function::New(env, DecodeJpeg));
  exports.Set("preprocessJpeg", Napi::Function::New(env, PreprocessJpeg));
  return exports;
}

NODE_API_MODULE(fundus_jpeg, Init)
