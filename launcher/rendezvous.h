// Open MPI's rendezvous for devices joining a running server: ompi-server. MPI_Comm_connect /
// MPI_Comm_accept between separately launched jobs needs both mpiruns to know one ompi-server.
#pragma once

#include <string>
#include <vector>

namespace arceus {

struct Rendezvous {
  std::string uri;               // the ompi-server's contact URI ("" = devices cannot join)
  std::vector<std::string> mca;  // KEY=VALUE: the interfaces every mpirun of the job must use
};

// The MCA parameters that keep Open MPI's out-of-band and TCP traffic on the network of the
// address the server binds (127.0.0.1 -> 127.0.0.0/8; an interface's address -> that
// interface's network, e.g. 10.77.0.0/24; 0.0.0.0 or an unknown address -> no restriction).
std::vector<std::string> network_mca(const std::string& host);

// `arceus serve` started without mpirun (the original's `python -m api.server`): starts
// ompi-server on the network of `host`, runs this very command under `mpirun --ompi-server
// URI -np 1`, forwards SIGINT/SIGTERM to it, waits, stops ompi-server and returns mpirun's exit
// status. Returns -1 (and does nothing) under a launcher already, or when `uri_option` names a
// rendezvous the user runs.
int serve_under_mpirun_if_needed(const std::string& host, const std::string& uri_option, char** argv);

// Inside the server: the rendezvous handed to devices: `uri_option` (--ompi-server; "file:F"
// is read), else the one serve_under_mpirun_if_needed started.
Rendezvous server_rendezvous(const std::string& host, const std::string& uri_option);

}  // namespace arceus
