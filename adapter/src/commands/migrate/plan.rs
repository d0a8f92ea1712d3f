//! The migration of one workspace folder: which launch configurations become bridge
//! configurations, which Bridge to Kubernetes tasks go, and the new text of
//! `launch.json` and `tasks.json`, with a note for everything the user should know.

use super::b2k::{self, B2kTask, ConnectTask, Resource};
use super::discover::Folder;
use super::edit::{self, Edit, Entry};
use super::jsonc::{self, JsoncError, Node};
use super::report::{shown, Kind, Note};
use super::translate::{self, KubeContext, Surroundings};
use kbridge_config::Preset;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Label prefixes of the tasks Bridge to Kubernetes and its predecessors made.
const TASK_SOURCES: [&str; 3] = [
    "bridge-to-kubernetes",
    "local-process-with-kubernetes",
    "dev-spaces",
];

/// A file and its new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The file.
    pub path: PathBuf,
    /// As shown in messages and diff headers.
    pub shown: String,
    /// Its text now.
    pub before: String,
    /// Its text after the migration.
    pub after: String,
}

/// What migrating a folder does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPlan {
    /// Files whose text changes.
    pub changes: Vec<FileChange>,
    /// Findings.
    pub notes: Vec<Note>,
}

/// Why a folder cannot be migrated; nothing is changed anywhere then.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not JSONC.
    #[error("{path}:{}:{}: not valid JSON with comments: {}; fix it (VS Code shows the same place) and run kbridge migrate again", .error.line, .error.column, .error.message)]
    Malformed {
        /// The file.
        path: String,
        /// Where and why.
        error: JsoncError,
    },
    /// A file is JSONC but not the shape VS Code reads.
    #[error("{path}:{line}: {what}; fix it and run kbridge migrate again")]
    Shape {
        /// The file.
        path: String,
        /// The line.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The planned edits do not fit together: a bug in kbridge.
    #[error("{path}: kbridge could not compute the change ({reason}); nothing was written. Please report this with the file")]
    Internal {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// What the plan is made with besides the folder.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The directory paths are shown relative to.
    pub base: &'a Path,
    /// The kubeconfig's contexts.
    pub contexts: &'a [KubeContext],
}

/// A JSONC file read.
struct Doc {
    path: PathBuf,
    shown: String,
    /// The file as read.
    original: String,
    /// The text edited: the file with `\r\n` read as `\n`.
    text: String,
    /// Whether the file ends its lines with `\r\n` (as on Windows), which the result keeps.
    crlf: bool,
    root: Option<Node>,
}

impl Doc {
    fn load(path: &Path, base: &Path) -> Result<Doc, PlanError> {
        let shown = shown(path, base);
        let original = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: shown.clone(),
            source,
        })?;
        let crlf = original.matches("\r\n").count() * 2 > original.matches('\n').count();
        let text = if crlf {
            original.replace("\r\n", "\n")
        } else {
            original.clone()
        };
        let root = jsonc::parse(&text).map_err(|error| PlanError::Malformed {
            path: shown.clone(),
            error,
        })?;
        Ok(Doc {
            path: path.to_path_buf(),
            shown,
            original,
            text,
            crlf,
            root,
        })
    }

    fn line(&self, pos: usize) -> usize {
        jsonc::line_col(&self.text, pos).0
    }

    /// The array under `key` of the top-level object (none when the key is absent).
    fn list(&self, key: &str) -> Result<&[jsonc::Item], PlanError> {
        let Some(root) = &self.root else {
            return Ok(&[]);
        };
        match root.get(key) {
            None => Ok(&[]),
            Some(
                node @ Node {
                    kind: jsonc::Kind::Array(_),
                    ..
                },
            ) => Ok(node.items()),
            Some(node) => Err(PlanError::Shape {
                path: self.shown.clone(),
                line: self.line(node.span.start),
                what: format!("`{key}` is not a list"),
            }),
        }
    }

    fn note(&self, pos: usize, kind: Kind, text: impl Into<String>) -> Note {
        Note {
            file: self.shown.clone(),
            line: Some(self.line(pos)),
            kind,
            text: text.into(),
        }
    }

    /// The file with `edits` applied, checked to still be JSONC.
    fn changed(&self, edits: Vec<Edit>) -> Result<Option<FileChange>, PlanError> {
        if edits.is_empty() {
            return Ok(None);
        }
        let internal = |reason: String| PlanError::Internal {
            path: self.shown.clone(),
            reason,
        };
        let after = edit::apply(&self.text, edits).map_err(|e| internal(e.to_string()))?;
        jsonc::parse(&after)
            .map_err(|e| internal(format!("the result would be malformed at {e}")))?;
        let after = if self.crlf {
            after.replace('\n', "\r\n")
        } else {
            after
        };
        Ok(Some(FileChange {
            path: self.path.clone(),
            shown: self.shown.clone(),
            before: self.original.clone(),
            after,
        }))
    }
}

/// A task of tasks.json.
struct Task<'a> {
    index: usize,
    node: &'a Node,
    value: Value,
    b2k: Option<Result<B2kTask, b2k::ShapeError>>,
}

impl Task<'_> {
    fn label(&self) -> Option<&str> {
        b2k::label(&self.value)
    }

    fn connect(&self) -> Option<&ConnectTask> {
        match &self.b2k {
            Some(Ok(B2kTask::Connect(task))) => Some(task),
            _ => None,
        }
    }
}

/// The last task with `label`, as VS Code finds it.
fn by_label<'t, 'a>(tasks: &'t [Task<'a>], label: &str) -> Option<&'t Task<'a>> {
    tasks.iter().rev().find(|t| t.label() == Some(label))
}

/// What becomes of one launch configuration.
enum Decision {
    /// Not Bridge to Kubernetes'.
    Untouched,
    /// The placeholder that opened the extension's wizard: removed.
    Wizard,
    /// Left as it is, with the reason and what to do.
    Skipped(String),
    /// Becomes a bridge configuration.
    Migrate(Box<Migration>),
}

struct Migration {
    preset: Preset,
    connect: ConnectTask,
    /// Labels of Bridge to Kubernetes tasks this configuration no longer runs.
    released: Vec<String>,
    /// The task to keep as `preLaunchTask` (what the compound ran besides the connection).
    before: Option<String>,
}

fn decide(config: &Value, tasks: &[Task]) -> Decision {
    let debug_type = config.get("type").and_then(Value::as_str).unwrap_or("");
    if b2k::WIZARD_CONFIGURATION_TYPES.contains(&debug_type) {
        return Decision::Wizard;
    }
    let Some(pre) = config.get("preLaunchTask").and_then(Value::as_str) else {
        return Decision::Untouched;
    };
    let Some(task) = by_label(tasks, pre) else {
        return if TASK_SOURCES.iter().any(|s| pre.starts_with(s)) {
            Decision::Skipped(format!("`preLaunchTask` names `{pre}`, which tasks.json does not define; add `\"bridge\": {{\"service\": …}}` by hand (see `kbridge schema launch`)"))
        } else {
            Decision::Untouched
        };
    };
    let (connect, released, mut before) = match &task.b2k {
        None => return Decision::Untouched,
        Some(Err(error)) => return Decision::Skipped(format!("{error}; not migrated")),
        Some(Ok(B2kTask::Connect(connect))) => {
            ((**connect).clone(), vec![connect.label.clone()], Vec::new())
        }
        Some(Ok(B2kTask::Compound(compound))) => {
            let (connects, rest): (Vec<&String>, Vec<&String>) = compound
                .depends_on
                .iter()
                .partition(|label| by_label(tasks, label).and_then(Task::connect).is_some());
            let [connect] = connects.as_slice() else {
                return Decision::Skipped(format!(
                    "task `{}` runs {} Bridge to Kubernetes connection tasks, where one was expected; not migrated",
                    compound.label,
                    connects.len()
                ));
            };
            let Some(connect) = by_label(tasks, connect).and_then(Task::connect) else {
                return Decision::Untouched;
            };
            let released = vec![compound.label.clone(), connect.label.clone()];
            (
                connect.clone(),
                released,
                rest.into_iter().cloned().collect::<Vec<_>>(),
            )
        }
    };
    for label in &connect.depends_on {
        if !before.contains(label) {
            before.push(label.clone());
        }
    }
    if before.len() > 1 {
        return Decision::Skipped(format!(
            "it runs {} before connecting; make one task that runs them (`dependsOn`), name it in `preLaunchTask`, remove the connection task from it, then run kbridge migrate again",
            before.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if config.get("debugger").is_some() || debug_type == "bridge" {
        return Decision::Skipped(
            "it already has kbridge's `debugger` or `type: bridge`; add the `bridge` block by hand"
                .into(),
        );
    }
    match translate::preset_for(debug_type) {
        Ok(preset) => Decision::Migrate(Box::new(Migration {
            preset,
            connect,
            released,
            before: before.pop(),
        })),
        Err(advice) => Decision::Skipped(advice),
    }
}

/// Plans the migration of `folder`.
pub fn plan_folder(folder: &Folder, ctx: Context<'_>) -> Result<FolderPlan, PlanError> {
    let launch = folder
        .launch
        .as_deref()
        .map(|p| Doc::load(p, ctx.base))
        .transpose()?;
    let tasks_doc = folder
        .tasks
        .as_deref()
        .map(|p| Doc::load(p, ctx.base))
        .transpose()?;
    let task_items = match &tasks_doc {
        Some(doc) => doc.list("tasks")?,
        None => &[],
    };
    let tasks: Vec<Task> = task_items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let value = item.value.to_value();
            Task {
                index,
                node: &item.value,
                b2k: b2k::read_task(&value),
                value,
            }
        })
        .collect();
    let mut plan = FolderPlan::default();
    let config_file = local_process_config(&folder.root);
    let around = Surroundings {
        contexts: ctx.contexts,
        config_file: config_file.as_deref(),
    };
    let mut released = BTreeSet::new();
    let mut still_named = BTreeSet::new();
    if let Some(doc) = &launch {
        let outcome = plan_launch(doc, tasks_doc.as_ref(), &tasks, around, &mut plan.notes)?;
        released = outcome.released;
        still_named = outcome.still_named;
        plan.changes.extend(doc.changed(outcome.edits)?);
    }
    if let Some(doc) = &tasks_doc {
        let edits = plan_tasks(
            doc,
            &tasks,
            &released,
            &still_named,
            around,
            &mut plan.notes,
        );
        plan.changes.extend(doc.changed(edits)?);
    }
    if let Some(settings) = &folder.settings {
        plan.notes.extend(settings_notes(settings, ctx.base));
    }
    // By place; two configurations run by one task report its keys once.
    plan.notes
        .sort_by(|a, b| (&a.file, a.line, a.kind).cmp(&(&b.file, b.line, b.kind)));
    let mut seen = BTreeSet::new();
    plan.notes.retain(|n| seen.insert(n.to_string()));
    Ok(plan)
}

/// `bridge.config` for a folder that has Bridge to Kubernetes' config file at its root,
/// where Bridge to Kubernetes read it.
fn local_process_config(root: &Path) -> Option<String> {
    super::discover::CONFIG_FILE_NAMES
        .iter()
        .find(|name| root.join(name).is_file())
        .map(|name| format!("${{workspaceFolder}}/{name}"))
}

/// What planning launch.json leaves for tasks.json.
struct LaunchOutcome {
    edits: Vec<Edit>,
    /// Bridge to Kubernetes task labels that migrated configurations no longer run.
    released: BTreeSet<String>,
    /// Task labels configurations still name after the migration.
    still_named: BTreeSet<String>,
}

fn plan_launch(
    doc: &Doc,
    tasks_doc: Option<&Doc>,
    tasks: &[Task],
    around: Surroundings<'_>,
    notes: &mut Vec<Note>,
) -> Result<LaunchOutcome, PlanError> {
    let configs = doc.list("configurations")?;
    let entries: Vec<Entry> = configs.iter().map(Entry::from).collect();
    let mut outcome = LaunchOutcome {
        edits: Vec::new(),
        released: BTreeSet::new(),
        still_named: BTreeSet::new(),
    };
    let mut wizards = Vec::new();
    for (index, item) in configs.iter().enumerate() {
        let config = item.value.to_value();
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        let at = item.value.span.start;
        let pre = config
            .get("preLaunchTask")
            .and_then(Value::as_str)
            .map(str::to_string);
        match decide(&config, tasks) {
            Decision::Untouched => outcome.still_named.extend(pre),
            Decision::Wizard => {
                wizards.push(index);
                notes.push(doc.note(at, Kind::Removed, format!("configuration \"{name}\": it only opened Bridge to Kubernetes' wizard; in VS Code, `kbridge: Configure` writes a bridge configuration")));
            }
            Decision::Skipped(why) => {
                outcome.still_named.extend(pre);
                notes.push(doc.note(
                    at,
                    Kind::Todo,
                    format!("configuration \"{name}\" not migrated: {why}"),
                ));
            }
            Decision::Migrate(migration) => {
                let task_at = by_label(tasks, &migration.connect.label).map(|t| t.node.span.start);
                let (block, issues) = translate::bridge_block(&migration.connect, around);
                notes.push(doc.note(
                    at,
                    Kind::Migrated,
                    describe(&name, &config, &migration, &block),
                ));
                outcome
                    .edits
                    .extend(config_edits(doc, &item.value, &migration, block)?);
                for issue in issues {
                    let text = format!(
                        "task \"{}\": `{}`: {}",
                        migration.connect.label, issue.key, issue.advice
                    );
                    if let (Some(tasks_doc), Some(task_at)) = (tasks_doc, task_at) {
                        notes.push(tasks_doc.note(task_at, Kind::Todo, text));
                    }
                }
                for issue in translate::launch_key_notes(&config, migration.preset) {
                    notes.push(doc.note(
                        at,
                        Kind::Todo,
                        format!(
                            "configuration \"{name}\": `{}`: {}",
                            issue.key, issue.advice
                        ),
                    ));
                }
                outcome.still_named.extend(migration.before.clone());
                outcome.released.extend(migration.released);
            }
        }
    }
    outcome
        .edits
        .extend(edit::remove_many(&doc.text, &entries, &wizards));
    Ok(outcome)
}

/// One line saying what a configuration became.
fn describe(
    name: &str,
    config: &Value,
    migration: &Migration,
    block: &serde_json::Map<String, Value>,
) -> String {
    let debug_type = config.get("type").and_then(Value::as_str).unwrap_or("");
    let task = &migration.connect;
    let mut text = format!(
        "configuration \"{name}\": type {debug_type} → bridge (debugger {}), {}",
        migration.preset,
        match &task.resource {
            Resource::Service(s) => format!("service {s}"),
            Resource::Pod(p) => format!("pod {p}"),
        }
    );
    if let Some(namespace) = &task.target_namespace {
        text.push_str(&format!(" in namespace {namespace}"));
    }
    match block.get("isolateAs") {
        Some(Value::String(name)) => text.push_str(&format!(", isolated as {name}")),
        Some(Value::Bool(true)) => text.push_str(", isolated (name generated)"),
        _ => {}
    }
    match &migration.before {
        Some(before) => text.push_str(&format!("; preLaunchTask is now `{before}`")),
        None => text.push_str("; preLaunchTask removed"),
    }
    text
}

/// The edits turning one configuration into a bridge configuration: `type` becomes
/// `bridge`, `debugger` follows it, and the `bridge` block takes the place of
/// `preLaunchTask` (or, when a task must still run first, ends the configuration).
fn config_edits(
    doc: &Doc,
    config: &Node,
    migration: &Migration,
    block: serde_json::Map<String, Value>,
) -> Result<Vec<Edit>, PlanError> {
    let missing = |key: &str| PlanError::Internal {
        path: doc.shown.clone(),
        reason: format!("the configuration has no `{key}`"),
    };
    let members = config.members();
    let type_member = config.member("type").ok_or_else(|| missing("type"))?;
    let pre = config
        .member("preLaunchTask")
        .ok_or_else(|| missing("preLaunchTask"))?;
    let indent = edit::indent_at(&doc.text, type_member.start).to_string();
    let unit = indent_unit(&doc.text, config, &indent);
    let bridge = format!(
        "\"bridge\": {}",
        edit::pretty(&Value::Object(block), &indent, &unit)
    );
    let debugger = format!("\"debugger\": {}", edit::quote(migration.preset.name()));
    let mut edits = vec![edit::replace(&type_member.value, "\"bridge\"")];
    let last = members.last().ok_or_else(|| missing("members"))?;
    let type_is_last = std::ptr::eq(last, type_member);
    match &migration.before {
        None => {
            edits.push(Edit {
                range: pre.start..pre.value.span.end,
                text: bridge,
            });
            edits.extend(edit::insert_after(
                &doc.text,
                Entry::from(type_member),
                &[debugger],
                &indent,
            ));
        }
        Some(before) => {
            edits.push(edit::replace(&pre.value, edit::quote(before)));
            if type_is_last {
                edits.extend(edit::insert_after(
                    &doc.text,
                    Entry::from(last),
                    &[debugger, bridge],
                    &indent,
                ));
            } else {
                edits.extend(edit::insert_after(
                    &doc.text,
                    Entry::from(type_member),
                    &[debugger],
                    &indent,
                ));
                edits.extend(edit::insert_after(
                    &doc.text,
                    Entry::from(last),
                    &[bridge],
                    &indent,
                ));
            }
        }
    }
    Ok(edits)
}

/// One level of indentation in the file: the members' indentation less the object's.
fn indent_unit(text: &str, object: &Node, member_indent: &str) -> String {
    let outer = edit::indent_at(text, object.span.start);
    match member_indent.strip_prefix(outer) {
        Some(unit) if !unit.is_empty() => unit.to_string(),
        _ => "    ".to_string(),
    }
}

fn plan_tasks(
    doc: &Doc,
    tasks: &[Task],
    released: &BTreeSet<String>,
    still_named: &BTreeSet<String>,
    around: Surroundings<'_>,
    notes: &mut Vec<Note>,
) -> Vec<Edit> {
    let gone = removable(tasks, released, still_named);
    let mut indices = Vec::new();
    for task in tasks {
        let Some(label) = task.label() else { continue };
        let at = task.node.span.start;
        if gone.contains(label) {
            indices.push(task.index);
            notes.push(doc.note(
                at,
                Kind::Removed,
                format!("task \"{label}\": no configuration runs it any more"),
            ));
        } else if released.contains(label) {
            notes.push(doc.note(
                at,
                Kind::Kept,
                format!("task \"{label}\": still named by another configuration or task"),
            ));
        } else if let Some(connect) = task.connect() {
            if !still_named.contains(label) && !named_by_tasks(tasks, label, &BTreeSet::new()) {
                notes.push(doc.note(at, Kind::Todo, format!(
                    "task \"{label}\" is not run by any launch configuration; `{}` holds the same connection from a terminal",
                    connect_command(connect, around)
                )));
            }
        }
    }
    let entries: Vec<Entry> = doc
        .list("tasks")
        .map(|items| items.iter().map(Entry::from).collect())
        .unwrap_or_default();
    edit::remove_many(&doc.text, &entries, &indices)
}

/// Released tasks no configuration and no remaining task still names.
fn removable(
    tasks: &[Task],
    released: &BTreeSet<String>,
    still_named: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut gone: BTreeSet<String> = released.difference(still_named).cloned().collect();
    loop {
        let keep: Vec<String> = gone
            .iter()
            .filter(|label| named_by_tasks(tasks, label, &gone))
            .cloned()
            .collect();
        if keep.is_empty() {
            return gone;
        }
        for label in keep {
            gone.remove(&label);
        }
    }
}

/// Whether a task not in `gone` runs `label` through its `dependsOn`.
fn named_by_tasks(tasks: &[Task], label: &str, gone: &BTreeSet<String>) -> bool {
    tasks
        .iter()
        .filter(|t| t.label().is_none_or(|l| !gone.contains(l)))
        .any(|t| b2k::depends_on(&t.value).iter().any(|d| d == label))
}

/// The `kbridge connect` command line for a task no configuration runs.
fn connect_command(task: &ConnectTask, around: Surroundings<'_>) -> String {
    let (block, _) = translate::bridge_block(task, around);
    let mut words = vec!["kbridge connect".to_string()];
    for (key, flag) in [
        ("context", "--context"),
        ("namespace", "-n"),
        ("service", "--service"),
        ("pod", "--pod"),
        ("container", "--container"),
    ] {
        if let Some(value) = block.get(key).and_then(Value::as_str) {
            words.push(format!("{flag} {value}"));
        }
    }
    words.extend(task.ports.iter().map(|p| format!("--port {p}")));
    match block.get("isolateAs") {
        Some(Value::String(name)) => words.push(format!("--isolate-as {name}")),
        Some(Value::Bool(true)) => words.push("--isolate-as".into()),
        _ => {}
    }
    words.join(" ")
}

/// Bridge to Kubernetes' own VS Code settings.
fn settings_notes(path: &Path, base: &Path) -> Vec<Note> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains("\"bridgeToKubernetes."))
        .map(|(index, _)| Note {
            file: shown(path, base),
            line: Some(index + 1),
            kind: Kind::Todo,
            text: "a Bridge to Kubernetes setting: kbridge's extension reads `kbridge.disconnectAfterDebugging` (or set `bridge.disconnectAfterDebugging` per configuration); remove this one".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with `files` (relative path, text) in a fresh temporary directory.
    fn folder(tag: &str, files: &[(&str, &str)]) -> Folder {
        let root = std::env::temp_dir().join(format!("kbridge-plan-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let file = |name: &str| Some(root.join(".vscode").join(name)).filter(|p| p.is_file());
        Folder {
            launch: file("launch.json"),
            tasks: file("tasks.json"),
            settings: None,
            root,
        }
    }

    /// The plan for a folder holding `launch` and `tasks` as .vscode/launch.json and tasks.json.
    fn plan_of(tag: &str, launch: &str, tasks: &str) -> (Folder, FolderPlan) {
        let folder = folder(
            tag,
            &[
                (".vscode/launch.json", launch),
                (".vscode/tasks.json", tasks),
            ],
        );
        let ctx = Context {
            base: &folder.root,
            contexts: &[],
        };
        let plan = plan_folder(&folder, ctx).expect("plans");
        (folder, plan)
    }

    const TASKS: &str = "{\r\n  \"tasks\": [\r\n    {\r\n      \"label\": \"b2k\",\r\n      \"type\": \"bridge-to-kubernetes.resource\",\r\n      \"resource\": \"api\",\r\n      \"resourceType\": \"service\",\r\n      \"ports\": [5000]\r\n    }\r\n  ]\r\n}\r\n";

    #[test]
    fn windows_line_endings_are_kept() {
        let launch = "{\r\n  \"configurations\": [\r\n    {\r\n      \"name\": \"api\",\r\n      \"type\": \"python\",\r\n      \"preLaunchTask\": \"b2k\"\r\n    }\r\n  ]\r\n}\r\n";
        let (folder, plan) = plan_of("crlf", launch, TASKS);
        assert_eq!(plan.changes.len(), 2);
        let after = &plan.changes[0].after;
        assert_eq!(
            after.matches('\n').count(),
            after.matches("\r\n").count(),
            "{after:?}"
        );
        assert!(
            after.contains("\"debugger\": \"debugpy\",\r\n"),
            "{after:?}"
        );
        let _ = std::fs::remove_dir_all(&folder.root);
    }

    #[test]
    fn a_task_another_task_still_runs_is_kept() {
        let launch = r#"{"configurations": [{"name": "a", "type": "go", "request": "launch", "preLaunchTask": "b2k"}]}"#;
        let tasks = TASKS.replace("\r\n", "\n").replace(
            "  ]",
            "  ,{\"label\": \"all\", \"dependsOn\": [\"b2k\", \"lint\"]}\n  ]",
        );
        let (folder, plan) = plan_of("kept", launch, &tasks);
        assert_eq!(plan.changes.len(), 1, "tasks.json unchanged");
        assert!(
            plan.notes
                .iter()
                .any(|n| n.kind == Kind::Kept && n.text.contains("\"b2k\"")),
            "{:?}",
            plan.notes
        );
        let _ = std::fs::remove_dir_all(&folder.root);
    }

    #[test]
    fn a_configuration_with_an_unknown_debugger_keeps_its_task() {
        let launch =
            r#"{"configurations": [{"name": "j", "type": "java", "preLaunchTask": "b2k"}]}"#;
        let (folder, plan) = plan_of("java", launch, TASKS);
        assert!(plan.changes.is_empty());
        assert!(
            plan.notes
                .iter()
                .any(|n| n.kind == Kind::Todo && n.text.contains("`java`")),
            "{:?}",
            plan.notes
        );
        let _ = std::fs::remove_dir_all(&folder.root);
    }
}
