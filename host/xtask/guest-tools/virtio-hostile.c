/*
 * virtio-hostile: a hostile driver for the system tests, run as root in a
 * Linux guest of Xenolith. It drives the virtio-blk function 0000:00:01.0
 * (unbound from Linux's driver first) through its I/O BAR and hands the
 * device model requests whose buffers, status byte or descriptor table lie
 * outside the guest's memory (beyond its RAM, and at the kernel-shared
 * pages' address given as the first argument). One result a line.
 *
 * Built by xtask (gcc -static) into the guest's initramfs; the device
 * model must refuse each request, count it, and serve on.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint16_t bar;
static void w8(int o, uint8_t v) { outb(v, bar + o); }
static void w16(int o, uint16_t v) { outw(v, bar + o); }
static void w32(int o, uint32_t v) { outl(v, bar + o); }
static uint8_t r8(int o) { return inb(bar + o); }

/* The guest-physical address of a locked page of ours. */
static uint64_t phys(void *p) {
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t e = 0;
    if (fd < 0 || pread(fd, &e, 8, ((uintptr_t)p / 4096) * 8) != 8) {
        perror("virtio-hostile: pagemap");
        exit(1);
    }
    close(fd);
    return (e & ((1ULL << 55) - 1)) * 4096 + ((uintptr_t)p & 4095);
}

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint8_t *page[3];
static uint64_t gpa[3];
static uint16_t published;

static void setup(uint64_t desc_table) {
    w8(0x14, 0);
    while (r8(0x14) != 0) {}
    w8(0x14, 1);
    w8(0x14, 3);
    w32(0x08, 1); w32(0x0c, 1); /* VERSION_1 */
    w32(0x08, 0); w32(0x0c, 0);
    w8(0x14, 0x0b);
    w16(0x16, 0);
    w16(0x18, 8);
    w32(0x20, (uint32_t)desc_table); w32(0x24, (uint32_t)(desc_table >> 32));
    w32(0x28, (uint32_t)(gpa[0] + 0x800)); w32(0x2c, (uint32_t)((gpa[0] + 0x800) >> 32));
    w32(0x30, (uint32_t)gpa[1]); w32(0x34, (uint32_t)(gpa[1] >> 32));
    w16(0x1c, 1);
    w8(0x14, 0x0f);
    memset(page[1], 0, 4096);
    published = 0;
}

/* One read of sector 0: header, 512 bytes of data, status; then waits
 * for the device model to return it. */
static void attempt(const char *what, uint64_t header, uint64_t data, uint64_t status) {
    struct desc *d = (struct desc *)page[0];
    d[0] = (struct desc){header, 16, 1, 1};
    d[1] = (struct desc){data, 512, 1 | 2, 2};
    d[2] = (struct desc){status, 1, 2, 0};
    memset(page[2], 0, 16);          /* header: a read (type 0) of sector 0 */
    page[2][0x100] = 0xee;           /* the status byte, not yet written */
    volatile uint16_t *avail = (uint16_t *)(page[0] + 0x800);
    volatile uint16_t *used_idx = (uint16_t *)(page[1] + 2);
    volatile uint32_t *used_len = (uint32_t *)(page[1] + 8 + 8 * (published % 8));
    avail[2 + published % 8] = 0;
    __sync_synchronize();
    avail[1] = ++published;
    w16(0x40, 0);
    /* Two seconds by the clock, however long a sleep really lasts (a
     * guest's timer wakes it at the host's next tick: 2,000 sleeps of a
     * millisecond took over 20 s, and minutes beside a loaded suite). */
    double until = now() + 2.0;
    while (*used_idx != published && now() < until) usleep(1000);
    if (*used_idx != published) {
        printf("virtio-hostile: %s: no answer\n", what);
    } else {
        printf("virtio-hostile: %s: returned, %u bytes, status %#x\n", what,
               *used_len, page[2][0x100]);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    uint64_t shared = argc > 1 ? strtoull(argv[1], 0, 0) : 0;
    uint64_t outside = 1ULL << 40;
    FILE *f = fopen("/sys/bus/pci/devices/0000:00:01.0/resource", "r");
    unsigned long long start = 0;
    if (!f || fscanf(f, "%llx", &start) != 1 || iopl(3) != 0) {
        perror("virtio-hostile: the function's BAR");
        return 1;
    }
    bar = (uint16_t)start;
    for (int i = 0; i < 3; i++) {
        page[i] = mmap(0, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
        memset(page[i], 0, 4096);
        gpa[i] = phys(page[i]);
    }
    setup(gpa[0]);
    attempt("a good read", gpa[2], gpa[2] + 0x800, gpa[2] + 0x100);
    attempt("header outside the guest", outside, gpa[2] + 0x800, gpa[2] + 0x100);
    attempt("data outside the guest", gpa[2], outside, gpa[2] + 0x100);
    attempt("data at the kernel-shared pages", gpa[2], shared, gpa[2] + 0x100);
    attempt("status outside the guest", gpa[2], gpa[2] + 0x800, outside);
    attempt("a good read again", gpa[2], gpa[2] + 0x800, gpa[2] + 0x100);
    setup(outside);
    attempt("descriptor table outside the guest", gpa[2], gpa[2] + 0x800, gpa[2] + 0x100);
    printf("virtio-hostile: device status %#x\n", r8(0x14));
    w8(0x14, 0);
    printf("virtio-hostile: done\n");
    return 0;
}
