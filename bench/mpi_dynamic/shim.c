/* The child-process design: the server (its own world, `mpirun --ompi-server URI -np N shim`)
 * never connects to a device. For each device job, rank 0 forks a job runner under its own
 * `mpirun --ompi-server URI -np 1 RUNNER` (srv.c with --rounds 1 --side 0: it opens the port
 * the device connects to) in a process group of its own, with the environment of its own
 * MPI job removed (OMPI_*, PMIX_*, ...). Rank 0 holds the devices' side channel (the stand-in
 * for their HTTP connection) and watches the runner's mpirun: the job ends when the runner
 * exits, or, when the device's side channel closes and the runner has not ended 1 s later,
 * rank 0 kills the runner's process group. After each job the server's world is checked with
 * a bounded MPI_Ibcast from rank 0. Lines: "EV shim<rank> <ms> ...". */
#include <mpi.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

extern char** environ;

static const char* opt(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

/* Unset the variables that tell a process it is a rank of the shim's own MPI job. */
static void scrub_mpi_environment(void) {
  for (int again = 1; again;) {
    again = 0;
    for (char** e = environ; *e; ++e) {
      const char* v = *e;
      if (strncmp(v, "OMPI_ALLOW_RUN_AS_ROOT", 22) == 0) continue;
      if (strncmp(v, "OMPI_", 5) == 0 || strncmp(v, "PMIX_", 5) == 0 || strncmp(v, "OPAL_", 5) == 0 ||
          strncmp(v, "ORTE_", 5) == 0) {
        char name[256];
        size_t n = strcspn(v, "=");
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, v, n);
        name[n] = 0;
        unsetenv(name);
        again = 1;
        break;
      }
    }
  }
}

int main(int argc, char** argv) {
  const char* dir = opt(argc, argv, "--dir", ".");
  const char* uri = opt(argc, argv, "--uri", "");
  const char* net = opt(argc, argv, "--mca-net", "127.0.0.0/8");
  const char* btl = opt(argc, argv, "--btl", "tcp,self");
  const char* runner = opt(argc, argv, "--runner", "./srv");
  const char* bound = opt(argc, argv, "--bound", "10");
  const int jobs = atoi(opt(argc, argv, "--jobs", "2"));

  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  static char who[32];
  snprintf(who, sizeof who, "shim%d", rank);
  g_who = who;
  start_watchdog();
  ev("PID %d", (int)getpid());
  if (rank == 0) {
    int sport = 0;
    const int lfd = side_listen(&sport);
    char text[32], path[4096];
    snprintf(text, sizeof text, "%d", sport);
    snprintf(path, sizeof path, "%s/side", dir);
    write_line_file(path, text);
    start_side_watch(lfd, 0);
  }
  for (int j = 1; j <= jobs; ++j) {
    if (rank == 0) {
      char jdir[3000], log[4096], port_file[4096], line[1024];
      snprintf(jdir, sizeof jdir, "%s/job%d", dir, j);
      mkdir(jdir, 0755);
      snprintf(log, sizeof log, "%s/runner.log", jdir);
      snprintf(port_file, sizeof port_file, "%s/port", jdir);
      const int eofs = g_side_eofs;
      phase("fork", 10);
      const pid_t pid = fork();
      if (pid == 0) {
        setsid();
        scrub_mpi_environment();
        FILE* f = freopen(log, "w", stdout);
        (void)f;
        dup2(1, 2);
        const char* args[] = {"mpirun", "--oversubscribe", "--mca", "btl", btl, "--mca", "btl_tcp_if_include", net,
                              "--mca", "oob_tcp_if_include", net, "--ompi-server", uri, "-np", "1", runner,
                              "--dir", jdir, "--rounds", "1", "--side", "0", "--merge", "1", "--bound", bound, NULL};
        execvp("mpirun", (char**)args);
        _exit(127);
      }
      ev("RUNNER started job=%d pid=%d", j, (int)pid);
      if (read_line_file(port_file, line, sizeof line, 20) == 0) ev("RUNNER ready job=%d", j);
      phase("job", 0);
      const long long t = now_ms();
      long long lost_at = 0;
      char result[256] = "";
      int status = 0;
      for (;;) {
        const pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
          if (WIFEXITED(status))
            snprintf(result, sizeof result, "runner exited %d after %lld ms", WEXITSTATUS(status), now_ms() - t);
          else
            snprintf(result, sizeof result, "runner killed by signal %d", WTERMSIG(status));
          break;
        }
        if (!lost_at && g_side_eofs > eofs) lost_at = now_ms();
        if (lost_at && now_ms() - lost_at > 1000) {
          /* the runner's mpirun group, and its MPI process (mpirun put it in a group of its own) */
          char pid_file[4096], app[32];
          snprintf(pid_file, sizeof pid_file, "%s/pid", jdir);
          kill(-pid, SIGKILL);
          if (read_line_file(pid_file, app, sizeof app, 0.1) == 0 && atoi(app) > 1) kill(-atoi(app), SIGKILL);
          waitpid(pid, &status, 0);
          snprintf(result, sizeof result,
                   "lost: the device's side channel closed and the runner had not ended 1 s later; runner group "
                   "killed");
          break;
        }
        if (now_ms() - t > (atof(bound) + 20) * 1000) {
          char pid_file[4096], app[32];
          snprintf(pid_file, sizeof pid_file, "%s/pid", jdir);
          kill(-pid, SIGKILL);
          if (read_line_file(pid_file, app, sizeof app, 0.1) == 0 && atoi(app) > 1) kill(-atoi(app), SIGKILL);
          waitpid(pid, &status, 0);
          snprintf(result, sizeof result, "stuck: runner killed after %.0f s", atof(bound) + 20);
          break;
        }
        usleep(10000);
      }
      ev("JOB %d %s", j, result);
    }
    /* the server's own world after the job */
    phase("world-ibcast", 60);
    int token = j, done = 0;
    MPI_Request req;
    int rc = MPI_Ibcast(&token, 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
    while (rc == MPI_SUCCESS && !done) {
      rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (!done) usleep(1000);
    }
    if (rc != MPI_SUCCESS) {
      ev("ERROR world MPI_Ibcast job=%d rc=%d", j, rc);
      return 4;
    }
    if (rank == 0) ev("WORLD ok job=%d", j);
  }
  phase("finalize", 20);
  MPI_Finalize();
  ev("FINALIZED; exit 0");
  return 0;
}
