/* Shared helpers of the dynamic-process study: wall-clock stamps, one-line events, a
 * watchdog that bounds every phase, and a plain TCP "side channel" (the stand-in for the
 * device's HTTP connection to the server). MPI and POSIX only. */
#ifndef STUDY_COMMON_H
#define STUDY_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds since the epoch (CLOCK_REALTIME), comparable across processes and with
 * `date +%s%3N` in run.sh. */
static inline long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char* g_who = "?";

/* One event line: "EV <who> <ms> <text>", flushed at once (run.sh greps these). */
static inline void ev(const char* fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  printf("EV %s %lld %s\n", g_who, now_ms(), text);
  fflush(stdout);
}

/* The watchdog: a thread that ends the process (exit 124) when the current phase outlives
 * its bound, after printing which phase it was. It never calls MPI. */
static volatile long long g_deadline = 0; /* ms; 0 = no bound */
static const char* volatile g_phase = "start";
static inline void phase(const char* name, double seconds) {
  g_phase = name;
  g_deadline = seconds > 0 ? now_ms() + (long long)(seconds * 1000) : 0;
}
static void* watchdog_main(void* arg) {
  (void)arg;
  for (;;) {
    usleep(20000);
    const long long d = g_deadline;
    if (d && now_ms() > d) {
      ev("TIMEOUT phase=%s (bound passed: the call never returned)", g_phase);
      _exit(124);
    }
  }
  return NULL;
}
static inline void start_watchdog(void) {
  pthread_t t;
  pthread_create(&t, NULL, watchdog_main, NULL);
  pthread_detach(t);
}

/* Side channel: the server listens on 127.0.0.1:<ephemeral>, the device connects and keeps
 * the connection open; a thread of the server reports when it reads EOF/error (the kernel
 * closes a killed process's sockets) or, with a heartbeat, when the peer falls silent. */
static inline int side_listen(int* port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(s, (struct sockaddr*)&a, sizeof a) != 0 || listen(s, 16) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(s, (struct sockaddr*)&a, &len);
  *port = ntohs(a.sin_port);
  return s;
}
static inline int side_connect(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  if (connect(s, (struct sockaddr*)&a, sizeof a) != 0) return -1;
  return s;
}

/* Device side heartbeat: one byte every period_ms (0 = none: the connection alone). */
static void* heartbeat_main(void* arg) {
  long* p = (long*)arg;
  const int fd = (int)p[0];
  const long period = p[1];
  for (;;) {
    usleep((useconds_t)period * 1000);
    if (send(fd, "h", 1, MSG_NOSIGNAL) != 1) return NULL;
  }
  return NULL;
}
static inline void start_heartbeat(int fd, long period_ms) {
  static long args[2];
  args[0] = fd;
  args[1] = period_ms;
  if (period_ms <= 0) return;
  pthread_t t;
  pthread_create(&t, NULL, heartbeat_main, args);
  pthread_detach(t);
}

/* Server side: accepts one connection per device, then reports "SIDE eof" (connection
 * closed) or "SIDE silent" (no heartbeat byte for silent_ms, when silent_ms > 0). */
static volatile int g_side_eofs = 0;          /* connections that ended so far */
static volatile long long g_side_last_eof = 0; /* when the last one ended (ms) */
struct side_watch {
  int listen_fd;
  long silent_ms;
};
static void* side_watch_main(void* arg) {
  struct side_watch* w = (struct side_watch*)arg;
  for (int n = 1;; ++n) {
    int fd = accept(w->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    ev("SIDE connected device=%d", n);
    long long last = now_ms();
    int silent_reported = 0;
    for (;;) {
      struct pollfd p = {fd, POLLIN, 0};
      int r = poll(&p, 1, 50);
      if (r > 0) {
        char buf[64];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) {
          ev("SIDE eof device=%d (%s)", n, k == 0 ? "orderly close" : strerror(errno));
          g_side_last_eof = now_ms();
          g_side_eofs = g_side_eofs + 1;
          close(fd);
          break;
        }
        last = now_ms();
      } else if (w->silent_ms > 0 && !silent_reported && now_ms() - last > w->silent_ms) {
        ev("SIDE silent device=%d (no heartbeat for %ld ms)", n, w->silent_ms);
        silent_reported = 1;
      }
    }
  }
  return NULL;
}
static inline void start_side_watch(int listen_fd, long silent_ms) {
  static struct side_watch w;
  w.listen_fd = listen_fd;
  w.silent_ms = silent_ms;
  pthread_t t;
  pthread_create(&t, NULL, side_watch_main, &w);
  pthread_detach(t);
}

/* Wait (bounded) for a file to exist and hold one non-empty line; returns it in buf. */
static inline int read_line_file(const char* path, char* buf, size_t n, double seconds) {
  const long long end = now_ms() + (long long)(seconds * 1000);
  while (now_ms() < end) {
    FILE* f = fopen(path, "r");
    if (f) {
      buf[0] = 0;
      if (fgets(buf, (int)n, f)) {
        size_t l = strlen(buf);
        while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r')) buf[--l] = 0;
      }
      fclose(f);
      if (buf[0]) return 0;
    }
    usleep(20000);
  }
  return -1;
}
static inline void write_line_file(const char* path, const char* line) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE* f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "%s\n", line);
  fclose(f);
  rename(tmp, path);
}

#endif
