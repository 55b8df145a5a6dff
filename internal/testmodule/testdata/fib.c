// fib computes the recursive Fibonacci number of argv[1] (default 30) and
// prints it: a CPU-bound guest for the benchmarks.
#include <stdio.h>
#include <stdlib.h>

static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 30;
	printf("%d\n", fib(n));
	return 0;
}
