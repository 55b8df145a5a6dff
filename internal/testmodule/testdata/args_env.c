// args_env prints its argv, one per line as "argv[i]=...", then its
// environment as "env K=V", then whether the clocks and random work.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
	for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
	for (char **e = environ; *e; e++) printf("env %s\n", *e);
	struct timespec wall, mono1, mono2;
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &mono1);
	clock_gettime(CLOCK_MONOTONIC, &mono2);
	printf("wall_after_2020=%d\n", wall.tv_sec > 1577836800);
	printf("monotonic_ok=%d\n", mono2.tv_sec > mono1.tv_sec || (mono2.tv_sec == mono1.tv_sec && mono2.tv_nsec >= mono1.tv_nsec));
	unsigned char r1[16], r2[16];
	getentropy(r1, sizeof r1);
	getentropy(r2, sizeof r2);
	printf("random_differs=%d\n", memcmp(r1, r2, sizeof r1) != 0);
	return 0;
}
