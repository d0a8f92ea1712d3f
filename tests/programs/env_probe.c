#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *user_var = getenv("KBRIDGE_TEST_VAR");
    const char *grpc_resolver = getenv("GRPC_DNS_RESOLVER");
    const char *file_var = getenv("KBRIDGE_FILE_VAR");
    printf("probe %s %s %s\n", user_var, grpc_resolver, file_var); /* BREAK */
    return 0;
}
