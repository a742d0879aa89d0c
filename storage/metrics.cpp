// metrics.h5: tables /steps, /epochs, /ranks; one chunked, extendible 1-D dataset per column
// (named exactly like the row struct's fields; int64 fields as H5T_STD_I64LE, doubles as
// H5T_IEEE_F64LE), root attributes format = "arceus-metrics", version = 1.
//
// Rows are buffered in memory and written in batches of kBatchRows (one H5Dset_extent and one
// H5Dwrite per column per batch), so appending is cheap; flush() writes the buffers and
// H5Fflush-es, the destructor writes whatever is left (errors there go to stderr: a
// destructor cannot throw). Columns are chunked by 1024 rows (steps), 64 (epochs) and 256
// (ranks): 8 KiB, 512 B and 2 KiB chunks.
//
// Append mode reopens the file read-write and continues after its rows. Columns of unequal
// length (a crash between the columns of a batch) are cut to the shortest; a column missing
// from an older file is created with that many zero rows.
//
// A resume first drops the rows past its checkpoint (truncate_after): every column of a table
// is shrunk to the kept prefix (H5Dset_extent), buffered rows past it are discarded.
#include <filesystem>
#include <iostream>
#include <limits>

#include "storage/h5util.h"
#include "storage/storage.h"

namespace arceus {

namespace {

constexpr const char* kFormat = "arceus-metrics";
constexpr int64_t kVersion = 1;
constexpr size_t kBatchRows = 1024;

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
};

#undef ARCEUS_INT
#undef ARCEUS_DBL

struct Column {
  std::string name;
  bool is_int = false;
  h5::Dataset dset;
  std::vector<int64_t> ibuf;
  std::vector<double> dbuf;
};

struct Table {
  std::string name;
  h5::Group group;
  std::vector<Column> columns;
  hsize_t chunk_rows = 1024;
  int64_t disk_rows = 0;
  size_t buffered = 0;
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
  h5::File file;    // declared first: closed last
  Table tables[3];  // steps, epochs, ranks
  bool broken = false;

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

  void create() {
    h5::create_parent_dirs(ctx);
    h5::Plist fapl = h5::file_access(ctx, false);
    file = h5::File(ctx.check(H5Fcreate(ctx.path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "H5Fcreate",
                              "the file"));
    h5::write_string_attr(ctx, file.get(), "/", "format", kFormat);
    h5::write_int64_attr(ctx, file.get(), "/", "version", kVersion);
    for (Table& t : tables) open_table(t, false);
  }

  void open_existing() {
    file = h5::open_file(ctx, H5F_ACC_RDWR);
    if (!h5::has_attr(ctx, file.get(), "/", "format")) ctx.fail(" is not an arceus metrics file (no format attribute)");
    const std::string format = h5::read_attr_as_text(ctx, file.get(), "/", "format");
    if (format != kFormat) {
      ctx.fail(" is not an arceus metrics file (format attribute is '" + format + "', expected '" + kFormat + "')");
    }
    const int64_t version = h5::read_int64_attr(ctx, file.get(), "/", "version");
    if (version != kVersion) {
      ctx.fail(" has metrics version " + std::to_string(version) + ", expected " + std::to_string(kVersion));
    }
    for (Table& t : tables) open_table(t, true);
  }

  // Opens (or creates) the group and its columns; in append mode, finds the row count.
  void open_table(Table& t, bool existing) {
    const std::string gpath = "/" + t.name;
    h5::Plist lcpl = h5::utf8_link_creation(ctx);
    const bool have_group = existing && ctx.check_tri(H5Lexists(file.get(), t.name.c_str(), H5P_DEFAULT), "H5Lexists", gpath);
    if (have_group) {
      t.group = h5::Group(ctx.check(H5Gopen2(file.get(), t.name.c_str(), H5P_DEFAULT), "H5Gopen2", gpath));
    } else {
      // Creation order: h5py and the readers list the columns in struct order.
      h5::Plist gcpl(ctx.check(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate", "group creation properties"));
      ctx.check_status(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                       "H5Pset_link_creation_order", "group creation properties");
      t.group = h5::Group(
          ctx.check(H5Gcreate2(file.get(), t.name.c_str(), lcpl.get(), gcpl.get(), H5P_DEFAULT), "H5Gcreate2", gpath));
    }

    // Existing columns and their lengths.
    int64_t rows = -1;
    std::vector<int64_t> lengths(t.columns.size(), -1);
    if (have_group) {
      for (size_t k = 0; k < t.columns.size(); ++k) {
        Column& c = t.columns[k];
        const std::string object = gpath + "/" + c.name;
        if (!ctx.check_tri(H5Lexists(t.group.get(), c.name.c_str(), H5P_DEFAULT), "H5Lexists", object)) continue;
        c.dset = h5::Dataset(ctx.check(H5Dopen2(t.group.get(), c.name.c_str(), H5P_DEFAULT), "H5Dopen2", object));
        h5::Space space(ctx.check(H5Dget_space(c.dset.get()), "H5Dget_space", object));
        hsize_t dim = 0, maxdim = 0;
        if (H5Sget_simple_extent_ndims(space.get()) != 1) ctx.fail(": " + object + " is not a 1-D column");
        ctx.check_status(H5Sget_simple_extent_dims(space.get(), &dim, &maxdim), "H5Sget_simple_extent_dims", object);
        if (maxdim != H5S_UNLIMITED) ctx.fail(": " + object + " is not an extendible column");
        lengths[k] = static_cast<int64_t>(dim);
        rows = rows < 0 ? lengths[k] : std::min(rows, lengths[k]);
      }
    }
    if (rows < 0) rows = 0;

    h5::Plist dcpl(ctx.check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", "dataset creation properties"));
    const hsize_t chunk = t.chunk_rows;
    ctx.check_status(H5Pset_chunk(dcpl.get(), 1, &chunk), "H5Pset_chunk", "dataset creation properties");
    for (size_t k = 0; k < t.columns.size(); ++k) {
      Column& c = t.columns[k];
      const std::string object = gpath + "/" + c.name;
      const hsize_t dim = static_cast<hsize_t>(rows);
      if (!c.dset.valid()) {
        const hsize_t maxdim = H5S_UNLIMITED;
        h5::Space space(ctx.check(H5Screate_simple(1, &dim, &maxdim), "H5Screate_simple", object));
        c.dset = h5::Dataset(ctx.check(H5Dcreate2(t.group.get(), c.name.c_str(), c.is_int ? H5T_STD_I64LE : H5T_IEEE_F64LE,
                                                  space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                                       "H5Dcreate2", object));
      } else if (lengths[k] != rows) {
        ctx.check_status(H5Dset_extent(c.dset.get(), &dim), "H5Dset_extent", object);
      }
    }
    t.disk_rows = rows;
  }

  // Writes the buffered rows of `t` (one extent change and one write per column).
  void write_table(Table& t) {
    if (t.buffered == 0) return;
    if (broken) ctx.fail(": an earlier write failed; no more rows are written");
    broken = true;  // until this batch is complete: columns could be of unequal length
    const std::string gpath = "/" + t.name;
    const hsize_t start = static_cast<hsize_t>(t.disk_rows);
    const hsize_t count = t.buffered;
    const hsize_t size = start + count;
    h5::Space mem(ctx.check(H5Screate_simple(1, &count, nullptr), "H5Screate_simple", gpath));
    for (Column& c : t.columns) {
      const std::string object = gpath + "/" + c.name;
      ctx.check_status(H5Dset_extent(c.dset.get(), &size), "H5Dset_extent", object);
      h5::Space space(ctx.check(H5Dget_space(c.dset.get()), "H5Dget_space", object));
      ctx.check_status(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr),
                       "H5Sselect_hyperslab", object);
      const void* buf = c.is_int ? static_cast<const void*>(c.ibuf.data()) : static_cast<const void*>(c.dbuf.data());
      ctx.check_status(H5Dwrite(c.dset.get(), c.is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, mem.get(), space.get(),
                                H5P_DEFAULT, buf),
                       "H5Dwrite", object);
      c.ibuf.clear();
      c.dbuf.clear();
    }
    t.disk_rows += static_cast<int64_t>(count);
    t.buffered = 0;
    broken = false;
  }

  template <class Row, size_t N>
  void append(Table& t, const ColumnDef<Row> (&defs)[N], const Row& row) {
    if (broken) ctx.fail(": an earlier write failed; no more rows are written");
    for (size_t k = 0; k < N; ++k) {
      Column& c = t.columns[k];
      if (defs[k].i != nullptr) {
        c.ibuf.push_back(row.*(defs[k].i));
      } else {
        c.dbuf.push_back(row.*(defs[k].d));
      }
    }
    ++t.buffered;
    if (t.buffered >= kBatchRows) write_table(t);
  }

  // The first `n` rows of an int64 column as stored (n <= its extent).
  std::vector<int64_t> read_int_column(const Table& t, const Column& c, int64_t n) {
    const std::string object = "/" + t.name + "/" + c.name;
    std::vector<int64_t> values(static_cast<size_t>(n));
    if (n == 0) return values;
    const hsize_t start = 0, count = static_cast<hsize_t>(n);
    h5::Space mem(ctx.check(H5Screate_simple(1, &count, nullptr), "H5Screate_simple", object));
    h5::Space space(ctx.check(H5Dget_space(c.dset.get()), "H5Dget_space", object));
    ctx.check_status(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr),
                     "H5Sselect_hyperslab", object);
    ctx.check_status(H5Dread(c.dset.get(), H5T_NATIVE_INT64, mem.get(), space.get(), H5P_DEFAULT, values.data()),
                     "H5Dread", object);
    return values;
  }

  const Column& column(const Table& t, const std::string& name) const {
    for (const Column& c : t.columns) {
      if (c.name == name) return c;
    }
    ctx.fail(": no column '" + name + "' in table '" + t.name + "'");
  }

  // Cuts `t` to its rows before the first one for which `keep(row index)` is false; the
  // index runs over the rows on disk, then the buffered ones. Returns the rows dropped.
  template <class Keep>
  int64_t cut_table(Table& t, Keep keep) {
    const int64_t total = t.disk_rows + static_cast<int64_t>(t.buffered);
    int64_t kept = 0;
    while (kept < total && keep(kept)) ++kept;
    if (kept == total) return 0;
    if (kept < t.disk_rows) {
      // Disk rows go: shrink every column, and the buffered rows (all after them) go too.
      broken = true;  // until every column is cut
      const std::string gpath = "/" + t.name;
      const hsize_t size = static_cast<hsize_t>(kept);
      for (Column& c : t.columns) {
        ctx.check_status(H5Dset_extent(c.dset.get(), &size), "H5Dset_extent", gpath + "/" + c.name);
        c.ibuf.clear();
        c.dbuf.clear();
      }
      t.disk_rows = kept;
      t.buffered = 0;
      broken = false;
    } else {
      const size_t keep_buffered = static_cast<size_t>(kept - t.disk_rows);
      for (Column& c : t.columns) {
        if (c.is_int) {
          c.ibuf.resize(keep_buffered);
        } else {
          c.dbuf.resize(keep_buffered);
        }
      }
      t.buffered = keep_buffered;
    }
    return total - kept;
  }

  int64_t truncate_after(int64_t epochs_done, int64_t step) {
    if (epochs_done < 0 || step < 0) {
      ctx.fail(": cannot drop the rows after epoch " + std::to_string(epochs_done) + ", step " + std::to_string(step) +
               " (both must be >= 0)");
    }
    if (broken) ctx.fail(": an earlier write failed; no more rows are written");
    // Key columns: disk rows followed by the buffered ones.
    auto keys = [&](const Table& t, const std::string& name) {
      const Column& c = column(t, name);
      std::vector<int64_t> v = read_int_column(t, c, t.disk_rows);
      v.insert(v.end(), c.ibuf.begin(), c.ibuf.end());
      return v;
    };
    int64_t dropped = 0;
    {
      Table& t = tables[0];
      const std::vector<int64_t> epoch = keys(t, "epoch"), steps = keys(t, "step");
      dropped += cut_table(t, [&](int64_t i) {
        const size_t k = static_cast<size_t>(i);
        return epoch[k] <= epochs_done || (epoch[k] == epochs_done + 1 && steps[k] <= step);
      });
    }
    for (Table* t : {&tables[1], &tables[2]}) {
      const std::vector<int64_t> epoch = keys(*t, "epoch");
      dropped += cut_table(*t, [&](int64_t i) { return epoch[static_cast<size_t>(i)] <= epochs_done; });
    }
    if (dropped > 0) ctx.check_status(H5Fflush(file.get(), H5F_SCOPE_LOCAL), "H5Fflush", "the file");
    return dropped;
  }

  void flush() {
    for (Table& t : tables) write_table(t);
    ctx.check_status(H5Fflush(file.get(), H5F_SCOPE_LOCAL), "H5Fflush", "the file");
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
    impl_->open_existing();
  } else {
    impl_->create();
  }
}

MetricsFile::~MetricsFile() {
  if (!impl_) return;
  h5::QuietErrors quiet;
  try {
    if (!impl_->broken && impl_->file.valid()) impl_->flush();
  } catch (const std::exception& e) {
    std::cerr << "arceus: " << e.what() << " (rows since the last flush are lost)\n";
  }
  // Members close in reverse order: datasets and groups, then the file.
}

void MetricsFile::append(const StepRow& row) {
  h5::QuietErrors quiet;
  impl_->append(impl_->tables[0], kStepColumns, row);
}

void MetricsFile::append(const EpochRow& row) {
  h5::QuietErrors quiet;
  impl_->append(impl_->tables[1], kEpochColumns, row);
}

void MetricsFile::append(const RankRow& row) {
  h5::QuietErrors quiet;
  impl_->append(impl_->tables[2], kRankColumns, row);
}

void MetricsFile::flush() {
  h5::QuietErrors quiet;
  impl_->flush();
}

int64_t MetricsFile::truncate_after(int64_t epochs_done, int64_t step_in_next_epoch) {
  h5::QuietErrors quiet;
  return impl_->truncate_after(epochs_done, step_in_next_epoch);
}

int64_t MetricsFile::rows(const std::string& table) const {
  const Table& t = impl_->table(table);
  return t.disk_rows + static_cast<int64_t>(t.buffered);
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
