#include "dseek/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "dseek/core/error.h"

namespace dseek {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(path + ": mmap failed: " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
#ifdef MADV_HUGEPAGE
    // Weights are streamed at every decode step: pages read in through this mapping then come as
    // 2 MiB folios where the file system supports it (ext4, XFS on recent kernels), mapped by one
    // TLB entry each. Advisory: ignored where unsupported.
    (void)::madvise(p, size_, MADV_HUGEPAGE);
#endif
  }
  ::close(fd);
}

MappedFile::~MappedFile() { reset(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void MappedFile::reset() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  // One read of the file's size (a 7.8 MB tokenizer.json took ~60 ms through a stringstream),
  // then whatever else is there: all of it for a stream that cannot seek (a pipe), the rest of a
  // file that grew.
  std::string text;
  if (in.seekg(0, std::ios::end)) {
    const std::streamoff size = in.tellg();  // 0 for files like /proc's that hold text anyway
    if (in.seekg(0, std::ios::beg) && size > 0) {
      text.resize(size_t(size));
      in.read(text.data(), size);
      text.resize(size_t(in.gcount()));
    }
  }
  if (in.bad()) throw Error(path + ": read error");
  in.clear();
  std::ostringstream rest;
  rest << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  if (rest.tellp() > 0) text += rest.str();
  return text;
}

}  // namespace dseek
