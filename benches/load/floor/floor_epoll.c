/* The floor for the load bench (benches/load/run.py): the least a server can do per response
 * with epoll, so each real server's CPU per response can be read as a multiple of it.
 *
 *   floor_epoll PORT BIGFILE CGISCRIPT
 *
 * One thread, level-triggered epoll, non-blocking sockets on 127.0.0.1:PORT, keep-alive.
 * Every complete request head ("\r\n\r\n") in what one read(2) returned is answered; all the
 * answers to one read go out in one send(2) (pipelining: one write per batch). The request
 * line picks the answer:
 *   GET /1m.bin ...      a head, then sendfile(2) of BIGFILE (opened once), EAGAIN waits
 *                        for EPOLLOUT
 *   GET /cgi-bin/...     posix_spawn(/bin/sh CGISCRIPT) with stdout on a pipe2(O_CLOEXEC),
 *                        read to EOF, waitpid, answer what it printed (blocking: a floor of
 *                        CPU per response, not of latency)
 *   anything else        a fixed 612-byte body
 * No parsing beyond that, no logging, no timeouts: it is a probe, not a server. It runs until
 * killed. Written for this project; Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAXFD 65536
#define OUTCAP (64 * 1024)

struct conn {
    char in[16384];
    size_t inlen;
    char *out; /* pending bytes of answers (small ones and heads) */
    size_t outlen, outoff;
    off_t fileoff; /* bytes of BIGFILE still owed after `out`, from `fileoff` */
    size_t fileleft;
};

static struct conn *conns[MAXFD];
static int ep, bigfd;
static off_t bigsize;
static const char *cgi;
static char small[1024];
static size_t smalllen;
static char bighead[256];
static size_t bigheadlen;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd]->out);
    free(conns[fd]);
    conns[fd] = NULL;
}

static void append(struct conn *c, const char *p, size_t n) {
    if (c->outlen + n > OUTCAP) {
        /* The probe's buffer is fixed; a client that pipelines deeper is not its workload. */
        return;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void run_cgi(struct conn *c) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe2");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = {"/bin/sh", (char *)cgi, NULL};
    pid_t pid;
    if (posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ) != 0)
        die("posix_spawn");
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    char buf[4096];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], buf + n, sizeof buf - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf)
            break;
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
    /* The script prints its own header lines and a blank line: answer with them as the head. */
    char *body = memmem(buf, n, "\n\n", 2);
    size_t blen = body ? n - (size_t)(body + 2 - buf) : 0;
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      blen);
    append(c, head, (size_t)hl);
    if (body)
        append(c, body + 2, blen);
}

/* Push out what is owed; 0 when everything went, 1 when the socket is full, -1 on error. */
static int flush(int fd, struct conn *c) {
    while (c->outoff < c->outlen) {
        ssize_t r = send(fd, c->out + c->outoff, c->outlen - c->outoff,
                         MSG_NOSIGNAL | (c->fileleft ? MSG_MORE : 0));
        if (r < 0)
            return errno == EAGAIN ? 1 : -1;
        c->outoff += (size_t)r;
    }
    c->outoff = c->outlen = 0;
    while (c->fileleft) {
        ssize_t r = sendfile(fd, bigfd, &c->fileoff, c->fileleft);
        if (r < 0)
            return errno == EAGAIN ? 1 : -1;
        if (r == 0)
            return -1;
        c->fileleft -= (size_t)r;
    }
    return 0;
}

static void on_readable(int fd, struct conn *c) {
    /* One read per readiness event: level-triggered epoll reports what is left. */
    ssize_t r = read(fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(fd);
        return;
    }
    if (r > 0)
        c->inlen += (size_t)r;
    size_t at = 0;
    char *end;
    /* One big file at a time: requests behind it wait until it went (not the workload). */
    while (!c->fileleft && (end = memmem(c->in + at, c->inlen - at, "\r\n\r\n", 4)) != NULL) {
        const char *line = c->in + at;
        if (strncmp(line, "GET /1m.bin", 11) == 0) {
            append(c, bighead, bigheadlen);
            c->fileoff = 0;
            c->fileleft = (size_t)bigsize;
        } else if (strncmp(line, "GET /cgi-bin/", 13) == 0) {
            run_cgi(c);
        } else {
            append(c, small, smalllen);
        }
        at = (size_t)(end + 4 - c->in);
    }
    memmove(c->in, c->in + at, c->inlen - at);
    c->inlen -= at;
    int f = flush(fd, c);
    if (f < 0) {
        drop(fd);
    } else if (f) {
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT BIGFILE CGISCRIPT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* sendfile(2) has no MSG_NOSIGNAL */
    bigfd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (bigfd < 0)
        die(argv[2]);
    struct stat st;
    fstat(bigfd, &st);
    bigsize = st.st_size;
    cgi = argv[3];
    const size_t body = 612;
    smalllen = (size_t)snprintf(small, sizeof small,
                                "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/html\r\n"
                                "Content-Length: %zu\r\n\r\n",
                                body);
    memset(small + smalllen, 'x', body);
    smalllen += body;
    bigheadlen = (size_t)snprintf(bighead, sizeof bighead,
                                  "HTTP/1.1 200 OK\r\nServer: floor\r\n"
                                  "Content-Type: application/octet-stream\r\n"
                                  "Content-Length: %lld\r\n\r\n",
                                  (long long)bigsize);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0)
        die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int s;
                while ((s = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (s >= MAXFD) {
                        close(s);
                        continue;
                    }
                    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[s] = calloc(1, sizeof(struct conn));
                    conns[s]->out = malloc(OUTCAP);
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = s};
                    epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
                }
                continue;
            }
            struct conn *c = conns[fd];
            if (!c)
                continue;
            if (c->fileleft || c->outlen) {
                int f = flush(fd, c);
                if (f < 0) {
                    drop(fd);
                    continue;
                }
                if (f)
                    continue;
                struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
                if (!c->inlen)
                    continue;
            }
            on_readable(fd, c);
        }
    }
}
