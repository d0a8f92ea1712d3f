//! `kbridge agent push` against a real registry on loopback (Debian's `docker-registry`,
//! started and stopped by each test on a free port), without and with basic auth; the
//! image is read back through the registry API and checked against agent/Dockerfile.
//! Also: a wrong password, a registry that is not there, an agent binary that is missing
//! or dynamic, and `kbridge doctor`'s agent image check.
//!
//! The registry tests skip, saying why, only when /usr/bin/docker-registry is absent
//! (`.ci/run` installs it).

use kbridge_tests::{kbridge_bin, temp_dir, workspace_bin};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";
const USER: &str = "kbridge";
const PASSWORD: &str = "push-secret";
/// `kbridge:push-secret`, bcrypt with cost 5 (made once with Python's `crypt`).
const HTPASSWD: &str = "kbridge:$2b$05$tjMIpfaueCCWnsmvPc8ZE.zfJuEu5AKJtEMyu6Ku7g.gMVaNeNTjy\n";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A `docker-registry serve` on a free loopback port, stopped on drop.
struct TestRegistry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TestRegistry {
    /// Starts one (with htpasswd auth when `auth`), or `None` when the binary is absent.
    fn start(dir: &Path, auth: bool) -> Option<TestRegistry> {
        if !Path::new(REGISTRY).exists() {
            eprintln!("skipped: {REGISTRY} is absent (apt-get install -y docker-registry)");
            return None;
        }
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if auth {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: kbridge-test, path: {}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = dir.join("registry.log");
        let log_file = std::fs::File::create(&log).expect("registry log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start docker-registry");
        let registry = TestRegistry { child, port, log };
        registry.wait_ready();
        Some(registry)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(answer) = try_get(self.port, "/v2/", None, None) {
                if answer.status == 200 || answer.status == 401 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the registry did not answer on port {}: {}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn image(&self, repository_and_tag: &str) -> String {
        format!("127.0.0.1:{}/{repository_and_tag}", self.port)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// `GET path` over HTTP/1.0 (so the body ends with the connection).
fn try_get(port: u16, path: &str, basic: Option<&str>, accept: Option<&str>) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(basic) = basic {
        request.push_str(&format!("Authorization: Basic {basic}\r\n"));
    }
    if let Some(accept) = accept {
        request.push_str(&format!("Accept: {accept}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn get(port: u16, path: &str, basic: Option<&str>, accept: Option<&str>) -> Answer {
    let answer = try_get(port, path, basic, accept).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(
        answer.status,
        200,
        "GET {path}: {}\n{}",
        answer.headers,
        String::from_utf8_lossy(&answer.body)
    );
    answer
}

/// `base64("kbridge:<password>")` without a base64 crate: via coreutils.
fn base64_of(text: &str) -> String {
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("base64");
    String::from_utf8(out.stdout).expect("utf8")
}

/// A small static executable standing in for the agent (the real one takes a release
/// build): `gcc -static`.
fn static_binary(dir: &Path) -> PathBuf {
    let source = dir.join("agent.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").expect("write C");
    let out = dir.join("kbridge-agent");
    let status = Command::new("gcc")
        .arg("-static")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("gcc is needed by this test (apt-get install -y gcc libc6-dev)");
    assert!(status.success(), "gcc -static failed");
    out
}

/// Runs kbridge with a private HOME and DOCKER_CONFIG (no other credentials files).
fn kbridge(home: &Path, args: &[&str]) -> Output {
    kbridge_in(home, &std::env::current_dir().expect("cwd"), args)
}

/// [`kbridge`] run in directory `cwd` (a project with its `.vscode/launch.json`).
fn kbridge_in(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(kbridge_bin())
        .current_dir(cwd)
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("TMPDIR", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("KBRIDGE_AGENT_IMAGE")
        .output()
        .expect("run kbridge")
}

/// `kbridge agent push IMAGE --agent-binary BINARY` with `home` as the user's home.
fn push(home: &Path, image: &str, binary: &Path) -> Output {
    kbridge(
        home,
        &[
            "agent",
            "push",
            image,
            "--agent-binary",
            &binary.to_string_lossy(),
        ],
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn write_docker_config(home: &Path, port: u16, password: &str) {
    let dir = home.join("docker");
    std::fs::create_dir_all(&dir).expect("docker dir");
    let auth = base64_of(&format!("{USER}:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths": {{"127.0.0.1:{port}": {{"auth": "{auth}"}}}}}}"#),
    )
    .expect("write config.json");
}

/// Reads the pushed image back through the registry API and checks it is the agent
/// image agent/Dockerfile describes, holding `binary`.
fn check_pushed_image(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    basic: Option<&str>,
    binary: &Path,
    work: &Path,
) {
    let port = registry.port;
    let manifest = get(
        port,
        &format!("/v2/{repository}/manifests/{tag}"),
        basic,
        Some(OCI_MANIFEST),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.body).expect("manifest json");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer on an empty base: {manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config = get(
        port,
        &format!("/v2/{repository}/blobs/{config_digest}"),
        basic,
        None,
    );
    let config: serde_json::Value = serde_json::from_slice(&config.body).expect("config json");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let user = config["config"]["User"].as_str().expect("user");
    assert_eq!(user, "65532:65532", "the Dockerfile's USER");
    assert!(!user.starts_with("0:") && user != "root", "non-root");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/kbridge-agent"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["serve"]));
    assert!(config["config"]["ExposedPorts"].get("7311/tcp").is_some());

    let layer_digest = layers[0]["digest"].as_str().expect("layer digest");
    let layer = get(
        port,
        &format!("/v2/{repository}/blobs/{layer_digest}"),
        basic,
        None,
    );
    let layer_file = work.join("layer.tar.gz");
    std::fs::write(&layer_file, &layer.body).expect("write layer");
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer_file)
        .arg("-C")
        .arg(&rootfs)
        .status()
        .expect("tar");
    assert!(status.success(), "the layer is a gzip tar");
    let unpacked = rootfs.join("kbridge-agent");
    assert_eq!(
        std::fs::read(&unpacked).expect("the binary at /kbridge-agent"),
        std::fs::read(binary).expect("binary"),
        "the layer holds the binary at the entrypoint's path"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&unpacked)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable by the non-root user");
    let entries: Vec<_> = std::fs::read_dir(&rootfs).expect("ls").collect();
    assert_eq!(entries.len(), 1, "nothing else in the image");
}

#[test]
fn push_without_auth_then_doctor_finds_it() {
    let dir = temp_dir("push-open");
    let Some(registry) = TestRegistry::start(&dir, false) else {
        return;
    };
    let binary = static_binary(&dir);
    let image = registry.image("kbridge/agent:dev");
    let first = push(&dir, &image, &binary);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("pushed {image}@sha256:")),
        "{stdout}"
    );
    assert!(
        stderr.contains("layer sha256:") && stderr.contains("uploading"),
        "{stderr}"
    );
    assert!(
        stderr.contains("uploaded in"),
        "progress with sizes: {stderr}"
    );
    check_pushed_image(&registry, "kbridge/agent", "dev", None, &binary, &dir);

    // Again: nothing to upload, same digest.
    let again = push(&dir, &image, &binary);
    let (stdout_again, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("already in the registry"), "{stderr}");
    assert_eq!(
        stdout_again.lines().next(),
        stdout.lines().next(),
        "reproducible"
    );

    // Doctor: the pushed image resolves; a tag never pushed does not.
    let doctor = kbridge(&dir, &["doctor", "--agent-image", &image]);
    let (stdout, _) = text(&doctor);
    assert!(
        stdout.contains(&format!("ok       {image} resolves (sha256:")),
        "{stdout}"
    );
    let missing = registry.image("kbridge/agent:never-pushed");
    let doctor = kbridge(&dir, &["doctor", "--agent-image", &missing]);
    let (stdout, _) = text(&doctor);
    assert!(!doctor.status.success());
    assert!(
        stdout.contains(&format!("missing  {missing}"))
            && stdout.contains(&format!("kbridge agent push {missing}")),
        "{stdout}"
    );

    // Without --agent-image: the images the project's launch.json names, nested or flat.
    let project = dir.join("project");
    std::fs::create_dir_all(project.join(".vscode")).expect(".vscode");
    std::fs::write(
        project.join(".vscode/launch.json"),
        format!(
            r#"{{
              // as VS Code writes it: JSONC
              "configurations": [
                {{"type": "bridge", "name": "api", "bridge": {{"service": "todo-api", "agentImage": "{image}"}}}},
                {{"type": "bridge", "name": "helix", "bridge.service": "stats-api", "bridge.agentImage": "{missing}"}},
              ]
            }}"#
        ),
    )
    .expect("launch.json");
    let doctor = kbridge_in(&dir, &project, &["doctor"]);
    let (stdout, _) = text(&doctor);
    assert!(!doctor.status.success(), "one image is missing: {stdout}");
    assert!(
        stdout.contains(&format!("ok       {image} resolves (sha256:"))
            && stdout.contains("(from .vscode/launch.json: 'api')"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "missing  {missing} (from .vscode/launch.json: 'helix')"
        )),
        "{stdout}"
    );
}

#[test]
fn push_with_basic_auth_from_docker_config() {
    let dir = temp_dir("push-auth");
    let Some(registry) = TestRegistry::start(&dir, true) else {
        return;
    };
    let binary = static_binary(&dir);
    let image = registry.image("team/kbridge-agent:1.0");
    let binary_arg = binary.to_string_lossy().to_string();
    let push_args = ["agent", "push", &image, "--agent-binary", &binary_arg];

    // No credentials at all: what to run.
    let output = kbridge(&dir, &push_args);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("asks for a login")
            && stderr.contains(&format!("docker login 127.0.0.1:{}", registry.port)),
        "{stderr}"
    );

    // A wrong password: refused, naming the user and what to run, not the password.
    write_docker_config(&dir, registry.port, "wrong-password");
    let output = kbridge(&dir, &push_args);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refused the credentials of user 'kbridge'")
            && stderr.contains("docker login"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-password"),
        "no secrets in messages: {stderr}"
    );

    // The right one, as `docker login` leaves it.
    write_docker_config(&dir, registry.port, PASSWORD);
    let output = kbridge(&dir, &push_args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains(PASSWORD) && !stdout.contains(PASSWORD));
    let basic = base64_of(&format!("{USER}:{PASSWORD}"));
    check_pushed_image(
        &registry,
        "team/kbridge-agent",
        "1.0",
        Some(&basic),
        &binary,
        &dir,
    );

    let doctor = kbridge(&dir, &["doctor", "--agent-image", &image]);
    let (stdout, _) = text(&doctor);
    assert!(
        stdout.contains(&format!("ok       {image} resolves")),
        "{stdout}"
    );
}

#[test]
fn an_unreachable_registry_is_retried_then_reported() {
    let dir = temp_dir("push-unreachable");
    let binary = static_binary(&dir);
    // A port nothing listens on.
    let image = format!("127.0.0.1:{}/kbridge/agent:dev", free_port());
    let started = Instant::now();
    let output = push(&dir, &image, &binary);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach the registry 127.0.0.1:") && stderr.contains("is it running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("trying again in"),
        "retries back off: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_missing_or_dynamic_agent_binary_says_how_to_build_one() {
    let dir = temp_dir("push-binary");
    // Next to the debug kbridge: the debug kbridge-agent, dynamically linked.
    let agent = workspace_bin("kbridge-agent");
    let output = kbridge(&dir, &["agent", "push", "127.0.0.1:9/kbridge/agent:dev"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&agent.display().to_string())
            && stderr.contains("dynamically linked")
            && stderr.contains("agent/build-static.sh")
            && stderr.contains("--agent-binary"),
        "{stderr}"
    );

    // A kbridge with no agent beside it.
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).expect("dir");
    let copy = alone.join("kbridge");
    std::fs::copy(kbridge_bin(), &copy).expect("copy kbridge");
    let output = Command::new(&copy)
        .args(["agent", "push", "127.0.0.1:9/kbridge/agent:dev"])
        .output()
        .expect("run copy");
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no kbridge-agent next to kbridge") && stderr.contains("--agent-binary"),
        "{stderr}"
    );

    // Not an executable at all.
    let script = dir.join("not-elf");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let output = push(&dir, "127.0.0.1:9/a:b", &script);
    let (_, stderr) = text(&output);
    assert!(stderr.contains("not a Linux executable"), "{stderr}");
}

/// The token requests a fake registry saw: path and query, Authorization header.
type TokenRequests = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A registry that wants bearer tokens (as ghcr.io and Docker Hub do), faked on loopback:
/// `/v2/…` answers 401 with a `Bearer realm=…` challenge unless the request carries the
/// token, and `/token` hands it out for the right Basic credentials. Returns the port and
/// the token requests seen (path and query, Authorization header).
fn fake_token_registry() -> (u16, TokenRequests) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let good_basic = format!("Basic {}", base64_of(&format!("{USER}:{PASSWORD}")));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50).flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = std::io::BufReader::new(&stream);
            let mut head = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut head).is_ok_and(|n| n > 2) {}
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let authorization = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .trim()
                .to_string();
            let (status, extra, body) = if target.starts_with("/token") {
                log.lock()
                    .expect("log")
                    .push((target.clone(), authorization.clone()));
                if authorization == good_basic {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"token": "fake-token"}"#.to_string(),
                    )
                } else {
                    ("401 Unauthorized", String::new(), String::new())
                }
            } else if authorization == "Bearer fake-token" {
                (
                    "200 OK",
                    "Docker-Content-Digest: sha256:fake\r\n".to_string(),
                    String::new(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"\r\n"),
                    String::new(),
                )
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = (&stream).write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn doctor_logs_in_with_a_bearer_token() {
    let dir = temp_dir("doctor-bearer");
    let (port, seen) = fake_token_registry();
    let image = format!("127.0.0.1:{port}/kbridge/agent:dev");
    write_docker_config(&dir, port, PASSWORD);
    let doctor = kbridge(&dir, &["doctor", "--agent-image", &image]);
    let (stdout, _) = text(&doctor);
    assert!(
        stdout.contains(&format!("ok       {image} resolves (sha256:fake)")),
        "{stdout}"
    );
    let requests = seen.lock().expect("seen").clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].0.contains("service=fake-registry")
            && requests[0]
                .0
                .contains("scope=repository:kbridge/agent:pull"),
        "the token is asked for the repository: {requests:?}"
    );

    // The token endpoint refusing the password: what to run.
    write_docker_config(&dir, port, "wrong-password");
    let doctor = kbridge(&dir, &["doctor", "--agent-image", &image]);
    let (stdout, _) = text(&doctor);
    assert!(
        stdout.contains("failed   the registry 127.0.0.1:")
            && stdout.contains("refused the credentials of user 'kbridge'")
            && stdout.contains("docker login"),
        "{stdout}"
    );
}

/// The media type of an OCI image index.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `binary` with its ELF machine field set to aarch64. It would not run, but the image
/// built around it is an arm64 image in every field the registry and a node read; no
/// aarch64 compiler is needed to test the multi-platform push.
fn as_arm64(binary: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(binary).expect("read agent");
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    let out = dir.join("kbridge-agent-arm64");
    std::fs::write(&out, bytes).expect("write arm64 agent");
    out
}

#[test]
fn one_binary_per_platform_pushes_a_multi_platform_index() {
    let dir = temp_dir("push-multi");
    let Some(registry) = TestRegistry::start(&dir, false) else {
        return;
    };
    let amd64 = static_binary(&dir);
    let arm64 = as_arm64(&amd64, &dir);
    let image = registry.image("kbridge/agent:multi");
    let (amd64_arg, arm64_arg) = (amd64.display().to_string(), arm64.display().to_string());
    let args = [
        "agent",
        "push",
        &image,
        "--agent-binary",
        &amd64_arg,
        "--agent-binary",
        &arm64_arg,
    ];
    let output = kbridge(&dir, &args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("(linux/amd64): pushed") && stderr.contains("(linux/arm64): pushed"),
        "{stderr}"
    );

    // The tag is an index naming one manifest per platform, each pullable by digest.
    let index = get(
        registry.port,
        "/v2/kbridge/agent/manifests/multi",
        None,
        Some(OCI_INDEX),
    );
    let index: serde_json::Value = serde_json::from_slice(&index.body).expect("index json");
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    let manifests = index["manifests"].as_array().expect("manifests");
    let platforms: Vec<(String, String)> = manifests
        .iter()
        .map(|m| {
            let platform = &m["platform"];
            (
                platform["os"].as_str().unwrap_or_default().to_string(),
                platform["architecture"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux".to_string(), "amd64".to_string()),
            ("linux".to_string(), "arm64".to_string())
        ]
    );
    for (entry, architecture) in manifests.iter().zip(["amd64", "arm64"]) {
        let digest = entry["digest"].as_str().expect("digest");
        let manifest = get(
            registry.port,
            &format!("/v2/kbridge/agent/manifests/{digest}"),
            None,
            Some(OCI_MANIFEST),
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest.body).expect("manifest json");
        let config_digest = manifest["config"]["digest"].as_str().expect("config");
        let config = get(
            registry.port,
            &format!("/v2/kbridge/agent/blobs/{config_digest}"),
            None,
            None,
        );
        let config: serde_json::Value = serde_json::from_slice(&config.body).expect("config");
        assert_eq!(config["architecture"], architecture, "{config}");
    }
    assert!(
        stdout.starts_with(&format!("pushed {image}@sha256:")),
        "the index's digest: {stdout}"
    );

    // Doctor resolves the index.
    let doctor = kbridge(&dir, &["doctor", "--agent-image", &image]);
    let (stdout, _) = text(&doctor);
    assert!(
        stdout.contains(&format!("ok       {image} resolves (sha256:")),
        "{stdout}"
    );

    // Two binaries of one platform: refused before anything is pushed.
    let twice = registry.image("kbridge/agent:twice");
    let output = kbridge(
        &dir,
        &[
            "agent",
            "push",
            &twice,
            "--agent-binary",
            &amd64_arg,
            "--agent-binary",
            &amd64_arg,
        ],
    );
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("are both linux/amd64 agents; give one --agent-binary per platform"),
        "{stderr}"
    );
    assert!(!stderr.contains("registry "), "nothing was sent: {stderr}");
}
