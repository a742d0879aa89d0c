// Internal to arceus_storage: RAII handles for HDF5 ids, error checking that turns HDF5
// failures into StorageError naming the file, the object and the operation, and attribute
// helpers. Not installed and not included outside storage/*.cpp.
//
// Thread safety: Debian's serial libhdf5 is not thread-safe; call the storage functions from
// one thread at a time (the orchestrator does).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "storage/storage.h"

namespace arceus::h5 {

// Owns one hid_t and closes it with `Close` (H5Fclose, H5Gclose, ...). Move-only.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

  // Closes now (errors ignored: destructors, unwinding).
  void reset() {
    if (id_ >= 0) Close(id_);
    id_ = H5I_INVALID_HID;
  }
  // Closes now and returns the status (for the checked close of a file being written).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0) status = Close(std::exchange(id_, H5I_INVALID_HID));
    return status;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Space = Handle<H5Sclose>;
using Attr = Handle<H5Aclose>;
using Plist = Handle<H5Pclose>;
using Type = Handle<H5Tclose>;
using Object = Handle<H5Oclose>;  // any object opened with H5Oopen

// Turns HDF5's automatic error-stack printing off for its lifetime and restores the previous
// handler afterwards. Every public storage entry point holds one, so a failure reaches the
// user as one StorageError (with the innermost HDF5 message appended), never as a stack dump
// on stderr. Nesting is fine.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
  bool saved_ = false;
};

// Where errors happen: "[kind] 'path'" starts every message.
struct Ctx {
  std::string kind;  // "checkpoint", "metrics"
  std::string path;

  std::string prefix() const { return "[" + kind + "] '" + path + "'"; }
  // Throws StorageError(prefix() + rest); `rest` starts with ' ' or ':'.
  [[noreturn]] void fail(const std::string& rest) const;
  // Throws "<prefix>: <op> of <object> failed (HDF5: <innermost message>)". Call right after
  // the failing HDF5 call: the next HDF5 call clears the error stack.
  [[noreturn]] void fail_h5(const std::string& op, const std::string& object) const;

  hid_t check(hid_t id, const char* op, const std::string& object) const {
    if (id < 0) fail_h5(op, object);
    return id;
  }
  void check_status(herr_t status, const char* op, const std::string& object) const {
    if (status < 0) fail_h5(op, object);
  }
  // For H5Lexists, H5Aexists, H5Tis_variable_str, ...: negative = failure.
  bool check_tri(htri_t value, const char* op, const std::string& object) const {
    if (value < 0) fail_h5(op, object);
    return value > 0;
  }
};

// The innermost message on HDF5's current error stack ("" when empty).
std::string last_h5_message();

// File access properties: weak close degree unless `semi` (H5Fclose fails while objects of
// the file are still open: catches a handle that would keep the file from being flushed),
// file locking that is skipped on file systems without it.
Plist file_access(const Ctx& ctx, bool semi);

// Link/attribute creation properties that mark names as UTF-8.
Plist utf8_link_creation(const Ctx& ctx);
Plist utf8_attr_creation(const Ctx& ctx);

// Root of the checks done before opening: the file exists and is an HDF5 file. Throws
// "<prefix> does not exist" or "<prefix> is not a readable HDF5 file (truncated or corrupt?)".
void require_hdf5_file(const Ctx& ctx);
// H5Fopen with the messages above for failures.
File open_file(const Ctx& ctx, unsigned flags);

// Attributes of `loc` (`where` names loc in messages, e.g. "/").
void write_string_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name,
                       const std::string& value);
void write_int64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name, int64_t value);
void write_uint64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name,
                       uint64_t value);

bool has_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name);
// Variable-length or fixed-length strings (any padding), ASCII or UTF-8.
std::string read_string_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name);
// Any integer type, converted.
int64_t read_int64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name);
uint64_t read_uint64_attr(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name);
// Strings as they are, integers and floats as decimal text; other types: StorageError.
std::string read_attr_as_text(const Ctx& ctx, hid_t loc, const std::string& where, const std::string& name);

// Names of the attributes of `loc` in name order.
std::vector<std::string> attr_names(const Ctx& ctx, hid_t loc, const std::string& where);
// Names of the links in group `loc`: in creation order when the group tracks it (groups this
// library writes do), else in name order.
std::vector<std::string> link_names(const Ctx& ctx, hid_t loc, const std::string& where);

// Parent directory creation (no-op for a bare file name).
void create_parent_dirs(const Ctx& ctx);

// The atomic step of a crash-safe write, for a `tmp` the HDF5 library wrote and closed:
// replace_atomically (common/atomic_file.h: fsync it, rename it over `path`, fsync the
// directory), its FileError as a StorageError of `ctx`. On failure `tmp` is removed.
void replace_file(const Ctx& ctx, const std::string& tmp, const std::string& path);

}  // namespace arceus::h5
