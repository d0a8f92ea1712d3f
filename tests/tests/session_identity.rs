//! Workload identity from the local process as in the pod (issue 17, parts 2 and 3):
//!
//! - a fake metadata server reachable only from inside the pod (a sidecar bound to the
//!   pod's loopback, as a node-local metadata server is reachable only from the node's
//!   pods) answers the local process through the agent, at the local addresses
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` (EKS Pod Identity) and `GCE_METADATA_HOST` (GKE)
//!   now name; the credentials endpoint accepts only the pod's projected token, which the
//!   local process reads through the rewritten `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`;
//!   nothing of the token is left after teardown;
//! - `enableFeatures: [Probes]` keeps the container's readiness probe tied to the local
//!   process: when it stops answering, the pod leaves the Service's endpoints; with
//!   `ManagedIdentity` the SDKs' metadata variables name a local address for the pod's
//!   169.254.169.254.

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, require_tool, temp_dir, workspace_bin};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";

fn manifest(ns: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: identity-app, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: identity-app}}}}
  template:
    metadata: {{labels: {{app: identity-app}}}}
    spec:
      containers:
      - name: app
        image: kbridge-samples/stats-api:1.0
        ports: [{{name: http, containerPort: 8081}}]
        env:
        - {{name: AWS_CONTAINER_CREDENTIALS_FULL_URI, value: 'http://127.0.0.1:8099/v1/credentials'}}
        - {{name: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, value: {TOKEN_DIR}/eks-pod-identity-token}}
        - {{name: GCE_METADATA_HOST, value: '127.0.0.1:8099'}}
        volumeMounts:
        - {{name: eks-pod-identity-token, mountPath: {TOKEN_DIR}, readOnly: true}}
      - name: metadata
        image: kbridge-samples/stats-api:1.0
        env:
        - {{name: PORT, value: '8099'}}
        - {{name: BIND, value: 127.0.0.1}}
        - {{name: METADATA_TOKEN_FILE, value: {TOKEN_DIR}/eks-pod-identity-token}}
        volumeMounts:
        - {{name: eks-pod-identity-token, mountPath: {TOKEN_DIR}, readOnly: true}}
      volumes:
      - name: eks-pod-identity-token
        projected:
          sources:
          - serviceAccountToken: {{audience: pods.eks.amazonaws.com, expirationSeconds: 3600, path: eks-pod-identity-token}}
"
    )
}

/// `kbridge run` on `workload`'s container `app` running `script` under `sh -c`.
fn run(
    fixture: &TestCluster,
    tmp: &Path,
    workload: &str,
    config: Option<&Path>,
    script: &str,
) -> (String, String, bool) {
    let image = agent_image();
    let mut args = vec![
        "run",
        "--namespace",
        &fixture.namespace,
        "--workload",
        workload,
        "--container",
        "app",
        "--agent-image",
        &image,
    ];
    let config = config.map(|c| c.to_string_lossy().into_owned());
    if let Some(config) = &config {
        args.extend(["--config", config]);
    }
    args.extend(["--", "sh", "-c", script]);
    let out = fixture.kbridge(tmp, &args);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// The value after `KEY=` on a line of `output`.
fn field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn apply(fixture: &TestCluster, tmp: &Path, name: &str, yaml: &str) {
    let path = tmp.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write manifest");
    fixture.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    fixture.rollout_status(name);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_endpoints_only_the_pod_reaches_answer_the_local_process() {
    require_tool("curl", "apt-get install -y curl");
    let fixture = TestCluster::start_demo("identity");
    let tmp = temp_dir("identity");
    apply(
        &fixture,
        &tmp,
        "identity-app",
        &manifest(&fixture.namespace),
    );

    // The endpoint is the pod's own loopback: from here nothing answers there.
    let direct = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("http://127.0.0.1:8099/v1/credentials")
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "000",
        "something on this machine answers at 127.0.0.1:8099; the test needs that port free"
    );

    let script = r#"echo "URI=$AWS_CONTAINER_CREDENTIALS_FULL_URI"
echo "GCE=$GCE_METADATA_HOST"
echo "TOKEN_FILE=$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
echo "TOKEN_MODE=$(stat -c %a "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")"
echo "DIR_MODE=$(stat -c %a "${AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE%%/mounts/*}")"
echo "CREDS=$(curl -s --max-time 20 -H "Authorization: $(cat "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")" "$AWS_CONTAINER_CREDENTIALS_FULL_URI")"
echo "WRONG=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' -H 'Authorization: not-the-token' "$AWS_CONTAINER_CREDENTIALS_FULL_URI")"
echo "GKE=$(curl -s --max-time 20 -H 'Metadata-Flavor: Google' "http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token")"
echo "TOKEN=$(cat "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")""#;
    // `kbridge diagnostics` of the live session, as a user would read it.
    let diagnostics = tmp.join("diagnostics.txt");
    let script = format!(
        "{script}\n\"{}\" diagnostics > \"{}\"",
        kbridge_tests::kbridge_bin().display(),
        diagnostics.display()
    );
    let (stdout, stderr, ok) = run(&fixture, &tmp, "deployment/identity-app", None, &script);
    assert!(ok, "kbridge run failed:\n{stdout}\n{stderr}");

    // The variables SDKs read point at local addresses.
    let uri = field(&stdout, "URI").expect("URI");
    assert!(
        uri.starts_with("http://127.1.") && uri.ends_with("/v1/credentials"),
        "{stdout}"
    );
    let gce = field(&stdout, "GCE").expect("GCE");
    assert!(gce.starts_with("127.1."), "{stdout}");
    // The token file is a local copy in the private directory.
    let token_file = field(&stdout, "TOKEN_FILE").expect("TOKEN_FILE");
    assert!(token_file.starts_with(&*tmp.to_string_lossy()), "{stdout}");
    assert_eq!(field(&stdout, "TOKEN_MODE"), Some("600"), "{stdout}");
    assert_eq!(field(&stdout, "DIR_MODE"), Some("700"), "{stdout}");

    // The sidecar answered through the agent: with the pod's token only.
    assert!(
        field(&stdout, "CREDS").is_some_and(|c| c.contains("ASIAKBRIDGEFAKE")),
        "{stdout}\n{stderr}"
    );
    assert_eq!(field(&stdout, "WRONG"), Some("401"), "{stdout}");
    assert!(
        field(&stdout, "GKE").is_some_and(|g| g.contains("fake-gke-token-for-identity-app-")),
        "{stdout}\n{stderr}"
    );

    // Said at start; no token material in kbridge's output.
    assert!(
        stderr.contains("identity endpoints reached through the agent")
            && stderr.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI → http://127.1."),
        "{stderr}"
    );
    let described = std::fs::read_to_string(&diagnostics).expect("diagnostics output");
    assert!(
        described.lines().any(
            |l| l.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.1.")
                && l.contains("→ 127.0.0.1:8099")
        ),
        "kbridge diagnostics lists the identity endpoints:\n{described}"
    );
    let token = field(&stdout, "TOKEN").expect("TOKEN");
    assert!(token.len() > 20, "{stdout}");
    assert!(!stderr.contains(token), "the token is in kbridge's output");
    assert!(
        !described.contains(token),
        "the token is in kbridge diagnostics"
    );

    // Teardown leaves no token file behind.
    assert!(!Path::new(token_file).exists(), "{token_file} left behind");
    let sessions = tmp.join("kbridge").join("sessions");
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "session directories left: {left:?}");
}

/// The port of the probed app, here and in the pod: unusual, so that nothing else on this
/// machine answers there.
const PROBED_PORT: u16 = 18417;

fn probed_manifest(ns: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: probed-app, namespace: {ns}}}
spec:
  selector: {{app: probed-app}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: probed-app, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: probed-app}}}}
  template:
    metadata: {{labels: {{app: probed-app}}}}
    spec:
      containers:
      - name: app
        image: kbridge-samples/stats-api:1.0
        env: [{{name: PORT, value: '{PROBED_PORT}'}}]
        ports: [{{name: http, containerPort: {PROBED_PORT}}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 5
"
    )
}

/// The ready addresses of Service `name`'s Endpoints.
fn ready_addresses(fixture: &TestCluster, name: &str) -> String {
    fixture
        .kubectl(&[
            "-n",
            &fixture.namespace,
            "get",
            "endpoints",
            name,
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ])
        .trim()
        .to_string()
}

/// Waits until `ready(addresses)` holds, or panics after `timeout` naming `what`.
fn wait_for_endpoints(
    fixture: &TestCluster,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&str) -> bool,
) {
    let start = Instant::now();
    loop {
        let addresses = ready_addresses(fixture, "probed-app");
        if ready(&addresses) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?} (ready addresses: '{addresses}')"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Lets the session's script run to its end when dropped: starts, stops and ends it.
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        for step in ["go", "stop", "done"] {
            let _ = std::fs::write(self.0.join(step), "");
        }
    }
}

fn wait_for_file(path: &Path, timeout: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < timeout,
            "{} not written within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_keep_readiness_tied_to_the_local_process() {
    let fixture = std::sync::Arc::new(TestCluster::start_demo("probes"));
    let tmp = temp_dir("probes");
    apply(
        &fixture,
        &tmp,
        "probed-app",
        &probed_manifest(&fixture.namespace),
    );
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        "version: 0.1\nenableFeatures: [Probes, ManagedIdentity]\n",
    )
    .expect("write config");
    let sync = tmp.join("sync");
    std::fs::create_dir_all(&sync).expect("sync dir");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", PROBED_PORT)).is_err(),
        "something on this machine listens on 127.0.0.1:{PROBED_PORT}; the test needs that port free"
    );

    // The local process: started once the test has seen the pod out of the endpoints with
    // nothing listening, stats-api on the container's port until told to stop; the session
    // then holds on until the test has seen the pod leave the endpoints again.
    let script = format!(
        r#"touch "{sync}/session"
while [ ! -e "{sync}/go" ]; do sleep 0.2; done
PORT={PROBED_PORT} BIND=127.0.0.1 "{stats}" & pid=$!
echo "AZURE_IMDS=$AZURE_POD_IDENTITY_AUTHORITY_HOST"
echo "GCE=$GCE_METADATA_HOST"
touch "{sync}/started"
while [ ! -e "{sync}/stop" ]; do sleep 0.2; done
kill $pid; wait $pid
touch "{sync}/stopped"
while [ ! -e "{sync}/done" ]; do sleep 0.2; done"#,
        stats = workspace_bin("stats-api").display(),
        sync = sync.display(),
    );
    let session = {
        let (fixture, tmp, config) = (fixture.clone(), tmp.clone(), config.clone());
        std::thread::spawn(move || {
            run(
                &fixture,
                &tmp,
                "deployment/probed-app",
                Some(&config),
                &script,
            )
        })
    };
    // Whatever happens below, the session is let go: a failed assertion must not leave
    // it (and a local server on the port) behind for the next run.
    let release = Release(sync.clone());

    // The session is up, nothing listens locally yet: the pod is not Ready.
    wait_for_file(&sync.join("session"), Duration::from_secs(300));
    wait_for_endpoints(
        &fixture,
        "the pod leaving the endpoints while no local process answers",
        Duration::from_secs(30),
        str::is_empty,
    );
    std::fs::write(sync.join("go"), "").expect("go");
    wait_for_file(&sync.join("started"), Duration::from_secs(30));
    wait_for_endpoints(
        &fixture,
        "the pod becoming Ready with the local process up",
        Duration::from_secs(60),
        |a| !a.is_empty(),
    );
    std::fs::write(sync.join("stop"), "").expect("stop");
    wait_for_file(&sync.join("stopped"), Duration::from_secs(30));
    wait_for_endpoints(
        &fixture,
        "the pod leaving the endpoints once the local process stopped",
        Duration::from_secs(30),
        str::is_empty,
    );
    drop(release);

    let (stdout, stderr, ok) = session.join().expect("session thread");
    assert!(ok, "kbridge run failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("readiness follows your process"),
        "{stderr}"
    );
    assert!(stderr.contains("liveness probe is not kept"), "{stderr}");
    assert!(!stderr.contains("not acted on"), "{stderr}");
    // ManagedIdentity: the SDKs' metadata variables name a local address for the pod's
    // 169.254.169.254 (no metadata server answers on this cluster; the address is there).
    let imds = field(&stdout, "AZURE_IMDS").expect("AZURE_IMDS");
    assert!(imds.starts_with("http://127.1."), "{stdout}");
    assert_eq!(
        field(&stdout, "GCE"),
        imds.strip_prefix("http://"),
        "one local address for the metadata server: {stdout}"
    );
    assert!(
        stderr.contains("(169.254.169.254:80 from the pod, added for ManagedIdentity)"),
        "{stderr}"
    );
}
