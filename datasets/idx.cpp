// IDX reading (torch-free): whole-file reads, transparent gunzip, strict header checks.
#include "datasets/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace arceus {

namespace {

namespace fs = std::filesystem;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string hex8(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v);
  return buf;
}

const char* idx_type_name(uint8_t t) {
  switch (t) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown type";
  }
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string dims_string(const std::vector<uint32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += "x";
    s += std::to_string(dims[i]);
  }
  return s;
}

std::vector<uint8_t> read_raw(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError("[data] file " + quoted(path) + " does not exist");
  if (fs::is_directory(path, ec))
    throw DataError("[data] " + quoted(path) + " is a directory, not a data file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("[data] cannot open " + quoted(path) + ": " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw DataError("[data] cannot determine the size of " + quoted(path));
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw DataError("[data] error reading " + quoted(path) + ": " + std::strerror(errno));
  return bytes;
}

bool is_gzip(const uint8_t* p, size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

// Inflates one or more concatenated gzip members (as `gzip -d` does).
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  auto corrupt = [&](const std::string& why) {
    return DataError("[data] " + quoted(path) + " is a truncated or corrupt gzip stream (zlib: " +
                     why + ")");
  };

  // Initial guess from the last member's ISIZE trailer (uncompressed size mod 2^32). It is
  // only a hint: a truncated file ends in arbitrary bytes, so it is capped at 16x the input
  // (MNIST-format files compress 2-5x); the loop below doubles the buffer as needed.
  size_t guess = in.size() * 4;
  if (in.size() >= 18) {
    const uint8_t* t = in.data() + in.size() - 4;
    const size_t isize =
        uint32_t(t[0]) | (uint32_t(t[1]) << 8) | (uint32_t(t[2]) << 16) | (uint32_t(t[3]) << 24);
    guess = std::max(guess, std::min(isize, in.size() * 16));
  }
  std::vector<uint8_t> out(std::max<size_t>(guess, 4096));

  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  int ret = inflateInit2(&zs, 16 + MAX_WBITS);
  if (ret != Z_OK) throw corrupt(zs.msg ? zs.msg : zError(ret));

  size_t in_pos = 0, out_pos = 0;
  try {
    for (;;) {
      if (out_pos == out.size()) out.resize(out.size() * 2);
      const size_t in_chunk = std::min<size_t>(in.size() - in_pos, UINT_MAX);
      const size_t out_chunk = std::min<size_t>(out.size() - out_pos, UINT_MAX);
      zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
      zs.avail_in = static_cast<uInt>(in_chunk);
      zs.next_out = out.data() + out_pos;
      zs.avail_out = static_cast<uInt>(out_chunk);

      ret = inflate(&zs, Z_NO_FLUSH);
      in_pos += in_chunk - zs.avail_in;
      out_pos += out_chunk - zs.avail_out;

      if (ret == Z_STREAM_END) {
        if (in_pos == in.size()) break;
        if (!is_gzip(in.data() + in_pos, in.size() - in_pos)) {
          throw DataError("[data] " + quoted(path) + " has " + std::to_string(in.size() - in_pos) +
                          " bytes of trailing garbage after the gzip stream");
        }
        ret = inflateReset(&zs);  // next concatenated member
        if (ret != Z_OK) throw corrupt(zs.msg ? zs.msg : zError(ret));
        continue;
      }
      if (ret == Z_OK) continue;
      if (ret == Z_BUF_ERROR) {
        // No progress possible: either the output is full (grow it) or the input ran out.
        if (zs.avail_out == 0) continue;
        if (in_pos == in.size())
          throw corrupt("unexpected end of stream after " + std::to_string(in.size()) +
                        " compressed bytes");
        throw corrupt(zs.msg ? zs.msg : zError(ret));
      }
      throw corrupt(zs.msg ? zs.msg : zError(ret));
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  inflateEnd(&zs);
  out.resize(out_pos);
  out.shrink_to_fit();
  return out;
}

}  // namespace

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path) { return maybe_gunzip(read_raw(path), path); }

std::vector<uint8_t> maybe_gunzip(std::vector<uint8_t> bytes, const std::string& name) {
  if (!is_gzip(bytes.data(), bytes.size())) return bytes;
  return gunzip(bytes, name);
}

IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& name) {
  const std::string file = quoted(name);
  if (bytes.size() < 4) {
    throw DataError("[data] " + file + " is not an IDX file: it has only " +
                    std::to_string(bytes.size()) + " bytes (the magic number alone is 4)");
  }
  const uint32_t magic = be32(bytes.data());
  if (bytes[0] != 0 || bytes[1] != 0) {
    throw DataError("[data] " + file + " is not an IDX file: magic " + hex32(magic) +
                    " (expected 0x0000080N: uint8 elements, N dimensions)");
  }
  const uint8_t type = bytes[2];
  if (type != 0x08) {
    throw DataError("[data] " + file + " has IDX element type " + hex8(type) + " (" +
                    idx_type_name(type) + "); only uint8 (0x08) is supported");
  }
  const uint8_t ndims = bytes[3];
  if (ndims < 1 || ndims > 4) {
    throw DataError("[data] " + file + " has " + std::to_string(ndims) +
                    " dimensions in its IDX header (magic " + hex32(magic) +
                    "); expected 1 to 4");
  }
  const size_t header = 4 + 4 * size_t(ndims);
  if (bytes.size() < header) {
    throw DataError("[data] " + file + " is truncated: its IDX header needs " +
                    std::to_string(header) + " bytes for " + std::to_string(ndims) +
                    " dimensions, file has " + std::to_string(bytes.size()));
  }

  IdxArray arr;
  arr.dims.resize(ndims);
  uint64_t count = 1;
  bool overflow = false;
  for (size_t i = 0; i < ndims; ++i) {
    arr.dims[i] = be32(bytes.data() + 4 + 4 * i);
    if (__builtin_mul_overflow(count, uint64_t(arr.dims[i]), &count)) overflow = true;
  }
  const std::string shape = dims_string(arr.dims);
  const size_t have = bytes.size() - header;
  if (overflow || count > have) {
    throw DataError("[data] " + file + " is truncated: header says " + shape + " = " +
                    (overflow ? std::string("more than 2^64") : std::to_string(count)) +
                    " bytes of data, file has " + std::to_string(have));
  }
  if (count < have) {
    throw DataError("[data] " + file + " has " + std::to_string(have - count) +
                    " trailing bytes: header says " + shape + " = " + std::to_string(count) +
                    " bytes of data, file has " + std::to_string(have));
  }
  arr.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return arr;
}

IdxArray read_idx(const std::string& path) { return parse_idx(read_file_maybe_gzip(path), path); }

}  // namespace arceus
