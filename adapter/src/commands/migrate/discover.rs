//! Finding what a Bridge to Kubernetes project left under a directory: VS Code
//! workspace folders (`.vscode/launch.json`, `tasks.json`, `settings.json`), multi-root
//! `*.code-workspace` files and `KubernetesLocalProcessConfig.yaml` / `azds-local.env`.

use std::path::{Path, PathBuf};

/// Directories never searched: dependencies, build output, version control.
const SKIPPED_DIRS: [&str; 12] = [
    ".git",
    "node_modules",
    "target",
    "vendor",
    "bin",
    "obj",
    "dist",
    "build",
    ".venv",
    "venv",
    "__pycache__",
    ".terraform",
];

/// How deep below the directory folders are looked for.
const MAX_DEPTH: usize = 8;

/// The file names Bridge to Kubernetes read its local-process configuration from.
pub const CONFIG_FILE_NAMES: [&str; 2] = ["KubernetesLocalProcessConfig.yaml", "azds-local.env"];

/// A VS Code workspace folder: a directory with a `.vscode` holding launch or task files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The folder (`${workspaceFolder}`).
    pub root: PathBuf,
    /// `.vscode/launch.json`, when present.
    pub launch: Option<PathBuf>,
    /// `.vscode/tasks.json`, when present.
    pub tasks: Option<PathBuf>,
    /// `.vscode/settings.json`, when present.
    pub settings: Option<PathBuf>,
}

/// Everything found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Workspace folders, in path order.
    pub folders: Vec<Folder>,
    /// `*.code-workspace` files.
    pub workspaces: Vec<PathBuf>,
    /// `KubernetesLocalProcessConfig.yaml` and `azds-local.env` files.
    pub config_files: Vec<PathBuf>,
}

/// The directory to migrate cannot be searched.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Not there, or not a directory.
    #[error("{0}: no such directory")]
    NotADirectory(PathBuf),
    /// Not readable.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Searches `dir` and the directories under it (not following symbolic links).
pub fn discover(dir: &Path) -> Result<Found, DiscoverError> {
    if !dir.is_dir() {
        return Err(DiscoverError::NotADirectory(dir.to_path_buf()));
    }
    std::fs::read_dir(dir).map_err(|source| DiscoverError::Unreadable {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found = Found::default();
    walk(dir, 0, &mut found);
    found.folders.sort_by(|a, b| a.root.cmp(&b.root));
    found.workspaces.sort();
    found.config_files.sort();
    Ok(found)
}

fn walk(dir: &Path, depth: usize, found: &mut Found) {
    // A directory that cannot be read below the top is skipped, as `find` would report
    // and go on; nothing of a project is expected in one.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if kind.is_dir() {
            if name == ".vscode" {
                found.folders.extend(folder(dir, &path));
            } else if !SKIPPED_DIRS.contains(&name.as_ref()) && depth < MAX_DEPTH {
                subdirs.push(path);
            }
        } else if kind.is_file() {
            if name.ends_with(".code-workspace") {
                found.workspaces.push(path);
            } else if CONFIG_FILE_NAMES.contains(&name.as_ref()) {
                found.config_files.push(path);
            }
        }
    }
    for subdir in subdirs {
        walk(&subdir, depth + 1, found);
    }
}

/// The folder whose `.vscode` is `vscode`, if it holds launch or task files.
fn folder(root: &Path, vscode: &Path) -> Option<Folder> {
    let file = |name: &str| Some(vscode.join(name)).filter(|p| p.is_file());
    let folder = Folder {
        root: root.to_path_buf(),
        launch: file("launch.json"),
        tasks: file("tasks.json"),
        settings: file("settings.json"),
    };
    (folder.launch.is_some() || folder.tasks.is_some() || folder.settings.is_some())
        .then_some(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_folders_and_config_files_but_not_in_dependencies() {
        let dir = std::env::temp_dir().join(format!("kbridge-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in [
            ("api/.vscode/launch.json", "{}"),
            ("api/.vscode/tasks.json", "{}"),
            ("api/KubernetesLocalProcessConfig.yaml", "version: 0.1"),
            ("web/.vscode/tasks.json", "{}"),
            ("web/node_modules/x/.vscode/launch.json", "{}"),
            ("all.code-workspace", "{}"),
            ("empty/.vscode/extensions.json", "{}"),
        ] {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let found = discover(&dir).expect("discovers");
        let roots: Vec<_> = found
            .folders
            .iter()
            .map(|f| f.root.strip_prefix(&dir).expect("under"))
            .collect();
        assert_eq!(roots, [Path::new("api"), Path::new("web")]);
        assert!(found.folders[0].launch.is_some() && found.folders[1].launch.is_none());
        assert_eq!(
            found.config_files,
            [dir.join("api/KubernetesLocalProcessConfig.yaml")]
        );
        assert_eq!(found.workspaces, [dir.join("all.code-workspace")]);
        assert!(matches!(
            discover(&dir.join("nope")),
            Err(DiscoverError::NotADirectory(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
