//! Environment values that are paths into the container's volumes (issue 17, part 1): a
//! ConfigMap file named by `CONFIG_PATH`, a Secret file by `GOOGLE_APPLICATION_CREDENTIALS`
//! and a projected service-account token (custom audience, short expiry) by
//! `AWS_WEB_IDENTITY_TOKEN_FILE` are read by the local process through the rewritten paths;
//! the token is replaced before it expires, at the same path; `rewritePath: false` and
//! `rewriteEnvPaths: false` keep the pod's paths; nothing of it outlives the session. An
//! `enableFeatures` entry that cannot apply to the container says why (issue 17, part 3).
//!
//! On a real cluster (`KBRIDGE_TEST_KUBECONFIG`) the token lives 600 s, the least the API
//! server allows, so watching the kubelet rotate it and kbridge follow takes about ten
//! minutes there: that part runs on a real cluster only with KBRIDGE_TEST_TOKEN_ROTATION=1
//! (kube-fixture rotates as the kubelet does, in seconds, and always runs it).

use base64::Engine;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use serde_json::Value;
use std::path::Path;

const AUDIENCE: &str = "sts.kbridge.example";

fn manifest(ns: &str, token_ttl: u64) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, namespace: {ns}}}
data:
  conf.yaml: 'greeting: from-configmap'
---
apiVersion: v1
kind: Secret
metadata: {{name: google-creds, namespace: {ns}}}
stringData:
  key.json: '{{\"type\": \"service_account\", \"client_email\": \"paths@example.iam\"}}'
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: paths-app, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: paths-app}}}}
  template:
    metadata: {{labels: {{app: paths-app}}}}
    spec:
      containers:
      - name: app
        image: kbridge-samples/stats-api:1.0
        ports: [{{name: http, containerPort: 8081}}]
        env:
        - {{name: CONFIG_PATH, value: /etc/app/conf.yaml}}
        - {{name: GOOGLE_APPLICATION_CREDENTIALS, value: /var/secrets/google/key.json}}
        - {{name: AWS_WEB_IDENTITY_TOKEN_FILE, value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token}}
        - {{name: AWS_ROLE_ARN, value: 'arn:aws:iam::000000000000:role/paths-app'}}
        volumeMounts:
        - {{name: app-config, mountPath: /etc/app, readOnly: true}}
        - {{name: google-creds, mountPath: /var/secrets/google, readOnly: true}}
        - {{name: aws-iam-token, mountPath: /var/run/secrets/eks.amazonaws.com/serviceaccount, readOnly: true}}
      volumes:
      - name: app-config
        configMap: {{name: app-config}}
      - name: google-creds
        secret: {{secretName: google-creds}}
      - name: aws-iam-token
        projected:
          sources:
          - serviceAccountToken: {{audience: {AUDIENCE}, expirationSeconds: {token_ttl}, path: token}}
"
    )
}

/// `kbridge run` on deployment/paths-app running `script` under `sh -c`.
fn run(fixture: &TestCluster, tmp: &Path, config: Option<&Path>, script: &str) -> (String, String) {
    let image = agent_image();
    let mut args = vec![
        "run",
        "--namespace",
        &fixture.namespace,
        "--workload",
        "deployment/paths-app",
        "--agent-image",
        &image,
    ];
    let config = config.map(|c| c.to_string_lossy().into_owned());
    if let Some(config) = &config {
        args.extend(["--config", config]);
    }
    args.extend(["--", "sh", "-c", script]);
    let out = fixture.kbridge(tmp, &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "kbridge run failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The value after `KEY=` on a line of `output`.
fn field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Where `name` is on this process's PATH (the bridged process gets the pod's PATH).
fn on_path(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not on PATH"))
}

/// A JWT's claims (signature not checked).
fn claims(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Nothing of the session's private directories is left.
fn no_session_left(tmp: &Path) {
    let sessions = tmp.join("kbridge").join("sessions");
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "session directories left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn env_paths_into_volumes_are_local_copies_and_the_token_stays_fresh() {
    let fixture = TestCluster::start_demo("env-paths");
    let tmp = temp_dir("env-paths");
    // The least each cluster allows: kube-fixture 10 s, a real API server 600 s.
    let ttl: u64 = if fixture.is_real() { 600 } else { 20 };
    let path = tmp.join("paths-app.yaml");
    std::fs::write(&path, manifest(&fixture.namespace, ttl)).expect("write manifest");
    fixture.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    fixture.rollout_status("paths-app");

    opting_out_keeps_the_pod_paths(&fixture, &tmp);
    the_files_are_read_locally_and_the_token_is_refreshed(&fixture, &tmp, ttl);
}

/// `rewritePath: false` on a variable and `rewriteEnvPaths: false` on a volume.
fn opting_out_keeps_the_pod_paths(fixture: &TestCluster, tmp: &Path) {
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        "version: 0.1
enableFeatures:
  - Probes
volumeMounts:
  - name: aws-iam-token
    rewriteEnvPaths: false
env:
  - name: CONFIG_PATH
    rewritePath: false
",
    )
    .expect("write config");
    let (stdout, stderr) = run(
        fixture,
        tmp,
        Some(&config),
        "echo CONFIG=$CONFIG_PATH; echo TOKEN=$AWS_WEB_IDENTITY_TOKEN_FILE; \
         echo GOOGLE=$GOOGLE_APPLICATION_CREDENTIALS; echo GOOGLE_KEY=$(cat \"$GOOGLE_APPLICATION_CREDENTIALS\")",
    );
    assert_eq!(
        field(&stdout, "CONFIG"),
        Some("/etc/app/conf.yaml"),
        "{stdout}"
    );
    assert_eq!(
        field(&stdout, "TOKEN"),
        Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
        "{stdout}"
    );
    let google = field(&stdout, "GOOGLE").expect("GOOGLE line");
    assert!(google.starts_with(&*tmp.to_string_lossy()), "{stdout}");
    assert!(
        field(&stdout, "GOOGLE_KEY").is_some_and(|k| k.contains("paths@example.iam")),
        "{stdout}"
    );
    assert!(
        stderr.contains("kept as in the pod")
            && stderr.contains("CONFIG_PATH (`rewritePath: false`")
            && stderr.contains("`rewriteEnvPaths: false` on volume `aws-iam-token`"),
        "{stderr}"
    );
    // A known feature that cannot apply to this container says why.
    assert!(
        stderr.contains("enableFeatures Probes: container 'app' has no readiness probe"),
        "{stderr}"
    );
    no_session_left(tmp);
}

/// All three read through local paths; the token is replaced before it expires.
fn the_files_are_read_locally_and_the_token_is_refreshed(
    fixture: &TestCluster,
    tmp: &Path,
    ttl: u64,
) {
    let watch_rotation =
        !fixture.is_real() || std::env::var("KBRIDGE_TEST_TOKEN_ROTATION").is_ok_and(|v| v == "1");
    let diagnostics = tmp.join("diagnostics.json");
    let script = format!(
        r#"echo "CONFIG=$(cat "$CONFIG_PATH")"
echo "GOOGLE=$(cat "$GOOGLE_APPLICATION_CREDENTIALS")"
echo "TOKEN_PATH=$AWS_WEB_IDENTITY_TOKEN_FILE"
echo "TOKEN_MODE=$(stat -c %a "$AWS_WEB_IDENTITY_TOKEN_FILE")"
"{kbridge}" diagnostics --json > "{diagnostics}"
first=$(cat "$AWS_WEB_IDENTITY_TOKEN_FILE")
echo "TOKEN1=$first"
printf '{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"%s","audiences":["{audience}"]}}}}' "$first" \
  | "{kubectl}" --kubeconfig "{kubeconfig}" create -f - -o jsonpath='REVIEW={{.status.authenticated}} {{.status.user.username}} {{.status.audiences}}{{"\n"}}'
printf '{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"%s","audiences":["another.example"]}}}}' "$first" \
  | "{kubectl}" --kubeconfig "{kubeconfig}" create -f - -o jsonpath='OTHER={{.status.authenticated}}{{"\n"}}'
i=0
while [ $i -lt {wait} ]; do
  now=$(cat "$AWS_WEB_IDENTITY_TOKEN_FILE")
  if [ -n "$now" ] && [ "$now" != "$first" ]; then
    echo "TOKEN2=$now"; echo "SEEN=$(date +%s)"
    echo "DIR=$(ls -A "$(dirname "$AWS_WEB_IDENTITY_TOKEN_FILE")" | tr '\n' ' ')"
    break
  fi
  sleep 1; i=$((i+1))
done"#,
        kbridge = kbridge_bin().display(),
        diagnostics = diagnostics.display(),
        audience = AUDIENCE,
        kubectl = on_path("kubectl").display(),
        kubeconfig = fixture.kubeconfig.display(),
        wait = if watch_rotation { ttl + 30 } else { 0 },
    );
    let (stdout, stderr) = run(fixture, tmp, None, &script);

    assert_eq!(
        field(&stdout, "CONFIG"),
        Some("greeting: from-configmap"),
        "{stdout}"
    );
    assert!(
        field(&stdout, "GOOGLE").is_some_and(|g| g.contains("paths@example.iam")),
        "{stdout}"
    );
    let token_path = field(&stdout, "TOKEN_PATH").expect("TOKEN_PATH");
    assert!(
        token_path.starts_with(&*tmp.to_string_lossy()),
        "the token is a local copy: {token_path}"
    );
    assert_eq!(field(&stdout, "TOKEN_MODE"), Some("600"), "{stdout}");
    for name in [
        "CONFIG_PATH",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        assert!(
            stderr.contains(&format!("{name} → ")),
            "the startup summary names {name}: {stderr}"
        );
    }
    assert!(
        !stderr.contains(field(&stdout, "TOKEN1").unwrap_or("-")),
        "no token in the output"
    );

    // The token: a JWT for the audience asked — the API server's TokenReview takes it as
    // the pod's ServiceAccount for that audience and no other —, replaced before it
    // expired, at that path.
    let first = claims(field(&stdout, "TOKEN1").expect("TOKEN1"));
    assert_eq!(first["aud"], serde_json::json!([AUDIENCE]), "{first}");
    assert_eq!(
        field(&stdout, "REVIEW"),
        Some(
            format!(
                "true system:serviceaccount:{}:default [\"{AUDIENCE}\"]",
                fixture.namespace
            )
            .as_str()
        ),
        "{stdout}\n{stderr}"
    );
    // Refused for another audience (a real API server leaves `authenticated` out then).
    assert!(
        matches!(field(&stdout, "OTHER"), Some("" | "false")),
        "{stdout}"
    );
    if watch_rotation {
        the_token_was_replaced_before_it_expired(&stdout, &first, ttl);
    } else {
        eprintln!(
            "not waiting {ttl} s for the kubelet to rotate the token on this real cluster; \
             set KBRIDGE_TEST_TOKEN_ROTATION=1 to"
        );
    }

    // `kbridge diagnostics` listed the three, the token marked as refreshed.
    let described: Value =
        serde_json::from_str(&std::fs::read_to_string(&diagnostics).expect("diagnostics"))
            .expect("diagnostics JSON");
    let paths = described[0]["envPaths"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let token = paths
        .iter()
        .find(|p| p["name"] == "AWS_WEB_IDENTITY_TOKEN_FILE")
        .unwrap_or_else(|| panic!("diagnostics list the token: {described}"));
    assert_eq!(token["refreshed"], true, "{token}");
    assert_eq!(token["volume"], "aws-iam-token", "{token}");
    assert_eq!(paths.len(), 3, "{paths:?}");
    let text = serde_json::to_string(&described).unwrap_or_default();
    assert!(
        !text.contains(field(&stdout, "TOKEN1").unwrap_or("-")),
        "no token in diagnostics"
    );

    // Teardown leaves no token file behind.
    assert!(!Path::new(token_path).exists(), "{token_path} left behind");
    no_session_left(tmp);
}

/// TOKEN2 is the kubelet's next token, seen at the same local path before TOKEN1 expired.
fn the_token_was_replaced_before_it_expired(stdout: &str, first: &Value, ttl: u64) {
    let second = claims(field(stdout, "TOKEN2").unwrap_or_else(|| {
        panic!(
            "the token was not refreshed within {} s:\n{stdout}",
            ttl + 30
        )
    }));
    assert_eq!(second["aud"], serde_json::json!([AUDIENCE]), "{second}");
    let seen: i64 = field(stdout, "SEEN")
        .and_then(|s| s.trim().parse().ok())
        .expect("SEEN");
    let expired = first["exp"].as_i64().expect("exp");
    assert!(
        seen < expired,
        "refreshed at {seen}, after the first expired at {expired}"
    );
    assert!(second["exp"].as_i64() > Some(expired), "{second}");
    let dir = field(stdout, "DIR").unwrap_or_default();
    assert!(!dir.contains(".kbridge-new"), "no partial file: {dir}");
}
