#include <cstdio>
int main() { std::puts("klingd " KLINGD_VERSION); return 0; }
