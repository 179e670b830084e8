/* A paced UDP flooder for bench_flood.py: one Python sender tops out near 140k datagrams/s here,
 * far below 10x the bridge's sustainable rate. Usage: flooder PORT RATE SECONDS PACKETS_FILE
 * PACKETS_FILE: 4-byte big-endian length + bytes, repeated. Sends to 127.0.0.1 only (loopback),
 * round-robin over the packets, in sendmmsg batches of 64; prints "sent SECONDS". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define MAXPKT 256

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: flooder PORT RATE SECONDS PACKETS_FILE\n"); return 2; }
    int port = atoi(argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    FILE *f = fopen(argv[4], "rb");
    if (!f) { perror(argv[4]); return 2; }
    static unsigned char data[MAXPKT][2048];
    static size_t lens[MAXPKT];
    int n = 0;
    unsigned char hdr[4];
    while (n < MAXPKT && fread(hdr, 1, 4, f) == 4) {
        size_t len = ((size_t)hdr[0] << 24) | (hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
        if (len > sizeof data[0] || fread(data[n], 1, len, f) != len) { fprintf(stderr, "bad packets file\n"); return 2; }
        lens[n++] = len;
    }
    fclose(f);
    if (n == 0) { fprintf(stderr, "no packets\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long sent = 0, total = (long)(rate * seconds);
    double t0 = now();
    while (sent < total) {
        double target = t0 + sent / rate;
        double t = now();
        if (t < target) {
            struct timespec ts = {0, (long)((target - t) * 1e9)};
            nanosleep(&ts, NULL);
            continue;
        }
        int k = total - sent < BATCH ? (int)(total - sent) : BATCH;
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < k; i++) {
            int p = (int)((sent + i) % n);
            iov[i].iov_base = data[p];
            iov[i].iov_len = lens[p];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &to;
            msgs[i].msg_hdr.msg_namelen = sizeof to;
        }
        int r = sendmmsg(s, msgs, k, 0);
        if (r > 0) sent += r;
    }
    printf("%ld %.6f\n", sent, now() - t0);
    return 0;
}
