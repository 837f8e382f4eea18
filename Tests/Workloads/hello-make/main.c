#include <stdio.h>
#include "hello.h"

int main(int argc, char **argv) {
    greet(argc > 1 ? argv[1] : "world");
    printf("%d words\n", count_words("the quick brown fox jumps over the lazy dog"));
    return 0;
}
