#include <ctype.h>
#include "hello.h"

int count_words(const char *text) {
    int n = 0, in = 0;
    for (; *text; text++) {
        if (isspace((unsigned char)*text)) in = 0;
        else if (!in) { in = 1; n++; }
    }
    return n;
}
