// malloc_bomb allocates (and touches) 1 MiB blocks until malloc fails, then
// says so on stderr and exits 1, as a C program that runs out of memory does.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// sink keeps the compiler from eliding the allocations.
char *volatile sink;

int main(void) {
	size_t total = 0;
	for (;;) {
		char *p = malloc(1 << 20);
		if (p == NULL) {
			fprintf(stderr, "malloc_bomb: out of memory after %zu MiB\n", total >> 20);
			return 1;
		}
		memset(p, 1, 1 << 20);
		sink = p;
		total += 1 << 20;
	}
}
