/* A device of the study. Runs under its own `mpirun --ompi-server URI -np 1`. Reads the
 * server's port from DIR/port (and the side-channel port from SIDE_FILE), connects a plain TCP
 * "side channel" (the stand-in for its HTTP connection; optional heartbeat), then for each
 * job: MPI_Comm_connect, optional merge, answers the ping. The last job's --act decides:
 *   clean: send tag 7, MPI_Comm_disconnect, and (after the last job) MPI_Finalize, exit 0;
 *   die:   stop here and sleep until run.sh kills it (SIGKILL) or stops it (SIGSTOP).
 * Earlier jobs are always clean (a device that stays for the next job reconnects). */
#include <mpi.h>

#include "common.h"

static const char* opt(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

#include <signal.h>

static void* suicide_main(void* arg) {
  usleep((useconds_t)(long)arg * 1000);
  ev("SUICIDE (SIGKILL to itself)");
  kill(getpid(), SIGKILL);
  return NULL;
}
static void start_suicide(long ms) {
  pthread_t t;
  pthread_create(&t, NULL, suicide_main, (void*)ms);
  pthread_detach(t);
}

int main(int argc, char** argv) {
  const char* dir = opt(argc, argv, "--dir", ".");
  const char* side_file = opt(argc, argv, "--side-file", "");
  const int merge = atoi(opt(argc, argv, "--merge", "1"));
  /* how a clean job ends the merged communicator: free (as arceus's MpiTransport does) or
   * disconnect; the intercommunicator is always disconnected after it */
  const char* merged_end = opt(argc, argv, "--merged-end", "free");
  const char* act = opt(argc, argv, "--act", "clean");
  const int jobs = atoi(opt(argc, argv, "--jobs", "1"));
  const long hb = atol(opt(argc, argv, "--hb", "0"));
  g_who = opt(argc, argv, "--name", "dev");
  /* kill itself (SIGKILL) this many ms after entering MPI_Comm_connect of job 1: a device
   * that dies in the middle of the handshake (-1: never) */
  const long suicide = atol(opt(argc, argv, "--suicide-ms", "-1"));

  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  start_watchdog();
  ev("PID %d PGID %d", (int)getpid(), (int)getpgrp());

  char port[MPI_MAX_PORT_NAME + 1], path[4096], line[64];
  snprintf(path, sizeof path, "%s/port", dir);
  if (read_line_file(path, port, sizeof port, 20) != 0) {
    ev("ERROR no port in %s", path);
    return 2;
  }
  if (side_file[0] && read_line_file(side_file, line, sizeof line, 20) == 0) {
    const int fd = side_connect(atoi(line));
    if (fd < 0) ev("ERROR side channel connect: %s", strerror(errno));
    start_heartbeat(fd, hb);
  }
  for (int j = 1; j <= jobs; ++j) {
    const int last = j == jobs;
    phase("connect", 30);
    if (j == 1 && suicide >= 0) start_suicide(suicide);
    ev("CONNECTING job=%d", j);
    long long t = now_ms();
    MPI_Comm inter = MPI_COMM_NULL, comm = MPI_COMM_NULL;
    int rc = MPI_Comm_connect(port, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter);
    if (rc != MPI_SUCCESS) {
      ev("ERROR job=%d MPI_Comm_connect rc=%d", j, rc);
      return 3;
    }
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    if (merge) {
      MPI_Intercomm_merge(inter, 1, &comm);
      MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    } else {
      comm = inter;
    }
    ev("CONNECTED job=%d in %lld ms", j, now_ms() - t);
    phase("ping", 10);
    int ping = 0;
    rc = MPI_Recv(&ping, 1, MPI_INT, 0, 1, comm, MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS) rc = MPI_Send(&ping, 1, MPI_INT, 0, 2, comm);
    if (rc != MPI_SUCCESS) {
      ev("ERROR job=%d ping rc=%d", j, rc);
      return 3;
    }
    if (last && strcmp(act, "die") == 0) {
      phase("armed", 0);
      ev("ARMED job=%d (waiting to be killed)", j);
      for (;;) pause();
    }
    int msg = 7;
    rc = MPI_Send(&msg, 1, MPI_INT, 0, 7, comm);
    phase("disconnect", 20);
    t = now_ms();
    if (merge) rc = strcmp(merged_end, "free") == 0 ? MPI_Comm_free(&comm) : MPI_Comm_disconnect(&comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_disconnect(&inter);
    ev("DISCONNECTED job=%d rc=%d in %lld ms", j, rc, now_ms() - t);
  }
  phase("finalize", 20);
  const long long t = now_ms();
  MPI_Finalize();
  ev("FINALIZED in %lld ms; exit 0", now_ms() - t);
  return 0;
}
