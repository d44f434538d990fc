/* Prints the first N primes (N from the command line, default 10). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10;
    long found = 0;
    for (long c = 2; found < n; c++) {
        int prime = 1;
        for (long d = 2; d * d <= c; d++) {
            if (c % d == 0) {
                prime = 0;
                break;
            }
        }
        if (prime) {
            printf("%s%ld", found ? " " : "", c);
            found++;
        }
    }
    printf("\n");
    return 0;
}
