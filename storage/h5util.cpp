#include "storage/h5util.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"

namespace arceus::h5 {

QuietErrors::QuietErrors() {
  saved_ = H5Eget_auto2(H5E_DEFAULT, &func_, &data_) >= 0;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() {
  if (saved_) H5Eset_auto2(H5E_DEFAULT, func_, data_);
}

namespace {

herr_t innermost_cb(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  // Walking upward, the first entries are the innermost (most specific) ones.
  if (out->empty() && err != nullptr && err->desc != nullptr && err->desc[0] != '\0') {
    try {
      *out = err->desc;
      if (err->func_name != nullptr) *out += std::string(" [") + err->func_name + "]";
    } catch (...) {
      return -1;
    }
  }
  return 0;
}

herr_t collect_attr_cb(hid_t, const char* name, const H5A_info_t*, void* data) {
  try {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  } catch (...) {
    return -1;
  }
  return 0;
}

herr_t collect_link_cb(hid_t, const char* name, const H5L_info_t*, void* data) {
  try {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  } catch (...) {
    return -1;
  }
  return 0;
}

std::string attr_label(const std::string& where, const std::string& name) {
  return "attribute '" + name + "' of " + where;
}

// Opens attribute `name` of `loc` holding exactly one value; returns it with its type.
Attr open_single_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name, Type* type,
                      Space* space) {
  const std::string label = attr_label(where, name);
  Attr attr(ctx.check(H5Aopen(loc, name.c_str(), H5P_DEFAULT), "H5Aopen", label));
  *type = Type(ctx.check(H5Aget_type(attr.get()), "H5Aget_type", label));
  *space = Space(ctx.check(H5Aget_space(attr.get()), "H5Aget_space", label));
  const hssize_t n = H5Sget_simple_extent_npoints(space->get());
  if (n < 0) ctx.fail_h5("H5Sget_simple_extent_npoints", label);
  if (n != 1) ctx.fail(": " + label + " holds " + std::to_string(n) + " values, expected one");
  return attr;
}

}  // namespace

std::string last_h5_message() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, &msg);
  return msg;
}

void Ctx::fail(const std::string& rest) const { throw StorageError(prefix() + rest); }

void Ctx::fail_h5(const std::string& op, const std::string& object) const {
  const std::string detail = last_h5_message();
  fail(": " + op + " of " + object + " failed" + (detail.empty() ? "" : " (HDF5: " + detail + ")"));
}

Plist file_access(const Ctx& ctx, bool semi) {
  Plist fapl(ctx.check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate", "file access properties"));
  if (semi) {
    ctx.check_status(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI), "H5Pset_fclose_degree",
                     "file access properties");
  }
#if H5_VERSION_GE(1, 10, 7)
  // Lock like HDF5 does by default, but don't fail on file systems without flock (some NFS
  // and Lustre mounts). HDF5_USE_FILE_LOCKING=FALSE in the environment still turns it off.
  ctx.check_status(H5Pset_file_locking(fapl.get(), 1, 1), "H5Pset_file_locking", "file access properties");
#endif
  return fapl;
}

Plist utf8_link_creation(const Ctx& ctx) {
  Plist lcpl(ctx.check(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate", "link creation properties"));
  ctx.check_status(H5Pset_char_encoding(lcpl.get(), H5T_CSET_UTF8), "H5Pset_char_encoding",
                   "link creation properties");
  return lcpl;
}

Plist utf8_attr_creation(const Ctx& ctx) {
  Plist acpl(ctx.check(H5Pcreate(H5P_ATTRIBUTE_CREATE), "H5Pcreate", "attribute creation properties"));
  ctx.check_status(H5Pset_char_encoding(acpl.get(), H5T_CSET_UTF8), "H5Pset_char_encoding",
                   "attribute creation properties");
  return acpl;
}

void require_hdf5_file(const Ctx& ctx) {
  struct stat st {};
  if (::stat(ctx.path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) ctx.fail(" does not exist");
    ctx.fail(": cannot be accessed: " + std::string(std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) ctx.fail(" is a directory, not an HDF5 file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is = H5Fis_accessible(ctx.path.c_str(), H5P_DEFAULT);
#else
  const htri_t is = H5Fis_hdf5(ctx.path.c_str());
#endif
  if (is <= 0) {
    const std::string detail = is < 0 ? last_h5_message() : "";
    ctx.fail(" is not a readable HDF5 file (truncated or corrupt?)" + (detail.empty() ? "" : ": HDF5: " + detail));
  }
}

File open_file(const Ctx& ctx, unsigned flags) {
  require_hdf5_file(ctx);
  Plist fapl = file_access(ctx, false);
  const hid_t id = H5Fopen(ctx.path.c_str(), flags, fapl.get());
  if (id < 0) {
    const std::string detail = last_h5_message();
    if (flags & H5F_ACC_RDWR) ctx.fail(": cannot be opened for writing (HDF5: " + detail + ")");
    ctx.fail(" is not a readable HDF5 file (truncated or corrupt?): HDF5: " + detail);
  }
  return File(id);
}

void write_string_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name,
                       const std::string& value) {
  const std::string label = attr_label(where, name);
  if (value.find('\0') != std::string::npos) ctx.fail(": " + label + " contains a NUL character");
  Type type(ctx.check(H5Tcopy(H5T_C_S1), "H5Tcopy", label));
  ctx.check_status(H5Tset_size(type.get(), H5T_VARIABLE), "H5Tset_size", label);
  ctx.check_status(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset", label);
  Space space(ctx.check(H5Screate(H5S_SCALAR), "H5Screate", label));
  Plist acpl = utf8_attr_creation(ctx);
  Attr attr(ctx.check(H5Acreate2(loc, name.c_str(), type.get(), space.get(), acpl.get(), H5P_DEFAULT),
                      "H5Acreate2", label));
  const char* p = value.c_str();
  ctx.check_status(H5Awrite(attr.get(), type.get(), &p), "H5Awrite", label);
}

namespace {
template <class T>
void write_scalar_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name, hid_t file_type,
                       hid_t mem_type, T value) {
  const std::string label = attr_label(where, name);
  Space space(ctx.check(H5Screate(H5S_SCALAR), "H5Screate", label));
  Plist acpl = utf8_attr_creation(ctx);
  Attr attr(ctx.check(H5Acreate2(loc, name.c_str(), file_type, space.get(), acpl.get(), H5P_DEFAULT),
                      "H5Acreate2", label));
  ctx.check_status(H5Awrite(attr.get(), mem_type, &value), "H5Awrite", label);
}
}  // namespace

void write_int64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name, int64_t value) {
  write_scalar_attr(ctx, loc, where, name, H5T_STD_I64LE, H5T_NATIVE_INT64, value);
}

void write_uint64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name,
                       uint64_t value) {
  write_scalar_attr(ctx, loc, where, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, value);
}

bool has_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name) {
  return ctx.check_tri(H5Aexists(loc, name.c_str()), "H5Aexists", attr_label(where, name));
}

std::string read_string_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name) {
  const std::string label = attr_label(where, name);
  Type type;
  Space space;
  Attr attr = open_single_attr(ctx, loc, where, name, &type, &space);
  if (H5Tget_class(type.get()) != H5T_STRING) ctx.fail(": " + label + " is not a string");

  if (ctx.check_tri(H5Tis_variable_str(type.get()), "H5Tis_variable_str", label)) {
    Type mem(ctx.check(H5Tcopy(H5T_C_S1), "H5Tcopy", label));
    ctx.check_status(H5Tset_size(mem.get(), H5T_VARIABLE), "H5Tset_size", label);
    const H5T_cset_t cset = H5Tget_cset(type.get());
    if (cset >= 0) ctx.check_status(H5Tset_cset(mem.get(), cset), "H5Tset_cset", label);
    char* p = nullptr;
    ctx.check_status(H5Aread(attr.get(), mem.get(), &p), "H5Aread", label);
    std::string value = p != nullptr ? std::string(p) : std::string();
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space.get(), H5P_DEFAULT, &p);
#else
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &p);
#endif
    return value;
  }

  const size_t size = H5Tget_size(type.get());
  if (size == 0) ctx.fail_h5("H5Tget_size", label);
  std::vector<char> buf(size + 1, '\0');
  ctx.check_status(H5Aread(attr.get(), type.get(), buf.data()), "H5Aread", label);
  std::string value(buf.data(), size);
  if (H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD) {
    value.erase(value.find_last_not_of(' ') + 1);
  } else {
    value.resize(std::strlen(buf.data()));  // NUL-terminated or NUL-padded
  }
  return value;
}

int64_t read_int64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name) {
  Type type;
  Space space;
  Attr attr = open_single_attr(ctx, loc, where, name, &type, &space);
  const std::string label = attr_label(where, name);
  if (H5Tget_class(type.get()) != H5T_INTEGER) ctx.fail(": " + label + " is not an integer");
  int64_t value = 0;
  ctx.check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), "H5Aread", label);
  return value;
}

uint64_t read_uint64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name) {
  Type type;
  Space space;
  Attr attr = open_single_attr(ctx, loc, where, name, &type, &space);
  const std::string label = attr_label(where, name);
  if (H5Tget_class(type.get()) != H5T_INTEGER) ctx.fail(": " + label + " is not an integer");
  uint64_t value = 0;
  ctx.check_status(H5Aread(attr.get(), H5T_NATIVE_UINT64, &value), "H5Aread", label);
  return value;
}

std::string read_attr_as_text(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name) {
  const std::string label = attr_label(where, name);
  H5T_class_t cls;
  H5T_sign_t sign;
  {
    Type type;
    Space space;
    Attr attr = open_single_attr(ctx, loc, where, name, &type, &space);
    cls = H5Tget_class(type.get());
    sign = cls == H5T_INTEGER ? H5Tget_sign(type.get()) : H5T_SGN_ERROR;
    if (cls == H5T_FLOAT) {
      double value = 0;
      ctx.check_status(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value), "H5Aread", label);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", value);
      return buf;
    }
  }
  if (cls == H5T_STRING) return read_string_attr(ctx, loc, where, name);
  if (cls == H5T_INTEGER) {
    return sign == H5T_SGN_NONE ? std::to_string(read_uint64_attr(ctx, loc, where, name))
                                : std::to_string(read_int64_attr(ctx, loc, where, name));
  }
  ctx.fail(": " + label + " has an unsupported type (expected a string or a number)");
}

std::vector<std::string> attr_names(const Ctx& ctx, hid_t loc, const std::string& where) {
  std::vector<std::string> names;
  ctx.check_status(H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr_cb, &names), "H5Aiterate2",
                   "the attributes of " + where);
  return names;
}

std::vector<std::string> link_names(const Ctx& ctx, hid_t loc, const std::string& where) {
  unsigned order_flags = 0;
  {
    Plist gcpl(ctx.check(H5Gget_create_plist(loc), "H5Gget_create_plist", where));
    ctx.check_status(H5Pget_link_creation_order(gcpl.get(), &order_flags), "H5Pget_link_creation_order", where);
  }
  const H5_index_t index = (order_flags & H5P_CRT_ORDER_TRACKED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  std::vector<std::string> names;
  ctx.check_status(H5Literate(loc, index, H5_ITER_INC, nullptr, collect_link_cb, &names), "H5Literate",
                   "the members of " + where);
  return names;
}

void create_parent_dirs(const Ctx& ctx) {
  const std::filesystem::path parent = std::filesystem::path(ctx.path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) ctx.fail(": cannot create directory '" + parent.string() + "': " + ec.message());
}

void replace_file(const Ctx& ctx, const std::string& tmp, const std::string& path) {
  try {
    replace_atomically(tmp, path);
  } catch (const FileError& e) {
    ctx.fail(std::string(": ") + e.what());
  }
}

}  // namespace arceus::h5
