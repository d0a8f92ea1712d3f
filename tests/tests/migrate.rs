//! `kbridge migrate` on Bridge to Kubernetes projects written as its VS Code extension
//! wrote them (`tests/fixtures-data/migrate/projects/`: Python isolated with a
//! KubernetesLocalProcessConfig.yaml, .NET with a compound task and the wizard entry, a
//! workspace of two services in Node and Go, the older "Local Process with Kubernetes"
//! and Dev Spaces tasks, a malformed launch.json), run through the built binary. The
//! expected files after `--write` are under `tests/fixtures-data/migrate/expected/`.

use kbridge_tests::{kbridge_bin, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The projects that migrate; `malformed` is tested on its own.
const PROJECTS: [&str; 4] = [
    "python-isolated",
    "dotnet-compound",
    "two-services",
    "legacy",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures-data/migrate")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fresh copy of a fixture project.
fn project(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("migrate-{name}")).join(name);
    copy_tree(&data().join("projects").join(name), &dir);
    dir
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            if entry.file_type().expect("file type").is_dir() {
                walk(&entry.path(), base, out);
            } else {
                out.push(
                    entry
                        .path()
                        .strip_prefix(base)
                        .expect("under")
                        .to_path_buf(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `kbridge migrate ARGS` with the fixture kubeconfig (contexts `dev` → cluster `aks1`,
/// `aks-dev` → `aks-dev`).
fn migrate(args: &[&str]) -> Output {
    let home = temp_dir("migrate-home");
    Command::new(kbridge_bin())
        .arg("migrate")
        .args(args)
        .env("KUBECONFIG", data().join("kubeconfig.yaml"))
        .env("HOME", home)
        .output()
        .expect("run kbridge migrate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Files whose expected text after `--write` is recorded, relative to the project.
fn expected_files(name: &str) -> Vec<PathBuf> {
    files(&data().join("expected").join(name))
}

#[test]
fn a_dry_run_prints_a_diff_that_applies_and_reverses_and_writes_nothing() {
    for name in PROJECTS {
        let dir = project(name);
        let output = migrate(&[dir.to_str().expect("utf-8 path")]);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{name}: {stderr}");
        assert!(stdout.starts_with("--- a/"), "{name}: {stdout}");
        assert!(
            stderr.contains("nothing written: run `kbridge migrate"),
            "{name}: {stderr}"
        );
        assert_eq!(
            files(&dir),
            files(&data().join("projects").join(name)),
            "{name}: no file added"
        );

        // The diff is exactly the migration: applied, it gives the expected files;
        // reversed, the originals.
        let git_apply = |reverse: bool| {
            let mut command = Command::new("git");
            command.arg("apply").current_dir(&dir);
            if reverse {
                command.arg("-R");
            }
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("git apply");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(stdout.as_bytes())
                .expect("feed diff");
            assert!(
                child.wait().expect("git apply").success(),
                "{name}: git apply -R={reverse}\n{stdout}"
            );
        };
        git_apply(false);
        for file in expected_files(name) {
            assert_eq!(
                read(&dir.join(&file)),
                read(&data().join("expected").join(name).join(&file)),
                "{name}: {}",
                file.display()
            );
        }
        git_apply(true);
        for file in files(&dir) {
            assert_eq!(
                read(&dir.join(&file)),
                read(&data().join("projects").join(name).join(&file)),
                "{name}: {}",
                file.display()
            );
        }
    }
}

#[test]
fn write_rewrites_the_files_keeping_comments_and_other_entries_and_backs_them_up() {
    for name in PROJECTS {
        let dir = project(name);
        let output = migrate(&[dir.to_str().expect("utf-8 path"), "--write"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{name}: {stderr}");
        let expected = expected_files(name);
        for file in &expected {
            assert_eq!(
                read(&dir.join(file)),
                read(&data().join("expected").join(name).join(file)),
                "{name}: {}",
                file.display()
            );
            let mut backup = dir.join(file).into_os_string();
            backup.push(".b2k.bak");
            assert_eq!(
                read(Path::new(&backup)),
                read(&data().join("projects").join(name).join(file)),
                "{name}: backup of {}",
                file.display()
            );
            assert!(
                stderr.contains(&format!("wrote {}", file.display())),
                "{name}: {stderr}"
            );
        }
        // Everything else is as it was: settings, KubernetesLocalProcessConfig.yaml.
        for file in files(&data().join("projects").join(name)) {
            if !expected.contains(&file) {
                assert_eq!(
                    read(&dir.join(&file)),
                    read(&data().join("projects").join(name).join(&file)),
                    "{name}: {}",
                    file.display()
                );
            }
        }
        assert!(
            files(&dir)
                .iter()
                .all(|f| !f.to_string_lossy().ends_with(".tmp")),
            "{name}: no temporary file left"
        );

        // Once migrated, there is nothing more to change.
        let again = migrate(&[dir.to_str().expect("utf-8 path")]);
        assert_eq!(again.status.code(), Some(0));
        assert_eq!(
            text(&again.stdout),
            "",
            "{name}: a second run changes nothing"
        );
    }
}

#[test]
fn the_comments_of_the_original_files_survive() {
    let launch = read(&data().join("expected/python-isolated/.vscode/launch.json"));
    assert!(launch.contains("// Use IntelliSense to learn about possible attributes."));
    assert!(launch.contains("\"FLASK_DEBUG\": \"1\", // reloader off below"));
    assert!(launch.contains("\"jinja\": true,\n"), "trailing comma kept");
    assert!(
        launch.contains("\"name\": \"Python: Flask\","),
        "the local configuration stays"
    );
    let tasks = read(&data().join("expected/python-isolated/.vscode/tasks.json"));
    assert!(tasks.contains("// See https://go.microsoft.com/fwlink/?LinkId=733558"));
    assert!(
        !tasks.contains("Bridge to Kubernetes: isolated"),
        "the removed task's comment goes with it"
    );
    assert!(tasks.contains("\"label\": \"lint\""));
}

/// JSONC as plain JSON: comments and trailing commas dropped (strings left alone).
fn strip_jsonc(text: &str) -> String {
    let (mut out, mut chars) = (String::new(), text.chars().peekable());
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            (',', _) => {
                let rest: String = chars.clone().collect();
                let next = rest.trim_start().chars().next();
                if !matches!(next, Some('}' | ']')) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn every_migrated_configuration_is_one_kbridge_reads() {
    let mut bridged = 0;
    for name in PROJECTS {
        for file in expected_files(name) {
            if !file.ends_with("launch.json") {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&strip_jsonc(&read(
                &data().join("expected").join(name).join(&file),
            )))
            .unwrap_or_else(|e| panic!("{name}/{}: {e}", file.display()));
            for config in json["configurations"].as_array().expect("configurations") {
                if config["type"] != "bridge" {
                    continue;
                }
                let launch: kbridge_config::LaunchConfig = serde_json::from_value(config.clone())
                    .unwrap_or_else(|e| panic!("{name}: kbridge refuses {config}: {e}"));
                let bridge = launch.bridge.expect("a bridge block");
                assert!(
                    bridge.target().expect("one target").is_some(),
                    "{name}: {config}"
                );
                assert!(
                    matches!(
                        launch.debugger,
                        Some(kbridge_config::DebuggerChoice::Preset(_))
                    ),
                    "{name}: {config}"
                );
                assert!(
                    config
                        .get("preLaunchTask")
                        .is_none_or(|t| !t.as_str().unwrap_or("").contains("kubernetes")),
                    "{name}: {config}"
                );
                bridged += 1;
            }
        }
    }
    assert_eq!(
        bridged, 5,
        "python, dotnet, node, go and the older python one"
    );
}

#[test]
fn findings_name_file_and_line_and_say_what_to_do() {
    let findings =
        |name: &str| text(&migrate(&[project(name).to_str().expect("utf-8 path")]).stderr);
    let python = findings("python-isolated");
    assert!(python.contains(".vscode/launch.json:5: migrated: configuration \"Python: Flask with Kubernetes\": type python → bridge (debugger debugpy), service todo-api in namespace todo, isolated as alice-8f3a"), "{python}");
    assert!(
        python.contains(".vscode/tasks.json:11: removed: task \"bridge-to-kubernetes.resource\""),
        "{python}"
    );
    assert!(
        python.contains(".vscode/settings.json:3: to do: a Bridge to Kubernetes setting"),
        "{python}"
    );
    assert!(
        python.contains("KubernetesLocalProcessConfig.yaml: kept: kbridge reads it as it is"),
        "{python}"
    );

    let dotnet = findings("dotnet-compound");
    assert!(dotnet.contains("preLaunchTask is now `build`"), "{dotnet}");
    assert!(dotnet.contains("removed: configuration \"Bridge to Kubernetes\": it only opened Bridge to Kubernetes' wizard"), "{dotnet}");

    let two = findings("two-services");
    for expected in [
        "services/stats/.vscode/tasks.json:4: to do: task \"bridge-to-kubernetes.resource\": `useContainers`",
        "`waitForTraffic`: unknown key",
        "`ports`: Bridge to Kubernetes mapped [8080, 9090]",
        "services/stats/.vscode/launch.json:4: to do: configuration \"Launch Package with Kubernetes\": `mode`: `auto`",
        "services/web/.vscode/tasks.json:4: to do: task \"bridge-to-kubernetes.service\": `isolateAs`: `Alice_Smith` is not a DNS label: the routing name is now `alice-smith`",
        "2 configurations migrated, 2 entries removed, 5 items to do",
    ] {
        assert!(two.contains(expected), "missing {expected:?} in\n{two}");
    }

    let legacy = findings("legacy");
    assert!(legacy.contains(".vscode/launch.json:12: to do: configuration \"Java: Launch with Kubernetes\" not migrated: no kbridge preset runs the `java` debugger"), "{legacy}");
    assert!(
        legacy.contains(
            "`kbridge connect -n mail --service mailer --port 2525` holds the same connection"
        ),
        "{legacy}"
    );
    assert!(
        legacy.contains("preLaunchTask is now `pip install`"),
        "{legacy}"
    );
}

#[test]
fn a_malformed_file_is_named_with_its_line_and_nothing_anywhere_is_written() {
    // The whole tree: three good projects and the malformed one.
    let root = temp_dir("migrate-all");
    copy_tree(&data().join("projects"), &root);
    let before = files(&root);
    let output = migrate(&[root.to_str().expect("utf-8 path"), "--write"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kbridge: error: malformed/.vscode/launch.json:8:13: not valid JSON with comments: expected `,` or `}` after the value of \"request\""), "{stderr}");
    assert_eq!(text(&output.stdout), "", "no diff for a run that stops");
    assert_eq!(files(&root), before, "no backup or temporary file");
    for file in before {
        assert_eq!(
            read(&root.join(&file)),
            read(&data().join("projects").join(&file)),
            "{}",
            file.display()
        );
    }
}

#[test]
fn nothing_to_migrate_and_no_such_directory() {
    let empty = temp_dir("migrate-empty");
    std::fs::create_dir_all(empty.join(".vscode")).expect("mkdir");
    std::fs::write(
        empty.join(".vscode/launch.json"),
        "{\"configurations\": [{\"type\": \"python\", \"name\": \"x\", \"request\": \"launch\"}]}",
    )
    .expect("write");
    let output = migrate(&[empty.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "");
    assert!(
        text(&output.stderr).contains("nothing to migrate under"),
        "{}",
        text(&output.stderr)
    );

    let missing = empty.join("not-there");
    let output = migrate(&[missing.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not-there: no such directory"),
        "{}",
        text(&output.stderr)
    );
}
