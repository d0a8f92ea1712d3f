//! `kbridge doctor`: what kbridge can find on this machine, and what to do about what
//! it cannot.

use kbridge::debugger::{self, presets::install_hint};
use kbridge_config::{DebuggerChoice, Preset};
use std::process::ExitCode;

/// Prints the checks; exit code 0 when at least one debugger is usable.
pub fn run() -> ExitCode {
    println!("kbridge {}", env!("CARGO_PKG_VERSION"));
    println!("\nDebuggers:");
    let mut found = 0;
    for preset in Preset::ALL {
        match debugger::resolve(&DebuggerChoice::Preset(preset)) {
            Ok(spec) => {
                found += 1;
                let args = spec.args.join(" ");
                println!(
                    "  ok       {:<11} {} {args}",
                    preset.name(),
                    spec.program.display()
                );
            }
            Err(_) => println!(
                "  missing  {:<11} {}",
                preset.name(),
                install_hint(Some(preset))
            ),
        }
    }
    println!("\nKubernetes:");
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".kube/config"))
        });
    match kubeconfig {
        Some(path) if path.exists() => println!("  ok       kubeconfig {}", path.display()),
        Some(path) => println!(
            "  missing  kubeconfig {} (set KUBECONFIG, or start the fixture cluster: see README)",
            path.display()
        ),
        None => println!("  missing  kubeconfig (neither KUBECONFIG nor HOME is set)"),
    }
    println!("\nLogs: {}", kbridge::session::state_root().display());
    if found == 0 {
        println!("\nNo debugger found: install one of the above.");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
