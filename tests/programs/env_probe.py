import os

user_var = os.environ.get("KBRIDGE_TEST_VAR", "<unset>")
grpc_resolver = os.environ.get("GRPC_DNS_RESOLVER", "<unset>")
file_var = os.environ.get("KBRIDGE_FILE_VAR", "<unset>")
print("probe", user_var, grpc_resolver, file_var)  # BREAK
