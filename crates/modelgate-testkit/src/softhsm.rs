//! A SoftHSM2 token of its own for a test: Debian's `softhsm2` and OpenSC's
//! `pkcs11-tool` (scripts/test.sh installs both), a configuration file and
//! token directory in the test's temporary directory, keys made on the
//! token, and the token taken away and put back (its directory moved) to
//! stand for a token pulled out of a running machine. A test that needs a
//! token cannot run without one: these panics say what is missing.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// SoftHSM2 tokens in a directory of their own, all with one user PIN.
pub struct SoftHsm {
    dir: PathBuf,
    conf: PathBuf,
    pin: String,
}

impl SoftHsm {
    /// A token directory in `dir` (created) whose tokens have user PIN `pin`.
    ///
    /// # Panics
    /// When SoftHSM2 is not installed, or a tool fails: a test that needs a
    /// token cannot run without one.
    pub fn new(dir: &Path, pin: &str) -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} is missing: scripts/test.sh installs Debian's softhsm2"
        );
        std::fs::create_dir_all(dir.join("tokens")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        Self {
            dir: dir.to_owned(),
            conf,
            pin: pin.to_owned(),
        }
    }

    /// Initialise a token `label` in a free slot.
    pub fn add_token(&self, label: &str) {
        self.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                &self.pin,
                "--so-pin",
                "87654321",
            ],
        );
    }

    /// Run `cmd` with this token's configuration; panics unless it succeeds.
    pub fn tool(&self, cmd: &str, args: &[&str]) -> Output {
        let o = Command::new(cmd)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| {
                panic!("{cmd}: {e} (Debian packages softhsm2 and opensc; scripts/test.sh installs them)")
            });
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Make a key pair `object` of `kind` (`pkcs11-tool --key-type`:
    /// `EC:edwards25519`, `EC:prime256v1`, `EC:secp384r1`) on `token`.
    pub fn keygen(&self, token: &str, object: &str, kind: &str) {
        self.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                token,
                "--login",
                "--pin",
                &self.pin,
                "--keypairgen",
                "--key-type",
                kind,
                "--label",
                object,
            ],
        );
    }

    /// The URI of `object` on `token`, its PIN in a file beside the tokens.
    pub fn uri(&self, token: &str, object: &str) -> String {
        let pin = self.dir.join("pin");
        if !pin.exists() {
            std::fs::write(&pin, format!("{}\n", self.pin)).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
        }
        format!("pkcs11:token={token};object={object}?pin-source=file:{}", pin.display())
    }

    /// The configuration file: give it to processes as `SOFTHSM2_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Take the tokens away: their directory moves aside, as if pulled out.
    pub fn remove(&self) {
        std::fs::rename(self.dir.join("tokens"), self.dir.join("tokens.out"))
            .unwrap_or_else(|e| panic!("removing the token: {e}"));
        std::fs::create_dir(self.dir.join("tokens")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Put it back.
    pub fn restore(&self) {
        std::fs::remove_dir(self.dir.join("tokens")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(self.dir.join("tokens.out"), self.dir.join("tokens"))
            .unwrap_or_else(|e| panic!("restoring the token: {e}"));
    }
}
