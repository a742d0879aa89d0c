#include "ranks/comm.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <thread>

namespace arceus {

namespace {

Comm* g_world = nullptr;

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

// Throws MpiError naming the call, where it was made, the peer, tag and byte count.
void check(int code, const char* call, const char* file, int line, int peer = -1, int tag = -1,
           size_t bytes = 0) {
  if (code == MPI_SUCCESS) return;
  std::ostringstream os;
  os << "[mpi] " << call << " failed at " << file << ":" << line << ": " << mpi_error_string(code);
  if (peer >= 0) os << " (peer rank " << peer << ", tag " << tag << ", " << bytes << " bytes)";
  throw MpiError(os.str());
}
#define MPI_CHECK(call, ...) check((call), #call, __FILE__, __LINE__, ##__VA_ARGS__)

MPI_Request* as_mpi(void* handle) { return static_cast<MPI_Request*>(handle); }

// Spin a little (latency), then sleep with a doubling back-off (CPU).
class Backoff {
 public:
  void pause() {
    if (spins_ < 64) {
      ++spins_;
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    sleep_us_ = std::min(sleep_us_ * 2, Comm::kMaxSleepMicros);
  }

 private:
  int spins_ = 0;
  int sleep_us_ = 10;
};

}  // namespace

Request::Request(Request&& other) noexcept { *this = std::move(other); }

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    release();
    handle_ = other.handle_;
    active_ = other.active_;
    is_recv_ = other.is_recv_;
    peer_ = other.peer_;
    tag_ = other.tag_;
    received_ = other.received_;
    buffer_ = std::move(other.buffer_);
    other.handle_ = nullptr;
    other.active_ = false;
  }
  return *this;
}

void Request::release() noexcept {
  if (active_ && std::uncaught_exceptions() == 0) {
    std::fprintf(stderr, "[mpi] a pending request (peer %d, tag %d) was destroyed before completion\n",
                 peer_, tag_);
    std::abort();
  }
  delete as_mpi(handle_);
  handle_ = nullptr;
  active_ = false;
}

Request::~Request() { release(); }

Comm& Comm::init(int* argc, char*** argv) {
  if (g_world) return *g_world;
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    if (provided < MPI_THREAD_FUNNELED) {
      throw MpiError("[mpi] MPI_Init_thread granted thread level " + std::to_string(provided) +
                     ", need MPI_THREAD_FUNNELED");
    }
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  g_world = new Comm();
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_world->rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_world->size_));
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_CHECK(MPI_Get_processor_name(name, &len));
  g_world->host_.assign(name, static_cast<size_t>(len));
  MPI_Comm local;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  MPI_CHECK(MPI_Comm_size(local, &g_world->local_size_));
  MPI_CHECK(MPI_Comm_rank(local, &g_world->local_rank_));
  MPI_Comm_free(&local);
  return *g_world;
}

Comm& Comm::world() {
  if (!g_world) throw MpiError("[mpi] Comm::world() called before Comm::init()");
  return *g_world;
}

bool Comm::initialized() { return g_world != nullptr; }

void Comm::finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

Request Comm::isend(std::vector<uint8_t> bytes, int dest, int tag) {
  Request r;
  r.buffer_ = std::move(bytes);
  r.handle_ = new MPI_Request(MPI_REQUEST_NULL);
  r.peer_ = dest;
  r.tag_ = tag;
  MPI_CHECK(MPI_Isend(r.buffer_.data(), static_cast<int>(r.buffer_.size()), MPI_BYTE, dest, tag,
                      MPI_COMM_WORLD, as_mpi(r.handle_)),
            dest, tag, r.buffer_.size());
  r.active_ = true;
  return r;
}

Request Comm::irecv(size_t bytes, int source, int tag) {
  Request r;
  r.buffer_.resize(bytes);
  r.handle_ = new MPI_Request(MPI_REQUEST_NULL);
  r.peer_ = source;
  r.tag_ = tag;
  r.is_recv_ = true;
  MPI_CHECK(MPI_Irecv(r.buffer_.data(), static_cast<int>(bytes), MPI_BYTE, source, tag,
                      MPI_COMM_WORLD, as_mpi(r.handle_)),
            source, tag, bytes);
  r.active_ = true;
  return r;
}

bool Comm::test(Request& r) {
  if (!r.active_) return true;
  int done = 0;
  MPI_Status status;
  MPI_CHECK(MPI_Test(as_mpi(r.handle_), &done, &status), r.peer_, r.tag_, r.buffer_.size());
  if (!done) return false;
  if (r.is_recv_) {
    // A message longer than the posted buffer makes MPI_Test return MPI_ERR_TRUNCATE (checked
    // above); status.MPI_ERROR is not set by single-request completion calls.
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    r.received_ = static_cast<size_t>(count);
  }
  r.active_ = false;
  return true;
}

void Comm::wait(Request& r) {
  if (!r.active_) return;
  if (test(r)) return;
  const auto start = std::chrono::steady_clock::now();
  Backoff backoff;
  while (!test(r)) backoff.pause();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Comm::wait_all(std::vector<Request>& requests) {
  for (auto& r : requests) wait(r);
}

void Comm::wait_raw(void* handle, const char* what, int peer, int tag) {
  const auto start = std::chrono::steady_clock::now();
  Backoff backoff;
  int done = 0;
  while (true) {
    MPI_CHECK(MPI_Test(as_mpi(handle), &done, MPI_STATUS_IGNORE), peer, tag);
    if (done) break;
    backoff.pause();
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (void)what;
}

void Comm::broadcast(std::vector<uint8_t>& bytes, int root) {
  if (size_ == 1) return;
  uint64_t n = bytes.size();
  MPI_Request req;
  MPI_CHECK(MPI_Ibcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD, &req));
  wait_raw(&req, "broadcast size", root, -1);
  bytes.resize(n);
  MPI_CHECK(MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD, &req));
  wait_raw(&req, "broadcast data", root, -1);
}

std::vector<std::string> Comm::all_hosts() {
  char mine[MPI_MAX_PROCESSOR_NAME] = {0};
  host_.copy(mine, sizeof(mine) - 1);
  std::vector<char> all(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  MPI_CHECK(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME,
                          MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> hosts;
  for (int r = 0; r < size_; ++r) hosts.emplace_back(&all[static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME]);
  return hosts;
}

void Comm::barrier() {
  MPI_Request req;
  MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
  wait_raw(&req, "barrier", -1, -1);
}

void Comm::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace arceus
