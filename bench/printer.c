/* The load campaign's job (bench/load.py): `printer START LINES EVERY_MS` writes `<index> <time>`
 * every EVERY_MS milliseconds from the Unix time START, each line with one write(2). Compiled
 * where a C compiler is found: 50 Python loops waking 200 times a second take ~0.65 core of a
 * 2-core machine (CPU the server and the clients then lack), this ~0.15; the server gets the same
 * bytes either way. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: printer START LINES EVERY_MS\n");
        return 2;
    }
    double start = atof(argv[1]), every = atof(argv[3]) / 1000;
    long lines = atol(argv[2]);
    char line[64];
    for (long i = 0; i < lines; i++) {
        double delay = start + i * every - now();
        if (delay > 0) {
            struct timespec pause = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
            nanosleep(&pause, NULL);
        }
        int n = snprintf(line, sizeof line, "%ld %.17g\n", i, now());
        if (write(1, line, n) != n)
            return 1;
    }
    return 0;
}
