// checkpoint.h5: write (atomically), read, print. The layout is documented in storage.h.
//
// Choices:
// - HDF5's latest file format (superblock 3): every metadata block has a checksum HDF5 checks
//   before decoding it, and only files in that format are read, so that a damaged file is an
//   error, not one of the crashes HDF5 1.10.8 has on damaged metadata (tests/fuzz found three).
// - String attributes are fixed-length UTF-8, NUL-padded: their bytes sit under the attribute's
//   checksum. (Variable-length ones, what h5py writes for str, live in the global heap, which
//   has no checksum; they are refused when reading.)
// - What a file can make the reader allocate is bounded before allocating: 3 x max_parameters
//   values in all (config/limits.h), each chunk the bytes of its shape.
// - epoch/step are int64 (H5T_STD_I64LE), global_step is uint64 (H5T_STD_U64LE), version is
//   int64. Extra `attributes` are strings; when reading, numeric root attributes someone else
//   added come back as decimal text.
// - Tensors are float32 datasets (H5T_IEEE_F32LE); shape {} is a scalar dataspace. RNG states
//   are 1-D uint8 datasets. Non-empty arrays are chunked (<= ~1 MiB per chunk) with the
//   Fletcher-32 checksum filter (built into HDF5, h5py reads it): corruption inside the data
//   is a read error naming the dataset, not silently wrong weights.
// - The groups track link creation order and are read back in that order (the order the
//   vectors had when written: model order for `arceus inspect`); groups without it (written
//   by other tools) are read in name order. Either way the order is deterministic.
// - HDF5's error printing is off during every call (h5::QuietErrors); failures are one
//   StorageError naming the file, the object and the HDF5 call, plus HDF5's innermost message.
#include "storage/storage.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <set>
#include <sstream>

#include "common/atomic_file.h"
#include "config/limits.h"
#include "storage/h5util.h"

namespace arceus {

namespace {

constexpr const char* kFormat = "arceus-checkpoint";
constexpr int64_t kVersion = 1;
const char* const kReserved[] = {"format", "version", "config", "epoch", "step", "global_step"};

bool is_reserved(const std::string& name) {
  for (const char* r : kReserved) {
    if (name == r) return true;
  }
  return false;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

const char* class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

// Link names: non-empty, no '/', not "." (HDF5 would take it for the group itself), unique.
void check_names(const h5::Ctx& ctx, const char* group, const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (const std::string& name : names) {
    const std::string where = std::string("/") + group + "/" + name;
    if (name.empty()) ctx.fail(std::string(": an entry of /") + group + " has an empty name");
    if (name.find('/') != std::string::npos) ctx.fail(": name '" + where + "' contains '/'");
    if (name == ".") ctx.fail(": name '" + where + "' is not allowed");
    if (!seen.insert(name).second) ctx.fail(": duplicate name '" + where + "'");
  }
}

// Values in `shape` (StorageError for negative dimensions or overflow).
uint64_t shape_count(const h5::Ctx& ctx, const std::string& object, const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) ctx.fail(": " + object + " has a negative dimension in shape " + shape_text(shape));
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
      ctx.fail(": " + object + " has a shape too large " + shape_text(shape));
    }
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

h5::Space make_space(const h5::Ctx& ctx, const std::string& object, const std::vector<int64_t>& shape) {
  if (shape.empty()) return h5::Space(ctx.check(H5Screate(H5S_SCALAR), "H5Screate", object));
  if (shape.size() > H5S_MAX_RANK) ctx.fail(": " + object + " has more than 32 dimensions");
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return h5::Space(
      ctx.check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "H5Screate_simple", object));
}

// Chunks of at most ~1 MiB: whole trailing rows, splitting the leading dimensions first.
std::vector<hsize_t> chunk_dims(const std::vector<int64_t>& shape, size_t elem_size) {
  constexpr uint64_t kTarget = 1 << 20;
  std::vector<hsize_t> chunk(shape.begin(), shape.end());
  uint64_t bytes = elem_size;
  for (hsize_t d : chunk) bytes *= d;
  for (hsize_t& c : chunk) {
    if (bytes <= kTarget) break;
    const uint64_t inner = bytes / c;
    c = std::max<uint64_t>(1, kTarget / inner);
    bytes = inner * c;
  }
  return chunk;
}

void write_dataset(const h5::Ctx& ctx, hid_t group, const std::string& object, const std::string& name,
                   const std::vector<int64_t>& shape, hid_t file_type, hid_t mem_type, const void* data, hid_t lcpl) {
  h5::Space space = make_space(ctx, object, shape);
  // Non-empty arrays are chunked with the Fletcher-32 checksum filter, so corrupted or missing
  // bytes fail the read (naming the dataset) instead of loading garbage. Scalars and empty
  // arrays cannot be chunked and stay contiguous.
  h5::Plist dcpl(ctx.check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", "dataset creation properties of " + object));
  const bool chunked = !shape.empty() && std::all_of(shape.begin(), shape.end(), [](int64_t d) { return d > 0; });
  if (chunked) {
    const std::vector<hsize_t> chunk = chunk_dims(shape, H5Tget_size(file_type));
    ctx.check_status(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk", object);
    ctx.check_status(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32", object);
  }
  h5::Dataset dset(ctx.check(H5Dcreate2(group, name.c_str(), file_type, space.get(), lcpl, dcpl.get(), H5P_DEFAULT),
                             "H5Dcreate2", object));
  if (data != nullptr) {
    ctx.check_status(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", object);
  }
}

void write_arrays(const h5::Ctx& ctx, hid_t root, const char* group_name, const std::vector<NamedArray>& arrays,
                  hid_t gcpl, hid_t lcpl) {
  const std::string gpath = std::string("/") + group_name;
  h5::Group group(ctx.check(H5Gcreate2(root, group_name, lcpl, gcpl, H5P_DEFAULT), "H5Gcreate2", gpath));
  for (const NamedArray& a : arrays) {
    const std::string object = gpath + "/" + a.name;
    const uint64_t n = shape_count(ctx, object, a.shape);
    if (n != a.data.size()) {
      ctx.fail(": " + object + " has shape " + shape_text(a.shape) + " (" + std::to_string(n) + " values) but " +
               std::to_string(a.data.size()) + " values");
    }
    write_dataset(ctx, group.get(), object, a.name, a.shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                  a.data.empty() ? nullptr : a.data.data(), lcpl);
  }
}

// Opens member `name` of `group` and checks it is a dataset.
h5::Dataset open_dataset(const h5::Ctx& ctx, hid_t group, const std::string& object, const std::string& name) {
  const hid_t id = ctx.check(H5Oopen(group, name.c_str(), H5P_DEFAULT), "H5Oopen", object);
  if (H5Iget_type(id) != H5I_DATASET) {
    H5Oclose(id);
    ctx.fail(": " + object + " is not a dataset");
  }
  return h5::Dataset(id);
}

// Shape of a dataset (scalar = {}); StorageError for a null dataspace.
std::vector<int64_t> dataset_shape(const h5::Ctx& ctx, hid_t dset, const std::string& object, uint64_t* count) {
  h5::Space space(ctx.check(H5Dget_space(dset), "H5Dget_space", object));
  const H5S_class_t cls = H5Sget_simple_extent_type(space.get());
  std::vector<int64_t> shape;
  if (cls == H5S_SCALAR) {
    *count = 1;
    return shape;
  }
  if (cls != H5S_SIMPLE) ctx.fail(": dataset " + object + " has no dataspace (null or unknown)");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) ctx.fail_h5("H5Sget_simple_extent_ndims", object);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) ctx.fail_h5("H5Sget_simple_extent_dims", object);
  for (hsize_t d : dims) {
    if (d > static_cast<hsize_t>(std::numeric_limits<int64_t>::max())) {
      ctx.fail(": dataset " + object + " has an impossible dimension");
    }
    shape.push_back(static_cast<int64_t>(d));
  }
  *count = shape_count(ctx, "dataset " + object, shape);
  return shape;
}

// The values all datasets of one checkpoint may hold: the parameters and two optimizer states
// each, 3 x max_parameters (config/limits.h). Taken before each dataset is allocated: its shape
// is the file's to claim, and HDF5 fills a dataset that has no storage with its fill value, so a
// file of a few KiB could otherwise make the reader allocate any amount.
class ValueBudget {
 public:
  explicit ValueBudget(int64_t max_parameters)
      : max_parameters_(max_parameters),
        total_(max_parameters > INT64_MAX / 3 ? INT64_MAX : 3 * max_parameters),
        left_(static_cast<uint64_t>(total_)) {}

  void take(const h5::Ctx& ctx, const std::string& object, const std::vector<int64_t>& shape, uint64_t n) {
    if (n > left_) {
      const uint64_t used = static_cast<uint64_t>(total_) - left_;
      ctx.fail(": dataset " + object + " holds " + shape_text(shape) + " = " +
               (n > INT64_MAX ? std::to_string(n) : with_commas(static_cast<int64_t>(n))) + " values" +
               (used > 0 ? " (after " + with_commas(static_cast<int64_t>(used)) + " in the datasets before it)" : "") +
               ", above the limit of a checkpoint, 3 x max_parameters = " + with_commas(total_) +
               " values (max_parameters = " + with_commas(max_parameters_) + ")" + raise_hint("max_parameters"));
    }
    left_ -= n;
  }

 private:
  int64_t max_parameters_, total_;
  uint64_t left_;
};

template <class T>
void resize_for(const h5::Ctx& ctx, const std::string& object, std::vector<T>& v, uint64_t n) {
  try {
    v.resize(static_cast<size_t>(n));
  } catch (const std::exception&) {
    ctx.fail(": dataset " + object + " claims " + std::to_string(n) + " values (corrupt?)");
  }
}

// Before H5Dread of `n` values: the dataset's storage is what the writer makes, sized for its
// shape. HDF5 1.10.8 trusts a chunk's shape over the bytes stored for it: a file whose layout
// claims chunks [2, 768] for a [2, 3] dataset with 28 bytes stored made H5Dread copy from past
// its 28-byte buffer (a heap overflow read found by tests/fuzz/fuzz_checkpoint). So: chunked
// with at most the Fletcher-32 filter, and every chunk holding its shape's bytes (+ 4 for the
// checksum); contiguous or compact holding n values or (contiguous, never written) nothing.
void check_storage(const h5::Ctx& ctx, hid_t dset, const std::string& object, uint64_t n) {
  const std::string what = ": dataset " + object;
  h5::Plist dcpl(ctx.check(H5Dget_create_plist(dset), "H5Dget_create_plist", object));
  h5::Type type(ctx.check(H5Dget_type(dset), "H5Dget_type", object));
  const uint64_t elem = H5Tget_size(type.get());
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout != H5D_CHUNKED) {
    const uint64_t stored = H5Dget_storage_size(dset);
    uint64_t need = 0;
    const bool ok = (!__builtin_mul_overflow(n, elem, &need) && stored == need) ||
                    (layout == H5D_CONTIGUOUS && stored == 0);
    if (!ok) {
      ctx.fail(what + " stores " + std::to_string(stored) + " bytes for " + std::to_string(n) + " values of " +
               std::to_string(elem) + " bytes (corrupt layout?)");
    }
    return;
  }
  const int filters = H5Pget_nfilters(dcpl.get());
  bool checksum = false;
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t nvalues = 0;
    char name[64] = "";
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nvalues, nullptr,
                                           sizeof name, name, nullptr);
    if (id != H5Z_FILTER_FLETCHER32) {
      ctx.fail(what + " uses HDF5 filter " + std::to_string(id) + (name[0] ? " (" + std::string(name) + ")" : "") +
               "; arceus checkpoints use only the Fletcher-32 checksum (rewritten by another tool?)");
    }
    checksum = true;
  }
  h5::Space space(ctx.check(H5Dget_space(dset), "H5Dget_space", object));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> chunk(static_cast<size_t>(std::max(rank, 0)));
  if (rank < 1 || H5Pget_chunk(dcpl.get(), rank, chunk.data()) != rank) ctx.fail_h5("H5Pget_chunk", object);
  uint64_t chunk_bytes = elem;
  for (hsize_t c : chunk) {
    if (c == 0 || __builtin_mul_overflow(chunk_bytes, uint64_t{c}, &chunk_bytes)) {
      ctx.fail(what + " has an impossible chunk shape " + shape_text(std::vector<int64_t>(chunk.begin(), chunk.end())));
    }
  }
#if H5_VERSION_GE(1, 10, 5)
  hsize_t chunks = 0;
  ctx.check_status(H5Dget_num_chunks(dset, space.get(), &chunks), "H5Dget_num_chunks", object);
  for (hsize_t i = 0; i < chunks; ++i) {
    std::vector<hsize_t> offset(chunk.size());
    unsigned skipped = 0;
    haddr_t addr = 0;
    hsize_t stored = 0;
    ctx.check_status(H5Dget_chunk_info(dset, space.get(), i, offset.data(), &skipped, &addr, &stored),
                     "H5Dget_chunk_info", object);
    const uint64_t want = chunk_bytes + (checksum && !(skipped & 1u) ? 4 : 0);
    if (stored != want) {
      ctx.fail(what + ": chunk " + std::to_string(i) + " stores " + std::to_string(stored) + " bytes, but its shape " +
               shape_text(std::vector<int64_t>(chunk.begin(), chunk.end())) + " of " + std::to_string(elem) +
               "-byte values takes " + std::to_string(want) + (checksum ? " with the checksum" : "") +
               " (corrupt layout?)");
    }
  }
#endif
}

NamedArray read_array(const h5::Ctx& ctx, hid_t group, const std::string& gpath, const std::string& name,
                      ValueBudget& budget) {
  const std::string object = gpath + "/" + name;
  h5::Dataset dset = open_dataset(ctx, group, object, name);
  {
    h5::Type type(ctx.check(H5Dget_type(dset.get()), "H5Dget_type", object));
    const H5T_class_t cls = H5Tget_class(type.get());
    if (cls != H5T_FLOAT) {
      ctx.fail(": dataset " + object + " has type " + class_name(cls) + ", expected float32");
    }
  }
  NamedArray a;
  a.name = name;
  uint64_t n = 0;
  a.shape = dataset_shape(ctx, dset.get(), object, &n);
  budget.take(ctx, object, a.shape, n);
  resize_for(ctx, object, a.data, n);
  if (n > 0) {
    check_storage(ctx, dset.get(), object, n);
    ctx.check_status(H5Dread(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()), "H5Dread",
                     "dataset " + object);
  }
  return a;
}

NamedBytes read_bytes(const h5::Ctx& ctx, hid_t group, const std::string& gpath, const std::string& name,
                      ValueBudget& budget) {
  const std::string object = gpath + "/" + name;
  h5::Dataset dset = open_dataset(ctx, group, object, name);
  {
    h5::Type type(ctx.check(H5Dget_type(dset.get()), "H5Dget_type", object));
    const H5T_class_t cls = H5Tget_class(type.get());
    const size_t size = H5Tget_size(type.get());
    if (cls != H5T_INTEGER || size != 1) {
      ctx.fail(": dataset " + object + " has type " + class_name(cls) + " of " + std::to_string(size) +
               " bytes, expected uint8");
    }
  }
  NamedBytes b;
  b.name = name;
  uint64_t n = 0;
  budget.take(ctx, object, dataset_shape(ctx, dset.get(), object, &n), n);
  resize_for(ctx, object, b.bytes, n);
  if (n > 0) {
    check_storage(ctx, dset.get(), object, n);
    ctx.check_status(H5Dread(dset.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b.bytes.data()), "H5Dread",
                     "dataset " + object);
  }
  return b;
}

h5::Group open_member_group(const h5::Ctx& ctx, hid_t root, const char* name) {
  const std::string gpath = std::string("/") + name;
  if (!ctx.check_tri(H5Lexists(root, name, H5P_DEFAULT), "H5Lexists", gpath)) {
    ctx.fail(" is not a complete arceus checkpoint (no " + gpath + " group)");
  }
  return h5::Group(ctx.check(H5Gopen2(root, name, H5P_DEFAULT), "H5Gopen2", gpath));
}

std::string norm_text(const std::vector<float>& data) {
  double sum = 0;
  for (float v : data) sum += static_cast<double>(v) * static_cast<double>(v);
  std::ostringstream s;
  s << std::setprecision(6) << std::sqrt(sum);
  return s.str();
}

void print_arrays(std::ostream& out, const char* title, const std::vector<NamedArray>& arrays) {
  out << title << ":\n";
  if (arrays.empty()) {
    out << "  (none)\n";
    return;
  }
  size_t name_w = 0, shape_w = 0;
  uint64_t total = 0;
  for (const NamedArray& a : arrays) {
    name_w = std::max(name_w, a.name.size());
    shape_w = std::max(shape_w, shape_text(a.shape).size());
    total += a.data.size();
  }
  for (const NamedArray& a : arrays) {
    const std::string shape = shape_text(a.shape);
    out << "  " << a.name << std::string(name_w - a.name.size(), ' ') << "  " << shape
        << std::string(shape_w - shape.size(), ' ') << "  norm " << norm_text(a.data) << "\n";
  }
  out << "  (" << arrays.size() << (arrays.size() == 1 ? " tensor, " : " tensors, ") << total
      << (total == 1 ? " value)\n" : " values)\n");
}

// Writes `text` line by line, each line prefixed by `indent` (continuation lines of a value).
void print_indented(std::ostream& out, const std::string& text, const std::string& indent) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out << indent << text.substr(start, end - start) << "\n";
    start = end + 1;
  }
}

// String attributes of a checkpoint are fixed-length: their bytes are in the attribute itself,
// under its object header's checksum. Variable-length strings (what h5py writes for str) live in
// the global heap, which has no checksum in any HDF5 format, and HDF5 1.10.8 copied a damaged
// one's garbage length (a wild read in H5HG_read found by tests/fuzz/fuzz_checkpoint).
void write_text_attr(const h5::Ctx& ctx, hid_t loc, const std::string& name, const std::string& value) {
  const std::string label = "attribute '" + name + "' of /";
  if (value.find('\0') != std::string::npos) ctx.fail(": " + label + " contains a NUL character");
  std::vector<char> bytes(std::max<size_t>(1, value.size()), '\0');  // HDF5 has no 0-byte strings
  std::copy(value.begin(), value.end(), bytes.begin());
  h5::Type type(ctx.check(H5Tcopy(H5T_C_S1), "H5Tcopy", label));
  ctx.check_status(H5Tset_size(type.get(), bytes.size()), "H5Tset_size", label);
  ctx.check_status(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad", label);
  ctx.check_status(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset", label);
  h5::Space space(ctx.check(H5Screate(H5S_SCALAR), "H5Screate", label));
  h5::Plist acpl = h5::utf8_attr_creation(ctx);
  h5::Attr attr(ctx.check(H5Acreate2(loc, name.c_str(), type.get(), space.get(), acpl.get(), H5P_DEFAULT),
                          "H5Acreate2", label));
  ctx.check_status(H5Awrite(attr.get(), type.get(), bytes.data()), "H5Awrite", label);
}

// Refuses variable-length attributes of the root (see write_text_attr) before any is read.
void require_fixed_length_attrs(const h5::Ctx& ctx, hid_t root) {
  for (const std::string& name : h5::attr_names(ctx, root, "/")) {
    const std::string label = "attribute '" + name + "' of /";
    h5::Attr attr(ctx.check(H5Aopen(root, name.c_str(), H5P_DEFAULT), "H5Aopen", label));
    h5::Type type(ctx.check(H5Aget_type(attr.get()), "H5Aget_type", label));
    const bool string = H5Tget_class(type.get()) == H5T_STRING;
    if ((string && ctx.check_tri(H5Tis_variable_str(type.get()), "H5Tis_variable_str", label)) ||
        ctx.check_tri(H5Tdetect_class(type.get(), H5T_VLEN), "H5Tdetect_class", label)) {
      ctx.fail(": " + label + " has a variable-length type: arceus writes a checkpoint's attributes with fixed "
               "lengths (written by an older arceus, or by another tool?)");
    }
  }
}

// The version of the HDF5 superblock of `ctx.path` (its signature is at 0, 512, 1024, ...: a user
// block may come first), or -1 without one.
int superblock_version(const h5::Ctx& ctx) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(ctx.path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  for (std::streamoff at = 0; in && at + 9 <= size; at = at == 0 ? 512 : 2 * at) {
    char head[9];
    in.seekg(at);
    if (!in.read(head, sizeof head)) break;
    if (std::memcmp(head, kSignature, sizeof kSignature) == 0) return static_cast<unsigned char>(head[8]);
  }
  return -1;
}

// HDF5 1.10.8 decodes the metadata of older formats without any check and crashes on some
// damaged files (tests/fuzz/fuzz_checkpoint found a null dereference in H5Aiterate2, a read
// past a buffer in H5Dread). Checkpoints are written in the latest format, whose superblock
// (version 2 and 3) and every metadata block it leads to carry checksums that HDF5 verifies
// first, and only such files are read.
void require_checksummed_format(const h5::Ctx& ctx) {
  const int version = superblock_version(ctx);
  if (version < 2) {
    ctx.fail(" is an HDF5 file of superblock version " + std::to_string(version) +
             ", without metadata checksums: arceus reads checkpoints in the format it writes (superblock version 3; "
             "written by an older arceus, or by another tool?)");
  }
}

}  // namespace

void write_checkpoint_file(const std::string& path, const CheckpointData& data) {
  h5::QuietErrors quiet;
  const h5::Ctx ctx{"checkpoint", path};

  // Validate before touching the file.
  for (const auto& [key, value] : data.attributes) {
    if (key.empty()) ctx.fail(": an attribute has an empty name");
    if (is_reserved(key)) ctx.fail(": attribute '" + key + "' is reserved for the checkpoint itself");
  }
  {
    std::vector<std::string> names;
    for (const NamedArray& a : data.parameters) names.push_back(a.name);
    check_names(ctx, "parameters", names);
    names.clear();
    for (const NamedArray& a : data.optimizer) names.push_back(a.name);
    check_names(ctx, "optimizer", names);
    names.clear();
    for (const NamedBytes& b : data.rng) names.push_back(b.name);
    check_names(ctx, "rng", names);
  }

  {
    // Semi close degree: H5Fclose fails (instead of silently deferring the close) if a
    // handle were still open, so a successful close means everything reached the file.
    h5::Plist fapl = h5::file_access(ctx, true);
    // The latest file format (superblock 3, object headers 2, ...): every metadata block carries a
    // checksum that HDF5 verifies before it decodes the block (see read_checkpoint).
    ctx.check_status(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "H5Pset_libver_bounds",
                     "file access properties");
    h5::File file(ctx.check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "H5Fcreate", "the file"));
    {
      h5::Group root(ctx.check(H5Gopen2(file.get(), "/", H5P_DEFAULT), "H5Gopen2", "/"));
      write_text_attr(ctx, root.get(), "format", kFormat);
      h5::write_int64_attr(ctx, root.get(), "/", "version", kVersion);
      write_text_attr(ctx, root.get(), "config", data.config_yaml);
      h5::write_int64_attr(ctx, root.get(), "/", "epoch", data.epoch);
      h5::write_int64_attr(ctx, root.get(), "/", "step", data.step);
      h5::write_uint64_attr(ctx, root.get(), "/", "global_step", data.global_step);
      for (const auto& [key, value] : data.attributes) write_text_attr(ctx, root.get(), key, value);

      h5::Plist lcpl = h5::utf8_link_creation(ctx);
      h5::Plist gcpl(ctx.check(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate", "group creation properties"));
      ctx.check_status(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                       "H5Pset_link_creation_order", "group creation properties");

      write_arrays(ctx, root.get(), "parameters", data.parameters, gcpl.get(), lcpl.get());
      write_arrays(ctx, root.get(), "optimizer", data.optimizer, gcpl.get(), lcpl.get());

      h5::Group rng(ctx.check(H5Gcreate2(root.get(), "rng", lcpl.get(), gcpl.get(), H5P_DEFAULT), "H5Gcreate2", "/rng"));
      for (const NamedBytes& b : data.rng) {
        write_dataset(ctx, rng.get(), "/rng/" + b.name, b.name, {static_cast<int64_t>(b.bytes.size())}, H5T_STD_U8LE,
                      H5T_NATIVE_UINT8, b.bytes.empty() ? nullptr : b.bytes.data(), lcpl.get());
      }
    }
    ctx.check_status(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", "the file");
    ctx.check_status(file.close(), "H5Fclose", "the file");
  }
}

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  h5::QuietErrors quiet;
  const h5::Ctx ctx{"checkpoint", path};
  h5::create_parent_dirs(ctx);

  const std::string tmp = temporary_path(path);
  std::error_code ec;
  std::filesystem::remove(tmp, ec);  // left by an interrupted write; H5F_ACC_TRUNC would also do
  try {
    write_checkpoint_file(tmp, data);
  } catch (...) {
    std::filesystem::remove(tmp, ec);
    throw;
  }
  h5::replace_file(ctx, tmp, path);
}

CheckpointData read_checkpoint(const std::string& path) {
  h5::QuietErrors quiet;
  const h5::Ctx ctx{"checkpoint", path};
  h5::require_hdf5_file(ctx);
  require_checksummed_format(ctx);
  h5::File file = h5::open_file(ctx, H5F_ACC_RDONLY);
  h5::Group root(ctx.check(H5Gopen2(file.get(), "/", H5P_DEFAULT), "H5Gopen2", "/"));
  require_fixed_length_attrs(ctx, root.get());

  if (!h5::has_attr(ctx, root.get(), "/", "format")) ctx.fail(" is not an arceus checkpoint (no format attribute)");
  {
    std::string format;
    try {
      format = h5::read_string_attr(ctx, root.get(), "/", "format");
    } catch (const StorageError&) {
      ctx.fail(" is not an arceus checkpoint (its format attribute is not a string)");
    }
    if (format != kFormat) {
      ctx.fail(" is not an arceus checkpoint (format attribute is '" + format + "', expected '" + kFormat + "')");
    }
  }
  if (!h5::has_attr(ctx, root.get(), "/", "version")) ctx.fail(" has no version attribute");
  const int64_t version = h5::read_int64_attr(ctx, root.get(), "/", "version");
  if (version != kVersion) {
    ctx.fail(" has checkpoint version " + std::to_string(version) + ", expected " + std::to_string(kVersion) +
             (version > kVersion ? " (written by a newer arceus?)" : ""));
  }
  for (const char* name : {"config", "epoch", "step", "global_step"}) {
    if (!h5::has_attr(ctx, root.get(), "/", name)) {
      ctx.fail(" is not a complete arceus checkpoint (no " + std::string(name) + " attribute)");
    }
  }

  CheckpointData data;
  ValueBudget budget(operator_limits().max_parameters);
  data.config_yaml = h5::read_string_attr(ctx, root.get(), "/", "config");
  data.epoch = h5::read_int64_attr(ctx, root.get(), "/", "epoch");
  data.step = h5::read_int64_attr(ctx, root.get(), "/", "step");
  data.global_step = h5::read_uint64_attr(ctx, root.get(), "/", "global_step");
  for (const std::string& name : h5::attr_names(ctx, root.get(), "/")) {
    if (!is_reserved(name)) data.attributes[name] = h5::read_attr_as_text(ctx, root.get(), "/", name);
  }

  {
    h5::Group g = open_member_group(ctx, root.get(), "parameters");
    for (const std::string& name : h5::link_names(ctx, g.get(), "/parameters")) {
      data.parameters.push_back(read_array(ctx, g.get(), "/parameters", name, budget));
    }
  }
  {
    h5::Group g = open_member_group(ctx, root.get(), "optimizer");
    for (const std::string& name : h5::link_names(ctx, g.get(), "/optimizer")) {
      data.optimizer.push_back(read_array(ctx, g.get(), "/optimizer", name, budget));
    }
  }
  {
    h5::Group g = open_member_group(ctx, root.get(), "rng");
    for (const std::string& name : h5::link_names(ctx, g.get(), "/rng")) {
      data.rng.push_back(read_bytes(ctx, g.get(), "/rng", name, budget));
    }
  }
  return data;
}

void print_checkpoint(const CheckpointData& data, std::ostream& out) {
  std::ostringstream s;
  s << "config:\n";
  if (data.config_yaml.empty()) {
    s << "  (empty)\n";
  } else {
    print_indented(s, data.config_yaml, "  ");
  }
  s << "epoch: " << data.epoch << "  step: " << data.step << "  global_step: " << data.global_step << "\n";
  if (!data.attributes.empty()) {
    s << "attributes:\n";
    size_t w = 0;
    for (const auto& [key, value] : data.attributes) w = std::max(w, key.size());
    for (const auto& [key, value] : data.attributes) {
      const std::string lead = "  " + key + ":" + std::string(w - key.size() + 1, ' ');
      if (value.find('\n') == std::string::npos) {
        s << lead << value << "\n";
      } else {
        s << "  " << key << ":\n";
        print_indented(s, value, "    ");
      }
    }
  }
  print_arrays(s, "parameters", data.parameters);
  print_arrays(s, "optimizer state", data.optimizer);
  if (!data.rng.empty()) {
    s << "rng:\n";
    size_t w = 0;
    for (const NamedBytes& b : data.rng) w = std::max(w, b.name.size());
    for (const NamedBytes& b : data.rng) {
      s << "  " << b.name << std::string(w - b.name.size(), ' ') << "  " << b.bytes.size() << " bytes\n";
    }
  }
  out << s.str();
}

}  // namespace arceus
