//! `modelgate generate …`: man pages and shell completions, made from the
//! CLI's own definition (so they cannot disagree with `--help`).

use std::path::PathBuf;

use clap::{Args, Command, Subcommand};
use clap_complete::Shell;

use crate::Failure;

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// Write man pages: modelgate.1 and one per subcommand (modelgate-node-serve.1, …).
    Man(ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
}

#[derive(Args)]
pub struct ManArgs {
    /// Directory to write the pages to (made if missing; pages are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell. For bash: `modelgate generate completions bash > /etc/bash_completion.d/modelgate`.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(cmd: GenerateCommand, mut cli: Command) -> Result<(), Failure> {
    match cmd {
        GenerateCommand::Completions(a) => {
            clap_complete::generate(a.shell, &mut cli, "modelgate", &mut std::io::stdout());
            Ok(())
        }
        GenerateCommand::Man(a) => {
            std::fs::create_dir_all(&a.out)
                .map_err(|e| Failure::Usage(format!("couldn't create {}: {e}", a.out.display())))?;
            cli.build();
            let mut n = 0;
            write_pages(&cli, "modelgate", &a.out, &mut n)?;
            eprintln!("wrote {n} man pages to {}", a.out.display());
            Ok(())
        }
    }
}

/// A page for `cmd` (named `name`), then one for each of its subcommands.
fn write_pages(cmd: &Command, name: &str, dir: &std::path::Path, n: &mut usize) -> Result<(), Failure> {
    let page = cmd.clone().name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut bytes)
        .map_err(|e| Failure::Usage(format!("rendering {name}: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).map_err(|e| Failure::Usage(format!("couldn't write {}: {e}", path.display())))?;
    *n += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, n)?;
    }
    Ok(())
}
