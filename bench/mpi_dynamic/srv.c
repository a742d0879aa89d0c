/* The server side of the study (and, with --rounds 1 --side 0, the job runner of the
 * child-process design). Runs under `mpirun --ompi-server URI -np N`. Rank 0 opens a port
 * and writes it to DIR/port; for each round every rank of the server's world accepts one
 * device collectively (as arceus serve does today), optionally merges, rank 0 pings the
 * device, then waits for one message from it (tag 7) by MPI_Test / MPI_Wait / MPI_Iprobe,
 * bounded. A device that sends it is a clean job: both sides disconnect. A device that does
 * not (killed or stopped) is abandoned (or freed / disconnected, --dead). After each round
 * the server's world is checked with a bounded MPI_Ibcast from rank 0 (the other ranks sit
 * in it during the round, as idle server ranks would). Every line is "EV srv<rank> <ms> ...". */
#include <mpi.h>

#include "common.h"

static const char* opt(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

static const char* err_text(int rc) {
  static char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return text;
}

int main(int argc, char** argv) {
  const char* dir = opt(argc, argv, "--dir", ".");
  const int merge = atoi(opt(argc, argv, "--merge", "1"));
  /* how a clean job ends the merged communicator: free (as arceus's MpiTransport does) or
   * disconnect; the intercommunicator is always disconnected after it */
  const char* merged_end = opt(argc, argv, "--merged-end", "free");
  const char* wait = opt(argc, argv, "--wait", "test");    /* test | wait | iprobe */
  const char* errh = opt(argc, argv, "--errh", "return");  /* return | fatal */
  const char* dead = opt(argc, argv, "--dead", "abandon"); /* abandon | free | disconnect */
  const int rounds = atoi(opt(argc, argv, "--rounds", "1"));
  const double bound = atof(opt(argc, argv, "--bound", "15"));
  const double accept_bound = atof(opt(argc, argv, "--accept-bound", "30"));
  const int side = atoi(opt(argc, argv, "--side", "1"));
  const long silent = atol(opt(argc, argv, "--silent", "0"));
  /* stop waiting when the device's side channel closes (the in-process design's detector) */
  const int side_abort = atoi(opt(argc, argv, "--side-abort", "0"));
  /* after a lost device, send it this many bytes on the abandoned communicator (0: never):
   * what a stage that feeds the dead device would do next */
  const int send_after = atoi(opt(argc, argv, "--send-after", "0"));

  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  static char who[32];
  snprintf(who, sizeof who, "srv%d", rank);
  g_who = who;
  MPI_Errhandler eh = strcmp(errh, "fatal") == 0 ? MPI_ERRORS_ARE_FATAL : MPI_ERRORS_RETURN;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, eh);
  start_watchdog();
  ev("PID %d size=%d merge=%d wait=%s errh=%s dead=%s", (int)getpid(), size, merge, wait, errh, dead);

  char port[MPI_MAX_PORT_NAME] = {0};
  char path[4096];
  if (rank == 0) {
    if (side) {
      int sport = 0;
      const int lfd = side_listen(&sport);
      char text[32];
      snprintf(text, sizeof text, "%d", sport);
      snprintf(path, sizeof path, "%s/side", dir);
      write_line_file(path, text);
      start_side_watch(lfd, silent);
    }
    char mine[32];
    snprintf(mine, sizeof mine, "%d", (int)getpid());
    snprintf(path, sizeof path, "%s/pid", dir);
    write_line_file(path, mine); /* a job runner's parent kills it by this (see shim.c) */
    MPI_Open_port(MPI_INFO_NULL, port);
    snprintf(path, sizeof path, "%s/port", dir);
    write_line_file(path, port);
  }

  int failures = 0;
  for (int r = 1; r <= rounds; ++r) {
    phase("accept", accept_bound);
    ev("ACCEPTING round=%d", r);
    long long t = now_ms();
    MPI_Comm inter = MPI_COMM_NULL, comm = MPI_COMM_NULL;
    int rc = MPI_Comm_accept(port, MPI_INFO_NULL, 0, MPI_COMM_WORLD, &inter);
    if (rc != MPI_SUCCESS) {
      ev("ERROR round=%d MPI_Comm_accept rc=%d %s", r, rc, err_text(rc));
      return 3;
    }
    MPI_Comm_set_errhandler(inter, eh);
    if (merge) {
      MPI_Intercomm_merge(inter, 0, &comm);
      MPI_Comm_set_errhandler(comm, eh);
    } else {
      comm = inter;
    }
    int csize = 0;
    MPI_Comm_size(comm, &csize);
    const int peer = merge ? csize - 1 : 0; /* the device */
    ev("ACCEPTED round=%d in %lld ms", r, now_ms() - t);

    /* outcome: 0 = clean (message received), 1 = error returned, 2 = nothing within bound,
     * 3 = given up because the side channel closed */
    int outcome = 0;
    if (rank == 0) {
      int ping = r, pong = 0;
      phase("ping", 10);
      rc = MPI_Send(&ping, 1, MPI_INT, peer, 1, comm);
      if (rc == MPI_SUCCESS) rc = MPI_Recv(&pong, 1, MPI_INT, peer, 2, comm, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        ev("ERROR round=%d ping rc=%d %s", r, rc, err_text(rc));
        outcome = 1;
      } else {
        ev("PINGED round=%d", r);
      }
      int msg = 0;
      MPI_Request req = MPI_REQUEST_NULL;
      if (!outcome && strcmp(wait, "iprobe") != 0) rc = MPI_Irecv(&msg, 1, MPI_INT, peer, 7, comm, &req);
      if (!outcome) {
        ev("WAITING round=%d for tag 7 from the device (%s)", r, wait);
        t = now_ms();
        if (strcmp(wait, "wait") == 0) {
          phase("MPI_Wait", bound);
          rc = MPI_Wait(&req, MPI_STATUS_IGNORE);
          if (rc != MPI_SUCCESS) outcome = 1;
        } else {
          phase(wait, bound + 10); /* the loop bounds itself; the watchdog only catches a stuck call */
          int done = 0;
          const int eofs = g_side_eofs;
          while (!done && now_ms() - t < (long long)(bound * 1000)) {
            if (side_abort && g_side_eofs > eofs) {
              outcome = 3;
              break;
            }
            if (strcmp(wait, "iprobe") == 0) {
              rc = MPI_Iprobe(peer, 7, comm, &done, MPI_STATUS_IGNORE);
              if (rc == MPI_SUCCESS && done) rc = MPI_Recv(&msg, 1, MPI_INT, peer, 7, comm, MPI_STATUS_IGNORE);
            } else {
              rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            }
            if (rc != MPI_SUCCESS) {
              outcome = 1;
              break;
            }
            if (!done) usleep(1000);
          }
          if (!outcome && !done) outcome = 2;
        }
        if (outcome == 0) ev("RECEIVED round=%d after %lld ms", r, now_ms() - t);
        if (outcome == 1) ev("ERROR round=%d %s rc=%d \"%s\" after %lld ms", r, wait, rc, err_text(rc), now_ms() - t);
        if (outcome == 2) ev("NOTHING round=%d: no message, no error within %.0f s", r, bound);
        if (outcome == 3) ev("LOST round=%d: side channel closed, wait given up after %lld ms", r, now_ms() - t);
        if (outcome && send_after > 0) {
          /* a send to the dead device on the abandoned communicator, tested for up to 5 s */
          phase("send-after", 15);
          char* buf = calloc((size_t)send_after, 1);
          MPI_Request sreq;
          const long long ts = now_ms();
          rc = MPI_Isend(buf, send_after, MPI_BYTE, peer, 9, comm, &sreq);
          int sdone = 0;
          while (rc == MPI_SUCCESS && !sdone && now_ms() - ts < 5000) {
            rc = MPI_Test(&sreq, &sdone, MPI_STATUS_IGNORE);
            if (!sdone) usleep(1000);
          }
          if (rc != MPI_SUCCESS) ev("SEND-AFTER round=%d %d bytes: error rc=%d \"%s\" after %lld ms", r, send_after, rc, err_text(rc), now_ms() - ts);
          else if (sdone) ev("SEND-AFTER round=%d %d bytes: completed after %lld ms", r, send_after, now_ms() - ts);
          else ev("SEND-AFTER round=%d %d bytes: still pending after 5 s (left posted)", r, send_after);
        }
      }
    }
    /* The server's world: rank 0 tells the others the outcome (they wait here meanwhile). */
    phase("world-ibcast", bound + 20);
    MPI_Request breq;
    t = now_ms();
    rc = MPI_Ibcast(&outcome, 1, MPI_INT, 0, MPI_COMM_WORLD, &breq);
    int done = 0;
    while (rc == MPI_SUCCESS && !done) {
      rc = MPI_Test(&breq, &done, MPI_STATUS_IGNORE);
      if (!done) usleep(1000);
    }
    if (rc != MPI_SUCCESS) {
      ev("ERROR round=%d world MPI_Ibcast rc=%d %s", r, rc, err_text(rc));
      return 4;
    }
    if (rank == 0) ev("WORLD ok round=%d (Ibcast over the server's world)", r);

    if (outcome == 0) {
      phase("disconnect", 20);
      t = now_ms();
      if (merge) rc = strcmp(merged_end, "free") == 0 ? MPI_Comm_free(&comm) : MPI_Comm_disconnect(&comm);
      if (rc == MPI_SUCCESS) rc = MPI_Comm_disconnect(&inter);
      ev("DISCONNECTED round=%d rc=%d in %lld ms", r, rc, now_ms() - t);
    } else {
      ++failures;
      if (strcmp(dead, "free") == 0) {
        phase("free-dead", 20);
        t = now_ms();
        if (merge) MPI_Comm_free(&comm);
        rc = MPI_Comm_free(&inter);
        ev("FREED dead round=%d rc=%d in %lld ms", r, rc, now_ms() - t);
      } else if (strcmp(dead, "disconnect") == 0) {
        phase("disconnect-dead", 20);
        t = now_ms();
        if (merge) MPI_Comm_disconnect(&comm);
        rc = MPI_Comm_disconnect(&inter);
        ev("DISCONNECTED dead round=%d rc=%d in %lld ms", r, rc, now_ms() - t);
      } else {
        ev("ABANDONED round=%d (the communicator is never touched again)", r);
      }
    }
  }
  if (rank == 0) MPI_Close_port(port);
  phase("finalize", 20);
  const long long t = now_ms();
  MPI_Finalize();
  ev("FINALIZED in %lld ms; exit %d", now_ms() - t, failures ? 5 : 0);
  return failures ? 5 : 0;
}
