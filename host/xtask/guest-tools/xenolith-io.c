/*
 * xenolith-io: the I/O side of `cargo xtask bench linux`, run inside the
 * Linux guest (built by xtask with gcc -static into its initramfs).
 *
 *   randread DEV SECONDS   4 KiB O_DIRECT reads at random places, one at a
 *                          time (queue depth 1); prints the reads a second
 *   sink PORT              each connection: reads to its end, answers the
 *                          byte count
 *   source PORT BYTES      each connection: sends BYTES, then closes
 *   echo PORT              each connection: sends back what it reads
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int randread(const char *dev, int seconds) {
    int fd = open(dev, O_RDONLY | O_DIRECT);
    unsigned long long bytes = 0;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
        perror("xenolith-io: randread");
        return 1;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, 4096) != 0) return 1;
    unsigned long long blocks = bytes / 4096, x = 88172645463325252ULL, n = 0;
    double end = now() + seconds, start = now();
    while (now() < end) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (pread(fd, buf, 4096, (off_t)(x % blocks) * 4096) != 4096) {
            perror("xenolith-io: read");
            return 1;
        }
        n++;
    }
    printf("xenolith-linux: iobench randread %.0f IOPS\n", n / (now() - start));
    return 0;
}

static int listener(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) {
        perror("xenolith-io: listen");
        exit(1);
    }
    /* The host connects only once it has read this line. */
    printf("xenolith-linux: iobench listening on port %d\n", port);
    fflush(stdout);
    return s;
}

static char buf[1 << 16];

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "randread")) return randread(argv[2], atoi(argv[3]));
    if (argc < 3) {
        fprintf(stderr, "usage: xenolith-io randread|sink|source|echo ...\n");
        return 2;
    }
    int s = listener(atoi(argv[2]));
    for (;;) {
        int c = accept(s, 0, 0), one = 1;
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!strcmp(argv[1], "sink")) {
            unsigned long long total = 0;
            ssize_t n;
            while ((n = read(c, buf, sizeof buf)) > 0) total += n;
            dprintf(c, "%llu\n", total);
        } else if (!strcmp(argv[1], "source") && argc >= 4) {
            unsigned long long left = strtoull(argv[3], 0, 0);
            while (left > 0) {
                ssize_t n = write(c, buf, left < sizeof buf ? left : sizeof buf);
                if (n <= 0) break;
                left -= n;
            }
        } else if (!strcmp(argv[1], "echo")) {
            ssize_t n;
            while ((n = read(c, buf, sizeof buf)) > 0)
                if (write(c, buf, n) != n) break;
        }
        close(c);
    }
}
