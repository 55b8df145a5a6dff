// exit_code writes to stdout and stderr, then exits with the code in argv[1].
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	printf("before exit\n");
	fprintf(stderr, "to stderr\n");
	fflush(stdout);
	return argc > 1 ? atoi(argv[1]) : 3;
}
