#include "dseek/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "dseek/core/error.h"

namespace dseek {

namespace {

using json = nlohmann::json;

// The Rust reference implementation refuses headers above 100 MB; a larger length is far more
// likely a corrupt or non-safetensors file than a real header, and would make us parse garbage.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kDataAlign = 64;  // the data section and the tensors sized in whole cache lines

// A name as it appears in messages: JSON-quoted, so control characters and quotes stay visible.
std::string json_quoted(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string at_byte(size_t offset) { return " (header byte " + std::to_string(offset) + ")"; }

// Where the key `name` sits in the header text, for error messages only (nlohmann's DOM keeps no
// positions). Finds the JSON-quoted key followed by ':'; npos when it was written with other
// escapes than nlohmann's, in which case the message simply has no offset.
size_t find_key(std::string_view header, std::string_view name, size_t from = 0) {
  const std::string key = json_quoted(name);
  for (size_t pos = header.find(key, from); pos != std::string_view::npos; pos = header.find(key, pos + 1)) {
    size_t q = pos + key.size();
    while (q < header.size() && (header[q] == ' ' || header[q] == '\t' || header[q] == '\n' || header[q] == '\r')) ++q;
    if (q < header.size() && header[q] == ':') return pos;
  }
  return std::string_view::npos;
}

std::string key_position(std::string_view header, std::string_view name) {
  const size_t pos = find_key(header, name);
  return pos == std::string_view::npos ? "" : at_byte(pos);
}

// Returns the offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or npos.
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = uint8_t(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // > U+10FFFF
    } else {
      return i;
    }
    if (s.size() - i < len) return i;
    const auto c1 = uint8_t(s[i + 1]);
    if (c1 < lo || c1 > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((uint8_t(s[i + k]) & 0xc0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

// nlohmann::json keeps the last of duplicate keys silently; a checkpoint with two entries of the
// same name is ambiguous, so the parser callback tracks the keys of every open object.
json parse_json_no_duplicates(std::string_view text, const std::string& label) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  int duplicate_depth = 0;
  auto cb = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (duplicate.empty() && !open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = parsed.get<std::string>();
          duplicate_depth = depth;
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb);
  } catch (const json::parse_error& e) {
    throw Error(label + ": header is not valid JSON" + at_byte(e.byte > 0 ? e.byte - 1 : 0) + ": " + e.what());
  } catch (const json::exception& e) {  // e.g. out_of_range 406 for a number like 1e999
    throw Error(label + ": header is not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) {
    // Point at the second occurrence, the one nlohmann would have kept silently.
    const size_t first = find_key(text, duplicate);
    const size_t second = first == std::string_view::npos ? first : find_key(text, duplicate, first + 1);
    const std::string pos = second == std::string_view::npos ? "" : at_byte(second);
    if (duplicate_depth == 1)
      throw Error(label + ": duplicate tensor name " + json_quoted(duplicate) + pos);
    throw Error(label + ": duplicate key " + json_quoted(duplicate) + " in header" + pos);
  }
  return j;
}

// One header entry -> TensorInfo with `begin` still relative to the data section.
TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size, std::string_view header,
                       const std::string& label) {
  const std::string where = label + ": tensor " + json_quoted(name) + ": ";
  const std::string pos = key_position(header, name);
  if (!entry.is_object()) throw Error(where + "entry is not an object" + pos);

  TensorInfo t;
  t.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) throw Error(where + "missing \"dtype\"" + pos);
  if (!dtype_it->is_string()) throw Error(where + "\"dtype\" is not a string" + pos);
  const auto& dtype_name_str = dtype_it->get_ref<const std::string&>();
  auto dtype = dtype_from_name(dtype_name_str);
  if (!dtype) throw Error(where + "unknown dtype " + json_quoted(dtype_name_str) + pos);
  t.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) throw Error(where + "missing \"shape\"" + pos);
  if (!shape_it->is_array()) throw Error(where + "\"shape\" is not an array" + pos);
  int64_t numel = 1;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const json& d = (*shape_it)[i];
    const std::string dim = "shape[" + std::to_string(i) + "]";
    if (d.is_number_integer() && !d.is_number_unsigned()) throw Error(where + dim + " is negative" + pos);
    if (!d.is_number_unsigned()) throw Error(where + dim + " is not a non-negative integer" + pos);
    const uint64_t v = d.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max()))
      throw Error(where + dim + " = " + std::to_string(v) + " overflows int64" + pos);
    t.shape.push_back(int64_t(v));
    if (__builtin_mul_overflow(numel, int64_t(v), &numel))
      throw Error(where + "element count of shape overflows int64" + pos);
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(uint64_t(numel), uint64_t(dtype_size(t.dtype)), &nbytes))
    throw Error(where + "byte size of shape overflows uint64" + pos);

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) throw Error(where + "missing \"data_offsets\"" + pos);
  if (!off_it->is_array() || off_it->size() != 2)
    throw Error(where + "\"data_offsets\" is not an array of 2 integers" + pos);
  for (const json& o : *off_it) {
    if (o.is_number_integer() && !o.is_number_unsigned()) throw Error(where + "\"data_offsets\" has a negative value" + pos);
    if (!o.is_number_unsigned()) throw Error(where + "\"data_offsets\" is not an array of 2 integers" + pos);
  }
  const uint64_t b = (*off_it)[0].get<uint64_t>();
  const uint64_t e = (*off_it)[1].get<uint64_t>();
  const std::string offsets = "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]";
  if (e < b) throw Error(where + offsets + " are reversed" + pos);
  if (e > data_size)
    throw Error(where + offsets + " end past the data section (" + std::to_string(data_size) + " bytes)" + pos);
  if (e - b != nbytes)
    throw Error(where + offsets + " hold " + std::to_string(e - b) + " bytes but " +
                std::string(dtype_name(t.dtype)) + " " + shape_str(t.shape) + " needs " + std::to_string(nbytes) + pos);
  t.begin = b;
  t.nbytes = nbytes;
  return t;
}

// False with errno set on failure.
bool write_all(int fd, const void* data, size_t n) {
  auto p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    // Large single writes can be short (Linux caps one write at ~2 GiB).
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, const std::string& label) {
  if (file.size() < 8)
    throw Error(label + ": file is " + std::to_string(file.size()) + " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file[size_t(i)];
  if (header_len > kMaxHeaderBytes)
    throw Error(label + ": header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > file.size() - 8)
    throw Error(label + ": header length " + std::to_string(header_len) + " is larger than the file (" +
                std::to_string(file.size()) + " bytes)");

  const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), size_t(header_len));
  if (size_t bad = first_invalid_utf8(text); bad != std::string_view::npos)
    throw Error(label + ": header is not valid UTF-8" + at_byte(bad));
  // nlohmann's lexer stops at a NUL byte and would accept "{}\0<anything>"; JSON allows no raw
  // NUL anywhere (inside strings it must be escaped), so any NUL is an error.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw Error(label + ": header is not valid JSON" + at_byte(nul) + ": NUL byte");
  const json j = parse_json_no_duplicates(text, label);
  if (!j.is_object()) throw Error(label + ": header is not a JSON object");

  SafetensorsHeader h;
  h.data_begin = 8 + header_len;
  const uint64_t data_size = file.size() - h.data_begin;
  h.tensors.reserve(j.size());
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      const std::string pos = key_position(text, key);
      if (!value.is_object()) throw Error(label + ": \"__metadata__\" is not an object" + pos);
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw Error(label + ": \"__metadata__\" value of " + json_quoted(mk) + " is not a string" + key_position(text, mk));
        h.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(parse_entry(key, value, data_size, text, label));
  }

  // File order of the data; empty tensors (which occupy no bytes) are ordered by name among equals.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  // Gaps are tolerated (some writers align), overlaps are not: two tensors sharing bytes is either
  // corruption or an aliasing trick a zero-copy reader must not honour.
  const TensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const TensorInfo& t : h.tensors) {
    if (t.nbytes == 0) continue;
    if (last && t.begin < last->begin + last->nbytes)
      throw Error(label + ": tensor " + json_quoted(t.name) + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.begin + t.nbytes) + "] overlap tensor " + json_quoted(last->name) + " [" +
                  std::to_string(last->begin) + ", " + std::to_string(last->begin + last->nbytes) + "]" +
                  key_position(text, t.name));
    if (!last || t.begin + t.nbytes > last->begin + last->nbytes) last = &t;
  }
  for (TensorInfo& t : h.tensors) t.begin += h.data_begin;
  return h;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.map_ = MappedFile(path);
  f.header_ = parse_safetensors_header(f.map_.bytes(), path);
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.by_name_.emplace(f.header_.tensors[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  DSEEK_CHECK(t.begin <= map_.size() && t.nbytes <= map_.size() - t.begin,
              path() + ": tensor " + json_quoted(t.name) + " does not belong to this file");
  return map_.data() + t.begin;
}

TensorView SafetensorsFile::view(const TensorInfo& t) const { return TensorView{data(t), t.dtype, t.shape}; }

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Built by hand rather than through nlohmann::ordered_json, whose key lookup is linear: a full
  // DeepSeek-V3 shard set has ~90k tensors.
  std::string header = "{";
  auto dump_string = [&](const std::string& s, const std::string& what) {
    try {
      return json(s).dump(-1, ' ', false, json::error_handler_t::strict);
    } catch (const json::type_error&) {
      throw Error(path + ": " + what + " is not valid UTF-8");
    }
  };
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += dump_string(k, "metadata key") + ":" + dump_string(v, "metadata value of " + json_quoted(k));
    }
    header += "}";
  }

  // File order: tensors whose size is a multiple of kDataAlign first (every matrix of a real
  // checkpoint), then the rest by element size, largest first: with the data section kDataAlign-
  // aligned, every tensor of the first kind starts on a cache line (the kernels' rows then do not
  // straddle lines: ~15 % of decode on Zen 5), and no tensor needs a gap before it (the Rust
  // safetensors library refuses gaps).
  std::vector<size_t> order(tensors.size());
  std::vector<int> rank(tensors.size());  // 0: whole lines; else 16 - element size
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
    const TensorToWrite& t = tensors[i];
    const uint64_t elem = t.dtype < DType::kSentinel ? dtype_size(t.dtype) : 0;
    uint64_t n = elem;
    for (int64_t d : t.shape) n *= uint64_t(std::max<int64_t>(d, 0));  // overflow is refused below
    rank[i] = elem > 0 && n % kDataAlign != 0 ? 16 - int(elem) : 0;
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rank[a] < rank[b]; });

  std::set<std::string_view> seen;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // (begin, nbytes) within the data section, file order
  uint64_t offset = 0;
  for (const size_t ti : order) {
    const TensorToWrite& t = tensors[ti];
    const std::string where = path + ": tensor " + json_quoted(t.name) + ": ";
    if (t.name == "__metadata__") throw Error(where + "name is reserved");
    if (!seen.insert(t.name).second) throw Error(where + "duplicate tensor name");
    if (t.dtype >= DType::kSentinel) throw Error(where + "invalid dtype " + std::to_string(int(t.dtype)));
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) throw Error(where + "negative dimension in shape " + shape_str(t.shape));
      if (__builtin_mul_overflow(numel, uint64_t(d), &numel)) throw Error(where + "element count overflows");
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes) ||
        nbytes > uint64_t(std::numeric_limits<int64_t>::max()))
      throw Error(where + "byte size overflows");
    if (nbytes > 0 && t.data == nullptr) throw Error(where + "data is null");
    // Natural alignment for zero-copy reads; the order above makes this a no-op (no gaps).
    const uint64_t align = std::max<uint64_t>(1, dtype_size(t.dtype));
    offset = (offset + align - 1) / align * align;
    ranges.emplace_back(offset, nbytes);
    if (header.size() > 1) header += ",";
    header += dump_string(t.name, "tensor name") + ":{\"dtype\":\"" + std::string(dtype_name(t.dtype)) +
              "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  header += "}";
  // Padded with spaces (as HF pads to 8 bytes) so that the data section starts on a cache line.
  header.append((kDataAlign - (8 + header.size()) % kDataAlign) % kDataAlign, ' ');
  if (header.size() > kMaxHeaderBytes) throw Error(path + ": header would exceed the 100 MB limit");

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  auto fail = [&](const char* step) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": " + step + " " + tmp + " failed: " + std::strerror(err));
  };
  uint8_t len_le[8];
  for (int i = 0; i < 8; ++i) len_le[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  if (!write_all(fd, len_le, 8) || !write_all(fd, header.data(), header.size())) fail("writing");
  static constexpr uint8_t kZeros[8] = {};  // natural alignment: at most 7 bytes of padding
  uint64_t pos = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (!write_all(fd, kZeros, size_t(ranges[i].first - pos)) ||
        !write_all(fd, tensors[order[i]].data, size_t(ranges[i].second)))
      fail("writing");
    pos = ranges[i].first + ranges[i].second;
  }
  if (::fsync(fd) != 0) fail("fsync of");
  // The page cache now holds the file in the small folios write() made; an mmap of it soon after
  // (dseek quantize, then run) would map 4 KiB pages and decode ~1.3x slower. Dropping the clean
  // pages lets the next load read the file in again as 2 MiB folios (MappedFile's MADV_HUGEPAGE).
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const int rc = ::close(fd);
  fd = -1;
  if (rc != 0) fail("closing");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming");
  // Make the rename itself durable; failure here leaves a complete file, so it is not an error.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace dseek
