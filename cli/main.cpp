#include <cstdio>
int main() { std::puts("klingctl " KLINGD_VERSION); return 0; }
