/* Probe run by the Nix test checks before the tests (see nix/checks.nix and
 * nix/README.md): can this build sandbox do what the buffer manager's real
 * page I/O needs? It prints one line per capability and exits with
 *   bit 0 set: io_uring unusable (no kernel support, seccomp, or sysctl)
 *   bit 1 set: O_DIRECT read/write of a 4 KiB page in DIR unusable
 * Usage: sandbox-probe DIR
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif

static int probe_io_uring(void) {
    /* struct io_uring_params is 120 bytes; zeroed means "defaults". */
    unsigned char params[120];
    memset(params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 4, params);
    if (fd < 0) {
        printf("io_uring: unavailable (io_uring_setup: %s)\n", strerror(errno));
        return 1;
    }
    /* Some filters allow setup but not enter; submit nothing, wait for nothing. */
    long r = syscall(__NR_io_uring_enter, (int)fd, 0, 0, 0, NULL, 0);
    int err = errno;
    close((int)fd);
    if (r < 0) {
        printf("io_uring: unavailable (io_uring_enter: %s)\n", strerror(err));
        return 1;
    }
    printf("io_uring: ok\n");
    return 0;
}

static int probe_o_direct(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rime-sandbox-probe.%ld", dir, (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
    if (fd < 0) {
        printf("o_direct: unavailable in %s (open: %s)\n", dir, strerror(errno));
        return 1;
    }
    void *buf = NULL;
    int rc = 0;
    if (posix_memalign(&buf, 4096, 4096) != 0) {
        printf("o_direct: probe could not allocate an aligned buffer\n");
        rc = 1;
    } else {
        memset(buf, 0x5a, 4096);
        if (pwrite(fd, buf, 4096, 0) != 4096) {
            printf("o_direct: unavailable in %s (pwrite: %s)\n", dir, strerror(errno));
            rc = 1;
        } else if (pread(fd, buf, 4096, 0) != 4096) {
            printf("o_direct: unavailable in %s (pread: %s)\n", dir, strerror(errno));
            rc = 1;
        } else {
            printf("o_direct: ok in %s\n", dir);
        }
        free(buf);
    }
    close(fd);
    unlink(path);
    return rc;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    int rc = 0;
    if (probe_io_uring()) rc |= 1;
    if (probe_o_direct(dir)) rc |= 2;
    return rc;
}
