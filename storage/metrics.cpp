// metrics.h5: tables /steps, /epochs, /ranks; one chunked, extendible 1-D dataset per column
// (named exactly like the row struct's fields; int64 fields as H5T_STD_I64LE, doubles as
// H5T_IEEE_F64LE), root attributes format = "arceus-metrics", version = 1.
//
// Crash consistency: the file on disk is never modified in place. Every row lives in memory;
// flush() writes the whole file to "<path>.tmp", fsyncs it and renames it over <path> (then
// fsyncs the directory), as checkpoints are written. A process killed at any moment leaves
// either the previous complete file or the new complete one: readable, with every row up to
// its last flush. (HDF5 1.10 has no journal: a kill inside an in-place H5Dwrite or metadata
// flush can leave a file no library opens.) The trainer flushes at every checkpoint, epoch end
// and at the end, so the rows that survive a crash are at least those up to the checkpoint a
// resume starts from. The cost is one rewrite per flush: about 1 ms per 1,000 rows here.
//
// Append mode reads an existing file's rows into memory. Columns of unequal length (a file
// written by an older version killed between the columns of a batch) are cut to the
// shortest; a column missing from an older file gets that many zero rows.
//
// A resume first drops the rows past its checkpoint (truncate_after) and writes the file.
#include <filesystem>
#include <iostream>
#include <limits>

#include "common/atomic_file.h"
#include "storage/h5util.h"
#include "storage/storage.h"

namespace arceus {

namespace {

constexpr const char* kFormat = "arceus-metrics";
constexpr int64_t kVersion = 1;

template <class Row>
struct ColumnDef {
  const char* name;
  int64_t Row::*i;  // exactly one of i, d is set
  double Row::*d;
};

#define ARCEUS_INT(Row, f) ColumnDef<Row>{#f, &Row::f, nullptr}
#define ARCEUS_DBL(Row, f) ColumnDef<Row>{#f, nullptr, &Row::f}

const ColumnDef<StepRow> kStepColumns[] = {
    ARCEUS_INT(StepRow, epoch),     ARCEUS_INT(StepRow, step),     ARCEUS_DBL(StepRow, loss),
    ARCEUS_DBL(StepRow, accuracy),  ARCEUS_DBL(StepRow, samples_per_second),
    ARCEUS_DBL(StepRow, bytes_raw), ARCEUS_DBL(StepRow, bytes_wire),
};
const ColumnDef<EpochRow> kEpochColumns[] = {
    ARCEUS_INT(EpochRow, epoch),        ARCEUS_DBL(EpochRow, train_loss), ARCEUS_DBL(EpochRow, train_accuracy),
    ARCEUS_DBL(EpochRow, val_loss),     ARCEUS_DBL(EpochRow, val_accuracy), ARCEUS_DBL(EpochRow, seconds),
    ARCEUS_DBL(EpochRow, samples_per_second), ARCEUS_DBL(EpochRow, bytes_raw), ARCEUS_DBL(EpochRow, bytes_wire),
};
const ColumnDef<RankRow> kRankColumns[] = {
    ARCEUS_INT(RankRow, epoch),     ARCEUS_INT(RankRow, rank),      ARCEUS_INT(RankRow, stage),
    ARCEUS_DBL(RankRow, forward),   ARCEUS_DBL(RankRow, backward),  ARCEUS_DBL(RankRow, optimizer),
    ARCEUS_DBL(RankRow, codec),     ARCEUS_DBL(RankRow, comm_wait), ARCEUS_DBL(RankRow, idle),
    ARCEUS_DBL(RankRow, wall),      ARCEUS_DBL(RankRow, cpu),       ARCEUS_DBL(RankRow, gflops),
    ARCEUS_INT(RankRow, replica),   ARCEUS_DBL(RankRow, sync),
};

#undef ARCEUS_INT
#undef ARCEUS_DBL

struct Column {
  std::string name;
  bool is_int = false;
  std::vector<int64_t> ivals;
  std::vector<double> dvals;
  size_t size() const { return is_int ? ivals.size() : dvals.size(); }
  void resize(size_t n) {
    if (is_int) {
      ivals.resize(n);
    } else {
      dvals.resize(n);
    }
  }
};

struct Table {
  std::string name;
  std::vector<Column> columns;
  hsize_t chunk_rows = 1024;
  size_t rows = 0;
};

template <class Row, size_t N>
std::vector<Column> columns_of(const ColumnDef<Row> (&defs)[N]) {
  std::vector<Column> cols(N);
  for (size_t k = 0; k < N; ++k) {
    cols[k].name = defs[k].name;
    cols[k].is_int = defs[k].i != nullptr;
  }
  return cols;
}

bool bad_name(const std::string& name) { return name.empty() || name.find('/') != std::string::npos || name == "."; }

}  // namespace

struct MetricsFile::Impl {
  h5::Ctx ctx;
  Table tables[3];     // steps, epochs, ranks
  bool dirty = false;  // rows changed since the file was last written

  explicit Impl(const std::string& path) : ctx{"metrics", path} {
    // Chunk rows per table: thousands of steps, a few epochs, epochs x ranks rows.
    tables[0].name = "steps";
    tables[0].columns = columns_of(kStepColumns);
    tables[0].chunk_rows = 1024;
    tables[1].name = "epochs";
    tables[1].columns = columns_of(kEpochColumns);
    tables[1].chunk_rows = 64;
    tables[2].name = "ranks";
    tables[2].columns = columns_of(kRankColumns);
    tables[2].chunk_rows = 256;
  }

  // Reads an existing file's rows (append mode).
  void load() {
    h5::File file = h5::open_file(ctx, H5F_ACC_RDONLY);
    if (!h5::has_attr(ctx, file.get(), "/", "format")) ctx.fail(" is not an arceus metrics file (no format attribute)");
    const std::string format = h5::read_attr_as_text(ctx, file.get(), "/", "format");
    if (format != kFormat) {
      ctx.fail(" is not an arceus metrics file (format attribute is '" + format + "', expected '" + kFormat + "')");
    }
    const int64_t version = h5::read_int64_attr(ctx, file.get(), "/", "version");
    if (version != kVersion) {
      ctx.fail(" has metrics version " + std::to_string(version) + ", expected " + std::to_string(kVersion));
    }
    for (Table& t : tables) load_table(file, t);
  }

  void load_table(const h5::File& file, Table& t) {
    const std::string gpath = "/" + t.name;
    if (!ctx.check_tri(H5Lexists(file.get(), t.name.c_str(), H5P_DEFAULT), "H5Lexists", gpath)) return;
    h5::Group group(ctx.check(H5Gopen2(file.get(), t.name.c_str(), H5P_DEFAULT), "H5Gopen2", gpath));
    int64_t rows = -1;
    std::vector<bool> present(t.columns.size(), false);
    for (size_t k = 0; k < t.columns.size(); ++k) {
      Column& c = t.columns[k];
      const std::string object = gpath + "/" + c.name;
      if (!ctx.check_tri(H5Lexists(group.get(), c.name.c_str(), H5P_DEFAULT), "H5Lexists", object)) continue;
      h5::Dataset dset(ctx.check(H5Dopen2(group.get(), c.name.c_str(), H5P_DEFAULT), "H5Dopen2", object));
      h5::Space space(ctx.check(H5Dget_space(dset.get()), "H5Dget_space", object));
      if (H5Sget_simple_extent_ndims(space.get()) != 1) ctx.fail(": " + object + " is not a 1-D column");
      hsize_t dim = 0, maxdim = 0;
      ctx.check_status(H5Sget_simple_extent_dims(space.get(), &dim, &maxdim), "H5Sget_simple_extent_dims", object);
      c.resize(dim);
      if (dim > 0) {
        void* buf = c.is_int ? static_cast<void*>(c.ivals.data()) : static_cast<void*>(c.dvals.data());
        ctx.check_status(H5Dread(dset.get(), c.is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                 H5P_DEFAULT, buf),
                         "H5Dread", object);
      }
      present[k] = true;
      rows = rows < 0 ? static_cast<int64_t>(dim) : std::min(rows, static_cast<int64_t>(dim));
    }
    t.rows = rows < 0 ? 0 : static_cast<size_t>(rows);
    for (Column& c : t.columns) {
      if (c.size() != t.rows) dirty = true;
      c.resize(t.rows);  // cut to the shortest; a missing column gets zeros
    }
  }

  // Writes every row to "<path>.tmp", then fsyncs and renames it over the file (replace_file).
  void write() {
    h5::create_parent_dirs(ctx);
    const std::string tmp = temporary_path(ctx.path);
    {
      h5::Plist fapl = h5::file_access(ctx, false);
      h5::File file(ctx.check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "H5Fcreate",
                              "the file"));
      h5::write_string_attr(ctx, file.get(), "/", "format", kFormat);
      h5::write_int64_attr(ctx, file.get(), "/", "version", kVersion);
      h5::Plist lcpl = h5::utf8_link_creation(ctx);
      for (const Table& t : tables) {
        const std::string gpath = "/" + t.name;
        // Creation order: h5py and the readers list the columns in struct order.
        h5::Plist gcpl(ctx.check(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate", "group creation properties"));
        ctx.check_status(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                         "H5Pset_link_creation_order", "group creation properties");
        h5::Group group(
            ctx.check(H5Gcreate2(file.get(), t.name.c_str(), lcpl.get(), gcpl.get(), H5P_DEFAULT), "H5Gcreate2", gpath));
        h5::Plist dcpl(ctx.check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", "dataset creation properties"));
        const hsize_t chunk = t.chunk_rows;
        ctx.check_status(H5Pset_chunk(dcpl.get(), 1, &chunk), "H5Pset_chunk", "dataset creation properties");
        const hsize_t dim = t.rows, maxdim = H5S_UNLIMITED;
        for (const Column& c : t.columns) {
          const std::string object = gpath + "/" + c.name;
          h5::Space space(ctx.check(H5Screate_simple(1, &dim, &maxdim), "H5Screate_simple", object));
          h5::Dataset dset(ctx.check(H5Dcreate2(group.get(), c.name.c_str(), c.is_int ? H5T_STD_I64LE : H5T_IEEE_F64LE,
                                                space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                                     "H5Dcreate2", object));
          if (dim == 0) continue;
          const void* buf = c.is_int ? static_cast<const void*>(c.ivals.data()) : static_cast<const void*>(c.dvals.data());
          ctx.check_status(H5Dwrite(dset.get(), c.is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                    H5P_DEFAULT, buf),
                           "H5Dwrite", object);
        }
      }
      ctx.check_status(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", "the file");
      ctx.check_status(file.close(), "H5Fclose", "the file");
    }
    h5::replace_file(ctx, tmp, ctx.path);
    dirty = false;
  }

  template <class Row, size_t N>
  void append(Table& t, const ColumnDef<Row> (&defs)[N], const Row& row) {
    for (size_t k = 0; k < N; ++k) {
      Column& c = t.columns[k];
      if (defs[k].i != nullptr) {
        c.ivals.push_back(row.*(defs[k].i));
      } else {
        c.dvals.push_back(row.*(defs[k].d));
      }
    }
    ++t.rows;
    dirty = true;
  }

  const Column& column(const Table& t, const std::string& name) const {
    for (const Column& c : t.columns) {
      if (c.name == name) return c;
    }
    ctx.fail(": no column '" + name + "' in table '" + t.name + "'");
  }

  // Cuts `t` before its first row for which `keep(row index)` is false. Returns the rows dropped.
  template <class Keep>
  int64_t cut_table(Table& t, Keep keep) {
    size_t kept = 0;
    while (kept < t.rows && keep(kept)) ++kept;
    const int64_t dropped = static_cast<int64_t>(t.rows - kept);
    for (Column& c : t.columns) c.resize(kept);
    t.rows = kept;
    if (dropped > 0) dirty = true;
    return dropped;
  }

  int64_t truncate_after(int64_t epochs_done, int64_t step) {
    if (epochs_done < 0 || step < 0) {
      ctx.fail(": cannot drop the rows after epoch " + std::to_string(epochs_done) + ", step " + std::to_string(step) +
               " (both must be >= 0)");
    }
    int64_t dropped = 0;
    {
      Table& t = tables[0];
      const std::vector<int64_t>& epoch = column(t, "epoch").ivals;
      const std::vector<int64_t>& steps = column(t, "step").ivals;
      dropped += cut_table(t, [&](size_t k) {
        return epoch[k] <= epochs_done || (epoch[k] == epochs_done + 1 && steps[k] <= step);
      });
    }
    for (Table* t : {&tables[1], &tables[2]}) {
      const std::vector<int64_t>& epoch = column(*t, "epoch").ivals;
      dropped += cut_table(*t, [&](size_t k) { return epoch[k] <= epochs_done; });
    }
    if (dirty) write();
    return dropped;
  }

  void flush() {
    if (dirty) write();
  }

  const Table& table(const std::string& name) const {
    for (const Table& t : tables) {
      if (t.name == name) return t;
    }
    ctx.fail(": no table '" + name + "' (steps, epochs, ranks)");
  }
};

MetricsFile::MetricsFile(const std::string& path, bool append) : impl_(std::make_unique<Impl>(path)) {
  h5::QuietErrors quiet;
  std::error_code ec;
  if (append && std::filesystem::exists(path, ec)) {
    impl_->load();
    impl_->flush();  // only when columns were cut
  } else {
    impl_->write();  // a new run starts with an empty file
  }
}

MetricsFile::~MetricsFile() {
  if (!impl_) return;
  h5::QuietErrors quiet;
  try {
    impl_->flush();
  } catch (const std::exception& e) {
    std::cerr << "arceus: " << e.what() << " (rows since the last flush are lost)\n";
  }
}

void MetricsFile::append(const StepRow& row) { impl_->append(impl_->tables[0], kStepColumns, row); }
void MetricsFile::append(const EpochRow& row) { impl_->append(impl_->tables[1], kEpochColumns, row); }
void MetricsFile::append(const RankRow& row) { impl_->append(impl_->tables[2], kRankColumns, row); }

void MetricsFile::flush() {
  h5::QuietErrors quiet;
  impl_->flush();
}

int64_t MetricsFile::truncate_after(int64_t epochs_done, int64_t step_in_next_epoch) {
  h5::QuietErrors quiet;
  return impl_->truncate_after(epochs_done, step_in_next_epoch);
}

int64_t MetricsFile::rows(const std::string& table) const { return static_cast<int64_t>(impl_->table(table).rows); }

void print_metrics(const std::string& path, std::ostream& out) {
  h5::QuietErrors quiet;
  MetricsFile::Impl m(path);
  m.load();
  out << "metrics: " << path << "\n";
  for (const Table& t : m.tables) {
    out << "  " << t.name << ": " << t.rows << " rows";
    if (t.rows > 0) {
      out << "; last:";
      for (const Column& c : t.columns) {
        out << " " << c.name << "=";
        if (c.is_int) {
          out << c.ivals.back();
        } else {
          out << c.dvals.back();
        }
      }
    }
    out << "\n";
  }
}

std::vector<double> read_metrics_column(const std::string& path, const std::string& table, const std::string& column) {
  h5::QuietErrors quiet;
  const h5::Ctx ctx{"metrics", path};
  if (bad_name(table)) ctx.fail(": no table '" + table + "'");
  if (bad_name(column)) ctx.fail(": no column '" + column + "' in table '" + table + "'");
  h5::File file = h5::open_file(ctx, H5F_ACC_RDONLY);
  const std::string gpath = "/" + table;
  if (!ctx.check_tri(H5Lexists(file.get(), table.c_str(), H5P_DEFAULT), "H5Lexists", gpath)) {
    ctx.fail(": no table '" + table + "'");
  }
  h5::Group group(ctx.check(H5Gopen2(file.get(), table.c_str(), H5P_DEFAULT), "H5Gopen2", gpath));
  const std::string object = gpath + "/" + column;
  if (!ctx.check_tri(H5Lexists(group.get(), column.c_str(), H5P_DEFAULT), "H5Lexists", object)) {
    ctx.fail(": no column '" + column + "' in table '" + table + "'");
  }
  h5::Dataset dset(ctx.check(H5Dopen2(group.get(), column.c_str(), H5P_DEFAULT), "H5Dopen2", object));
  {
    h5::Type type(ctx.check(H5Dget_type(dset.get()), "H5Dget_type", object));
    const H5T_class_t cls = H5Tget_class(type.get());
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) ctx.fail(": column " + object + " is not numeric");
  }
  h5::Space space(ctx.check(H5Dget_space(dset.get()), "H5Dget_space", object));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) ctx.fail_h5("H5Sget_simple_extent_npoints", object);
  std::vector<double> values(static_cast<size_t>(n));
  if (n > 0) {
    ctx.check_status(H5Dread(dset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "H5Dread",
                     object);
  }
  return values;
}

}  // namespace arceus
