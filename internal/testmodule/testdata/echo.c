// echo prints stdin with leading and trailing white space trimmed.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	size_t start = 0, end = len;
	while (start < end && isspace((unsigned char)buf[start])) start++;
	while (end > start && isspace((unsigned char)buf[end - 1])) end--;
	fwrite(buf + start, 1, end - start, stdout);
	return 0;
}
