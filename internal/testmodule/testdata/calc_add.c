// calc_add reads two integers from stdin and prints their sum; with fewer
// than two it explains itself on stderr and exits 1.
#include <stdio.h>

int main(void) {
	long long a, b;
	if (scanf("%lld %lld", &a, &b) != 2) {
		fprintf(stderr, "calc_add: expected two integers on stdin, e.g. \"5 3\"\n");
		return 1;
	}
	printf("%lld\n", a + b);
	return 0;
}
