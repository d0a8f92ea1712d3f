//! `kbridge migrate [DIR] [--write]`: brings a Bridge to Kubernetes project over. Its
//! launch configurations that ran a Bridge to Kubernetes `preLaunchTask` become
//! `"type": "bridge"` configurations (the original `type` becomes the `debugger` preset,
//! the task's target the `bridge` block), the tasks no configuration needs any more are
//! removed, and `KubernetesLocalProcessConfig.yaml` stays as it is (kbridge reads it).
//! The diff goes to stdout, findings to stderr; `--write` replaces the files all at once.
//!
//! - [`discover`]: where the files are;
//! - [`b2k`]: the shapes Bridge to Kubernetes wrote;
//! - [`translate`]: a task and a configuration in kbridge's terms;
//! - [`plan`]: the new text of one folder's files;
//! - [`jsonc`], [`edit`]: reading and changing JSONC in place;
//! - [`report`]: the diff and the findings; [`write`]: replacing the files.

pub mod b2k;
pub mod discover;
pub mod edit;
/// The JSONC reader, shared with `kbridge lsp` (`adapter/src/jsonc.rs`).
pub use kbridge::jsonc;
pub mod plan;
pub mod report;
pub mod translate;
pub mod write;

use plan::{Context, FileChange};
use report::{shown, Kind, Note};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Why `kbridge migrate` stopped; nothing was written then.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The directory cannot be searched.
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    /// A folder's files cannot be read or changed.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// `--write` failed.
    #[error(transparent)]
    Write(#[from] write::WriteError),
}

/// Runs `kbridge migrate`: 0 when done (or nothing to migrate), 1 on an error.
pub fn run(dir: &Path, write: bool) -> ExitCode {
    match migrate(dir, write) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kbridge: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the migration of a directory changes and finds.
#[derive(Debug, Default)]
struct Outcome {
    changes: Vec<FileChange>,
    notes: Vec<Note>,
}

fn migrate(dir: &Path, write: bool) -> Result<(), MigrateError> {
    let found = discover::discover(dir)?;
    let contexts = translate::kube_contexts();
    let ctx = Context {
        base: dir,
        contexts: &contexts,
    };
    let mut outcome = Outcome::default();
    for folder in &found.folders {
        let plan = plan::plan_folder(folder, ctx)?;
        outcome.changes.extend(plan.changes);
        outcome.notes.extend(plan.notes);
    }
    let b2k_found = !outcome.notes.is_empty() || !outcome.changes.is_empty();
    outcome
        .notes
        .extend(workspace_notes(&found.workspaces, dir));
    if b2k_found || !outcome.notes.is_empty() {
        outcome
            .notes
            .extend(config_file_notes(&found.config_files, dir));
    }
    if outcome.changes.is_empty() && outcome.notes.is_empty() {
        eprintln!(
            "kbridge migrate: nothing to migrate under {}: no launch configuration or task of Bridge to Kubernetes found (looked in {} VS Code folder{})",
            dir.display(),
            found.folders.len(),
            if found.folders.len() == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    print_diff(&outcome.changes);
    for note in &outcome.notes {
        eprintln!("{note}");
    }
    eprintln!("{}", summary(&outcome));
    if outcome.changes.is_empty() {
        return Ok(());
    }
    if write {
        write::write_all(&outcome.changes)?;
        for change in &outcome.changes {
            eprintln!(
                "wrote {} (the old one is {}{})",
                change.shown,
                change.shown,
                write::BACKUP_SUFFIX
            );
        }
    } else {
        eprintln!(
            "nothing written: run `kbridge migrate {} --write` to apply this diff (each file is kept as FILE{})",
            dir.display(),
            write::BACKUP_SUFFIX
        );
    }
    Ok(())
}

/// The diffs on stdout; a closed pipe (`| head`) is not an error.
fn print_diff(changes: &[FileChange]) {
    let mut out = std::io::stdout().lock();
    for change in changes {
        let diff = report::unified_diff(&change.shown, &change.before, &change.after);
        if out.write_all(diff.as_bytes()).is_err() {
            return;
        }
    }
    let _ = out.flush();
}

fn summary(outcome: &Outcome) -> String {
    let count = |kind| outcome.notes.iter().filter(|n| n.kind == kind).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{} migrated, {} removed, {} to do",
        plural(count(Kind::Migrated), "configuration"),
        plural(count(Kind::Removed), "entry"),
        plural(count(Kind::Todo), "item")
    )
    .replace("entrys", "entries")
}

/// Multi-root workspace files that mention Bridge to Kubernetes: not edited.
fn workspace_notes(workspaces: &[std::path::PathBuf], base: &Path) -> Vec<Note> {
    workspaces
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            let line = text.lines().position(|l| {
                b2k::CONNECT_TASK_TYPES
                    .iter()
                    .chain(&b2k::COMPOUND_LABELS)
                    .chain(&b2k::WIZARD_CONFIGURATION_TYPES)
                    .any(|name| l.contains(name))
            })?;
            Some(Note {
                file: shown(path, base),
                line: Some(line + 1),
                kind: Kind::Todo,
                text: "a workspace file with Bridge to Kubernetes launch or task entries is not changed: move them to a folder's .vscode/launch.json and tasks.json and run kbridge migrate again, or write the `bridge` block by hand".into(),
            })
        })
        .collect()
}

/// `KubernetesLocalProcessConfig.yaml` and `azds-local.env` files: kept, checked that
/// kbridge reads them.
fn config_file_notes(files: &[std::path::PathBuf], base: &Path) -> Vec<Note> {
    files
        .iter()
        .map(|path| {
            let file = shown(path, base);
            let read = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    let parsed = if kbridge_config::azds_env::is_azds_env(&file) {
                        kbridge_config::azds_env::parse_azds_env(&text, &file)
                    } else {
                        kbridge_config::local_process::LocalProcessConfig::parse(&text, &file)
                    };
                    parsed.map_err(|e| e.to_string())
                });
            match read {
                Ok(_) => Note {
                    file,
                    line: None,
                    kind: Kind::Kept,
                    text: "kbridge reads it as it is (`bridge.config` names it)".into(),
                },
                Err(error) => Note {
                    file,
                    line: None,
                    kind: Kind::Todo,
                    text: format!("kbridge cannot read it yet: {error}"),
                },
            }
        })
        .collect()
}
