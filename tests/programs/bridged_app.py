"""A stand-in for the developer's service: answers GET / with what it sees of the
cluster (a secret from the pod's env, and a call to stats-api through the service
variables and, when set, by name)."""
import http.server
import json
import os
import urllib.request

PORT = int(os.environ.get("APP_PORT", "8080"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = os.environ.get("STATS_API_SERVICE_HOST", "")
        port = os.environ.get("STATS_API_SERVICE_PORT", "")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/stats", timeout=10) as response:
                stats = json.loads(response.read())
        except Exception as error:  # report, do not crash: the test reads it
            stats = {"error": str(error)}
        by_name = None
        if os.environ.get("CHECK_BY_NAME"):
            # STATS_URL comes from the pod spec: http://stats-api/stats, by Service name.
            try:
                with urllib.request.urlopen(os.environ["STATS_URL"], timeout=10) as response:
                    by_name = json.loads(response.read())
            except Exception as error:
                by_name = {"error": str(error)}
        # TODO_CONFIG comes from KubernetesLocalProcessConfig.yaml: the downloaded volume.
        config_path = os.environ.get("TODO_CONFIG")
        config = open(config_path).read() if config_path else None
        served_by = "local"  # BREAK: a test stops here while the cluster's request waits
        body = json.dumps({
            "config": config,
            "stats_by_name": by_name,
            "served_by": served_by,
            "api_key": os.environ.get("API_KEY"),
            "log_level": os.environ.get("LOG_LEVEL"),
            "grpc": os.environ.get("GRPC_DNS_RESOLVER"),
            "stats": stats,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", PORT, flush=True)
server.serve_forever()
