//! Man pages and shell completions made from a binary's command-line definition
//! (`clap_mangen`, `clap_complete`), so they never drift from the options. Each binary
//! writes its own when started with `DFS_GENERATE_DOCS=DIR` (the install script does).
//!
//! Owns: the layout under DIR (`man1/NAME.1`, `bash/NAME`, `zsh/_NAME`, `fish/NAME.fish`).
//! Must not run anything else.

use clap_complete::Shell;
use std::path::Path;

/// The variable that asks a binary for its docs instead of its work.
pub const ENV: &str = "DFS_GENERATE_DOCS";

/// Writes the man page and completions of `cmd` under `dir`.
pub fn generate(mut cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    std::fs::create_dir_all(dir.join("man1"))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join("man1").join(format!("{name}.1")), page)?;
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        std::fs::write(dir.join(sub).join(file), out)?;
    }
    Ok(())
}

/// If `DFS_GENERATE_DOCS` is set: writes the docs of `cmd` there and says how it went
/// (the exit status); else `None`.
pub fn generate_if_asked(cmd: impl FnOnce() -> clap::Command) -> Option<std::process::ExitCode> {
    let dir = std::env::var_os(ENV)?;
    let cmd = cmd();
    let name = cmd.get_name().to_string();
    Some(match generate(cmd, Path::new(&dir)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{name}: cannot write its docs to {}: {e}",
                Path::new(&dir).display()
            );
            std::process::ExitCode::FAILURE
        }
    })
}
