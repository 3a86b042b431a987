/* The io_uring floor for the load bench (benches/load/run.py): the least a completion-model
 * server does per small response, so a real server's CPU per response reads as a multiple.
 *
 *   floor_uring PORT
 *
 * Raw syscalls (no liburing): one ring (SINGLE_ISSUER | DEFER_TASKRUN when the kernel takes
 * them), a multishot accept, and per connection a recv into its own buffer; every complete
 * request head in what one recv returned is answered with a fixed 612-byte body, all of them
 * in ONE send (pipelining: one send per batch); when the send completed, the recv is armed
 * again. Each loop turn is one io_uring_enter that submits and waits. No parsing, no logging,
 * no timeouts: a probe, not a server. Runs until killed. Written for this project; Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXFD 65536
#define OUTCAP (64 * 1024)
#define ENTRIES 1024

enum { T_ACCEPT = 1, T_RECV = 2, T_SEND = 3 };

struct conn {
    char in[16384];
    size_t inlen;
    char out[OUTCAP];
    size_t outlen, outoff;
};

static struct conn *conns[MAXFD];
static int ring, ls;
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static unsigned to_submit;
static char small[1024];
static size_t smalllen;
static int multishot_accept = 1;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int enter(unsigned submit, unsigned wait) {
    return (int)syscall(__NR_io_uring_enter, ring, submit, wait, IORING_ENTER_GETEVENTS, NULL, 0);
}

static struct io_uring_sqe *sqe(void) {
    unsigned tail = *sq_tail;
    if (tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE) > *sq_mask) {
        /* Full: hand what is queued to the kernel first. */
        enter(to_submit, 0);
        to_submit = 0;
    }
    unsigned i = tail & *sq_mask;
    struct io_uring_sqe *e = &sqes[i];
    memset(e, 0, sizeof *e);
    sq_array[i] = i;
    __atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
    to_submit++;
    return e;
}

static void arm_accept(void) {
    struct io_uring_sqe *e = sqe();
    e->opcode = IORING_OP_ACCEPT;
    e->fd = ls;
    e->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    e->ioprio = multishot_accept ? IORING_ACCEPT_MULTISHOT : 0;
    e->user_data = T_ACCEPT;
}

static void arm_recv(int fd) {
    struct conn *c = conns[fd];
    struct io_uring_sqe *e = sqe();
    e->opcode = IORING_OP_RECV;
    e->fd = fd;
    e->addr = (unsigned long)(c->in + c->inlen);
    e->len = (unsigned)(sizeof c->in - c->inlen);
    e->user_data = ((unsigned long long)fd << 8) | T_RECV;
}

static void arm_send(int fd) {
    struct conn *c = conns[fd];
    struct io_uring_sqe *e = sqe();
    e->opcode = IORING_OP_SEND;
    e->fd = fd;
    e->addr = (unsigned long)(c->out + c->outoff);
    e->len = (unsigned)(c->outlen - c->outoff);
    e->msg_flags = MSG_NOSIGNAL;
    e->user_data = ((unsigned long long)fd << 8) | T_SEND;
}

static void drop(int fd) {
    close(fd);
    free(conns[fd]);
    conns[fd] = NULL;
}

static void on_cqe(unsigned long long ud, int res, unsigned flags) {
    int fd = (int)(ud >> 8);
    switch (ud & 0xff) {
    case T_ACCEPT:
        if (res >= 0) {
            if (res >= MAXFD) {
                close(res);
            } else {
                int one = 1;
                setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conns[res] = calloc(1, sizeof(struct conn));
                arm_recv(res);
            }
        } else if (res == -EINVAL && multishot_accept) {
            multishot_accept = 0; /* a kernel before 5.19 */
        }
        if (!(flags & IORING_CQE_F_MORE))
            arm_accept();
        break;
    case T_RECV: {
        struct conn *c = conns[fd];
        if (res <= 0) {
            drop(fd);
            break;
        }
        c->inlen += (size_t)res;
        size_t at = 0;
        char *end;
        while ((end = memmem(c->in + at, c->inlen - at, "\r\n\r\n", 4)) != NULL) {
            if (c->outlen + smalllen <= OUTCAP) {
                memcpy(c->out + c->outlen, small, smalllen);
                c->outlen += smalllen;
            }
            at = (size_t)(end + 4 - c->in);
        }
        memmove(c->in, c->in + at, c->inlen - at);
        c->inlen -= at;
        if (c->outlen)
            arm_send(fd);
        else
            arm_recv(fd);
        break;
    }
    case T_SEND: {
        struct conn *c = conns[fd];
        if (res <= 0) {
            drop(fd);
            break;
        }
        c->outoff += (size_t)res;
        if (c->outoff < c->outlen) {
            arm_send(fd);
        } else {
            c->outoff = c->outlen = 0;
            arm_recv(fd);
        }
        break;
    }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    const size_t body = 612;
    smalllen = (size_t)snprintf(small, sizeof small,
                                "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/html\r\n"
                                "Content-Length: %zu\r\n\r\n",
                                body);
    memset(small + smalllen, 'x', body);
    smalllen += body;

    ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0)
        die("listen");

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    ring = (int)syscall(__NR_io_uring_setup, ENTRIES, &p);
    if (ring < 0) {
        memset(&p, 0, sizeof p);
        ring = (int)syscall(__NR_io_uring_setup, ENTRIES, &p);
    }
    if (ring < 0)
        die("io_uring_setup");
    size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
        fprintf(stderr, "floor_uring: kernel without IORING_FEAT_SINGLE_MMAP (before 5.4)\n");
        return 1;
    }
    size_t sz = sqsz > cqsz ? sqsz : cqsz;
    char *sq = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED)
        die("mmap sq");
    char *cq = sq;
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sqes == MAP_FAILED)
        die("mmap sqes");
    sq_head = (unsigned *)(sq + p.sq_off.head);
    sq_tail = (unsigned *)(sq + p.sq_off.tail);
    sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    sq_array = (unsigned *)(sq + p.sq_off.array);
    cq_head = (unsigned *)(cq + p.cq_off.head);
    cq_tail = (unsigned *)(cq + p.cq_off.tail);
    cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

    arm_accept();
    for (;;) {
        int r = enter(to_submit, 1);
        if (r < 0 && errno != EINTR && errno != EBUSY && errno != EAGAIN)
            die("io_uring_enter");
        if (r > 0)
            to_submit -= (unsigned)r < to_submit ? (unsigned)r : to_submit;
        unsigned head = *cq_head;
        unsigned tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        while (head != tail) {
            struct io_uring_cqe *c = &cqes[head & *cq_mask];
            unsigned long long ud = c->user_data;
            int res = c->res;
            unsigned flags = c->flags;
            head++;
            __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
            on_cqe(ud, res, flags);
            tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        }
    }
}
