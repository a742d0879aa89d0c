#include "launcher/rendezvous.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace arceus {

namespace {

constexpr const char* kUriVar = "ARCEUS_OMPI_SERVER";  // the rendezvous, set for the re-executed server

pid_t g_child = -1;
void forward(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

std::string read_uri(const std::string& path) {
  std::ifstream in(path);
  std::string uri;
  std::getline(in, uri);
  return uri;
}

bool under_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (std::getenv(v)) return true;
  return false;
}

pid_t spawn(std::vector<std::string> args, bool die_with_parent) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  if (die_with_parent) prctl(PR_SET_PDEATHSIG, SIGTERM);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  execvp(cargs[0], cargs.data());
  std::fprintf(stderr, "error: [serve] cannot run %s: %s\n", cargs[0], std::strerror(errno));
  std::_Exit(127);
}

}  // namespace

// The network (a.b.c.d/prefix) of this machine's interface that holds `host`, "" if none.
std::string network_of(const std::string& host) {
  in_addr want{};
  if (inet_pton(AF_INET, host.c_str(), &want) != 1) return "";
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string net;
  for (ifaddrs* i = list; i && net.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != AF_INET) continue;
    const auto a = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
    const auto m = reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr;
    if (a != want.s_addr) continue;
    in_addr base{};
    base.s_addr = a & m;
    char text[INET_ADDRSTRLEN] = {0};
    inet_ntop(AF_INET, &base, text, sizeof text);
    net = std::string(text) + "/" + std::to_string(__builtin_popcount(ntohl(m)));
  }
  freeifaddrs(list);
  return net;
}

std::vector<std::string> network_mca(const std::string& host) {
  std::string net;
  if (host.rfind("127.", 0) == 0 || host == "localhost") {
    net = "127.0.0.0/8";
  } else if (host != "0.0.0.0" && !host.empty()) {
    net = network_of(host);  // the server's LAN, which the devices' interfaces are on too
  }
  if (net.empty()) return {};
  return {"oob_tcp_if_include=" + net, "btl_tcp_if_include=" + net};
}

int serve_under_mpirun_if_needed(const std::string& host, const std::string& uri_option, char** argv) {
  if (under_launcher() || !uri_option.empty()) return -1;
  const std::string dir = (std::filesystem::temp_directory_path() / ("arceus-rendezvous-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/ompi-server.uri";
  std::vector<std::string> server{"ompi-server", "--no-daemonize", "-r", file};
  for (const auto& m : network_mca(host)) {
    if (m.rfind("oob_", 0) != 0) continue;
    const size_t eq = m.find('=');
    server.insert(server.end(), {"--mca", m.substr(0, eq), m.substr(eq + 1)});
  }
  const pid_t rendezvous = spawn(server, true);
  std::string uri;
  for (int i = 0; i < 200 && uri.empty(); ++i) {  // up to 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    int status = 0;
    if (waitpid(rendezvous, &status, WNOHANG) == rendezvous) break;
    uri = read_uri(file);
  }
  if (uri.empty()) {
    kill(rendezvous, SIGTERM);
    std::fprintf(stderr, "error: [serve] ompi-server (Open MPI's rendezvous for devices) did not start\n");
    return 1;
  }
  std::vector<std::string> mpirun{"mpirun"};
  if (getuid() == 0) mpirun.push_back("--allow-run-as-root");
  for (const auto& m : network_mca(host)) {
    const size_t eq = m.find('=');
    mpirun.insert(mpirun.end(), {"--mca", m.substr(0, eq), m.substr(eq + 1)});
  }
  mpirun.insert(mpirun.end(), {"--ompi-server", uri, "-np", "1"});
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  mpirun.push_back(n > 0 ? std::string(self, size_t(n)) : std::string(argv[0]));
  for (char** a = argv + 1; *a; ++a) mpirun.push_back(*a);
  setenv(kUriVar, uri.c_str(), 1);
  std::fflush(stdout);
  g_child = spawn(mpirun, false);
  std::signal(SIGINT, forward);
  std::signal(SIGTERM, forward);
  int status = 0;
  while (waitpid(g_child, &status, 0) < 0 && errno == EINTR) {
  }
  kill(rendezvous, SIGTERM);
  waitpid(rendezvous, nullptr, 0);
  std::filesystem::remove_all(dir);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

Rendezvous server_rendezvous(const std::string& host, const std::string& uri_option) {
  Rendezvous r;
  if (!uri_option.empty()) {
    r.uri = uri_option.rfind("file:", 0) == 0 ? read_uri(uri_option.substr(5)) : uri_option;
  } else if (const char* v = std::getenv(kUriVar)) {
    r.uri = v;
  }
  if (!r.uri.empty()) r.mca = network_mca(host);
  return r;
}

}  // namespace arceus
