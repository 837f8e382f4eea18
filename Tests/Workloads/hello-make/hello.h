#ifndef HELLO_H
#define HELLO_H
void greet(const char *who);
int count_words(const char *text);
#endif
