package main

import (
	"fmt"
	"os"
)

func main() {
	userVar := os.Getenv("KBRIDGE_TEST_VAR")
	grpcResolver := os.Getenv("GRPC_DNS_RESOLVER")
	fileVar := os.Getenv("KBRIDGE_FILE_VAR")
	fmt.Println("probe", userVar, grpcResolver, fileVar) // BREAK
}
