#include "ranks/mpi_transport.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>

namespace arceus {

namespace {

MpiTransport* g_world = nullptr;

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

// Throws TransportError naming the call, where it was made, the peer, tag and byte count.
void check(int code, const char* call, const char* file, int line, int peer = -1, int tag = -1,
           size_t bytes = 0) {
  if (code == MPI_SUCCESS) return;
  std::ostringstream os;
  os << "[mpi] " << call << " failed at " << file << ":" << line << ": " << mpi_error_string(code);
  if (peer >= 0) os << " (peer rank " << peer << ", tag " << tag << ", " << bytes << " bytes)";
  throw TransportError(os.str(), peer, tag, call);
}
#define MPI_CHECK(call, ...) check((call), #call, __FILE__, __LINE__, ##__VA_ARGS__)

}  // namespace

namespace {
MPI_Comm comm_of(int handle) { return handle < 0 ? MPI_COMM_WORLD : MPI_Comm_f2c(handle); }
}  // namespace

MpiTransport& MpiTransport::init(int* argc, char*** argv) {
  if (g_world) return *g_world;
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    // Open MPI's TCP transport sends a message above its eager limit (64 KiB) by rendezvous:
    // the rest waits for the receiver's acknowledgement, which queues behind whatever the
    // receiver is sending the other way, so on a busy link activations and gradients take
    // turns instead of flowing both ways at once (measured on a 100 Mbit/s link: the two
    // directions active together, then both idle, each ~47 ms). Activations and gradients up to
    // 4 MiB go eagerly. A user's own setting (environment or mpirun --mca) wins.
    setenv("OMPI_MCA_btl_tcp_eager_limit", "4194304", 0);
    setenv("OMPI_MCA_btl_tcp_rndv_eager_limit", "4194304", 0);
    // The replicas' gradient sums (MPI_Iallreduce, libnbc): its default choice took 530 us per
    // 437 KB sum between 2 ranks on one machine, its ring 98 us (and MPI_Allreduce 93 us). The
    // ring is also what the byte counts assume (2(R-1)/R of the buffer out of every member: the
    // least an allreduce moves) and spreads them evenly over the links, where the default sent
    // twice as much from some ranks as from others (4 ranks over TCP).
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    if (provided < MPI_THREAD_FUNNELED) {
      throw TransportError("[mpi] MPI_Init_thread granted thread level " + std::to_string(provided) +
                           ", need MPI_THREAD_FUNNELED");
    }
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  auto* w = new MpiTransport();
  w->describe();
  g_world = w;
  return *g_world;
}

void MpiTransport::describe() {
  const MPI_Comm comm = comm_of(comm_);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  MPI_CHECK(MPI_Comm_size(comm, &size_));
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_CHECK(MPI_Get_processor_name(name, &len));
  host_.assign(name, static_cast<size_t>(len));
  // The ranks sharing this node: the shared-memory split, its members' ranks.
  MPI_Comm local;
  MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int local_size = 0;
  MPI_CHECK(MPI_Comm_size(local, &local_size));
  node_ranks_.assign(static_cast<size_t>(local_size), 0);
  MPI_CHECK(MPI_Allgather(&rank_, 1, MPI_INT, node_ranks_.data(), 1, MPI_INT, local));
  MPI_Comm_free(&local);
  std::sort(node_ranks_.begin(), node_ranks_.end());
}

MpiTransport::MpiTransport(int comm, int inter) : comm_(comm), inter_(inter) { describe(); }

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (comm_ >= 0) {
    MPI_Comm c = comm_of(comm_);
    MPI_Comm_free(&c);
  }
  if (inter_ >= 0) {
    MPI_Comm c = MPI_Comm_f2c(inter_);
    MPI_Comm_disconnect(&c);
  }
}

std::string MpiTransport::open_port() {
  char port[MPI_MAX_PORT_NAME] = {0};
  MPI_CHECK(MPI_Open_port(MPI_INFO_NULL, port));
  return port;
}

void MpiTransport::close_port(const std::string& port) { MPI_Close_port(port.c_str()); }

std::unique_ptr<MpiTransport> MpiTransport::accept(const std::string& port) {
  MPI_Comm inter, merged;
  MPI_CHECK(MPI_Comm_accept(port.c_str(), MPI_INFO_NULL, 0, comm_of(comm_), &inter));
  MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Intercomm_merge(inter, 0, &merged));
  return std::unique_ptr<MpiTransport>(new MpiTransport(MPI_Comm_c2f(merged), MPI_Comm_c2f(inter)));
}

std::unique_ptr<MpiTransport> MpiTransport::connect(const std::string& port) {
  MPI_Comm inter, merged;
  MPI_CHECK(MPI_Comm_connect(port.c_str(), MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter));
  MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Intercomm_merge(inter, 1, &merged));
  return std::unique_ptr<MpiTransport>(new MpiTransport(MPI_Comm_c2f(merged), MPI_Comm_c2f(inter)));
}

void MpiTransport::finalize() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

Request MpiTransport::isend(std::vector<uint8_t> bytes, int dest, int tag) {
  auto handle = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_Request* h = handle.get();
  Request r = make_request(std::move(handle), std::move(bytes), dest, tag, false);
  auto& buf = buffer_of(r);
  MPI_CHECK(MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_BYTE, dest, tag, comm_of(comm_), h), dest, tag,
            buf.size());
  return r;
}

Request MpiTransport::irecv(size_t bytes, int source, int tag) {
  auto handle = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
  MPI_Request* h = handle.get();
  Request r = make_request(std::move(handle), std::vector<uint8_t>(bytes), source, tag, true);
  MPI_CHECK(MPI_Irecv(buffer_of(r).data(), static_cast<int>(bytes), MPI_BYTE, source, tag, comm_of(comm_), h),
            source, tag, bytes);
  return r;
}

bool MpiTransport::test(Request& r) {
  if (!is_active(r)) return true;
  int done = 0;
  MPI_Status status;
  MPI_CHECK(MPI_Test(impl_of<MPI_Request>(r), &done, &status), r.peer(), r.tag(), r.buffer().size());
  if (!done) return false;
  int count = 0;
  if (is_receive(r)) {
    // A message longer than the posted buffer makes MPI_Test return MPI_ERR_TRUNCATE (checked
    // above); status.MPI_ERROR is not set by single-request completion calls.
    MPI_Get_count(&status, MPI_BYTE, &count);
  }
  complete(r, static_cast<size_t>(count));
  return true;
}

void MpiTransport::wait_raw(void* handle, int peer, int tag) {
  // Collectives wait like point-to-point requests (test + back-off), not in a busy MPI_Wait.
  auto pending = make_request(std::shared_ptr<void>(handle, [](void*) {}), {}, peer, tag, false);
  wait_unlimited(pending);
}

void MpiTransport::broadcast(std::vector<uint8_t>& bytes, int root) {
  if (size_ == 1) return;
  uint64_t n = bytes.size();
  MPI_Request req;
  MPI_CHECK(MPI_Ibcast(&n, 1, MPI_UINT64_T, root, comm_of(comm_), &req));
  wait_raw(&req, root, -1);
  bytes.resize(n);
  MPI_CHECK(MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_BYTE, root, comm_of(comm_), &req));
  wait_raw(&req, root, -1);
}

std::vector<std::string> MpiTransport::all_hosts() {
  char mine[MPI_MAX_PROCESSOR_NAME] = {0};
  host_.copy(mine, sizeof(mine) - 1);
  std::vector<char> all(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  MPI_CHECK(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                          comm_of(comm_)));
  std::vector<std::string> hosts;
  for (int r = 0; r < size_; ++r) hosts.emplace_back(&all[static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME]);
  return hosts;
}

// A sub-communicator of the transport's (MPI_Comm_split), freed with the group.
class MpiGroup final : public Group {
 public:
  MpiGroup(MpiTransport& transport, MPI_Comm comm) : transport_(transport), comm_(comm) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    int size = 0;
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size));
    // The members' ranks in the transport's communicator.
    MPI_Group mine, parent;
    MPI_CHECK(MPI_Comm_group(comm_, &mine));
    MPI_CHECK(MPI_Comm_group(comm_of(transport_.comm_), &parent));
    std::vector<int> own(static_cast<size_t>(size));
    for (int i = 0; i < size; ++i) own[static_cast<size_t>(i)] = i;
    members_.assign(static_cast<size_t>(size), -1);
    MPI_CHECK(MPI_Group_translate_ranks(mine, size, own.data(), parent, members_.data()));
    MPI_Group_free(&mine);
    MPI_Group_free(&parent);
  }
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  Request iallreduce_sum(std::vector<uint8_t> floats) override {
    if (floats.size() % sizeof(float) != 0) {
      throw TransportError("[mpi] allreduce of " + std::to_string(floats.size()) + " bytes: not a whole number of floats");
    }
    auto handle = std::make_shared<MPI_Request>(MPI_REQUEST_NULL);
    MPI_Request* h = handle.get();
    Request r = MpiTransport::make_request(std::move(handle), std::move(floats), -1, -1, false);
    auto& buf = MpiTransport::buffer_of(r);
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size() / sizeof(float)), MPI_FLOAT, MPI_SUM,
                             comm_, h),
              -1, -1, buf.size());
    return r;
  }

 private:
  MpiTransport& transport_;
  MPI_Comm comm_;
};

std::unique_ptr<Group> MpiTransport::split(int color, int key) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(comm_of(comm_), color < 0 ? MPI_UNDEFINED : color, key, &comm));
  if (comm == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiGroup>(*this, comm);
}

void MpiTransport::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(comm_of(comm_), code);
  std::_Exit(code);
}

}  // namespace arceus
