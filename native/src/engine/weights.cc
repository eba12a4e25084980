#include "engine/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/dequant.h"
#include "engine/errors.h"
#include "engine/half.h"

namespace pagoda {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw EngineError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw EngineError(path + ": cannot stat: " + std::strerror(errno));
    }
    size_ = st.st_size;
    if (size_ > 0) {
      data_ = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, fd, 0);
      if (data_ == MAP_FAILED) {
        ::close(fd);
        throw EngineError(path + ": cannot map: " + std::strerror(errno));
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, static_cast<size_t>(size_));
  }
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  int64_t size() const { return size_; }

 private:
  std::string path_;
  void* data_ = nullptr;
  int64_t size_ = 0;
};

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

WeightStore::WeightStore(std::vector<TensorEntry> entries) {
  for (auto& e : entries) {
    auto it = files_.find(e.file);
    if (it == files_.end()) it = files_.emplace(e.file, std::make_unique<MappedFile>(e.file)).first;
    const MappedFile& f = *it->second;
    int64_t n = numel(e.shape);
    BlockLayout bl = block_layout(e.dtype);
    int64_t inner = e.shape.empty() ? 1 : e.shape.back();
    if (inner % bl.elems != 0)
      throw EngineError(e.file + ": tensor " + e.name + " has row length " + std::to_string(inner) +
                        ", not a multiple of the " + dtype_name(e.dtype) + " block size " +
                        std::to_string(bl.elems));
    if (bytes_for(e.dtype, n) != e.nbytes)
      throw EngineError(e.file + ": tensor " + e.name + " should hold " + std::to_string(bytes_for(e.dtype, n)) +
                        " bytes for shape " + shape_str(e.shape) + " but the file says " + std::to_string(e.nbytes));
    if (e.offset < 0 || e.offset + e.nbytes > f.size())
      throw EngineError(e.file + ": truncated: tensor " + e.name + " ends at byte " +
                        std::to_string(e.offset + e.nbytes) + " but the file has " + std::to_string(f.size()));
    std::string name = e.name;
    entries_.emplace(name, std::move(e));
  }
}

WeightStore::~WeightStore() = default;

bool WeightStore::has(const std::string& name) const { return entries_.count(name) != 0; }

const TensorEntry& WeightStore::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw EngineError("model weights have no tensor " + name);
  return it->second;
}

std::vector<float> WeightStore::read_f32(const std::string& name) const {
  const TensorEntry& e = entry(name);
  const MappedFile& f = *files_.at(e.file);
  int64_t n = numel(e.shape);
  std::vector<float> out(static_cast<size_t>(n));
  decode_to_f32(e.dtype, f.data() + e.offset, n, out.data());
  if (e.rope_unpermute_heads > 0) {
    // File row (h, i, j) with i < head_dim/2, j < 2 holds HF row (h, j, i).
    int64_t rows = e.shape[0], cols = n / rows, heads = e.rope_unpermute_heads;
    int64_t hd = rows / heads, half = hd / 2;
    std::vector<float> src(out);
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < half; i++)
        for (int64_t j = 0; j < 2; j++) {
          const float* s = src.data() + (h * hd + i * 2 + j) * cols;
          float* d = out.data() + (h * hd + j * half + i) * cols;
          std::memcpy(d, s, static_cast<size_t>(cols) * 4);
        }
  }
  return out;
}

const TensorEntry& WeightStore::entry(const std::string& name, const std::vector<int64_t>& expect) const {
  const TensorEntry& e = entry(name);
  if (e.shape != expect)
    throw EngineError(e.file + ": tensor " + name + " has shape " + shape_str(e.shape) + ", expected " +
                      shape_str(expect));
  return e;
}

std::vector<float> WeightStore::read_f32(const std::string& name, const std::vector<int64_t>& expect) const {
  entry(name, expect);
  return read_f32(name);
}

std::vector<uint16_t> WeightStore::read_bf16(const std::string& name, const std::vector<int64_t>& expect, int64_t r0, int64_t nr,
                                             int64_t c0, int64_t nc) const {
  const TensorEntry& e = entry(name, expect);
  if (expect.size() != 2 || r0 < 0 || nr < 0 || r0 + nr > expect[0] || c0 < 0 || nc < 0 || c0 + nc > expect[1])
    throw EngineError("read_bf16: slice outside tensor " + name + " of shape " + shape_str(expect));
  const int64_t k = expect[1];
  std::vector<uint16_t> out(static_cast<size_t>(nr * nc));
  if (e.dtype == DType::BF16 && e.rope_unpermute_heads == 0) {
    const uint8_t* src = files_.at(e.file)->data() + e.offset;
    for (int64_t i = 0; i < nr; i++)
      std::memcpy(out.data() + i * nc, src + ((r0 + i) * k + c0) * 2, static_cast<size_t>(nc) * 2);
    return out;
  }
  const std::vector<float> full = read_f32(name);
  for (int64_t i = 0; i < nr; i++)
    for (int64_t j = 0; j < nc; j++) out[i * nc + j] = float_to_bf16(full[(r0 + i) * k + c0 + j]);
  return out;
}

}  // namespace pagoda
