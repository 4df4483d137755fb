//! PostgreSQL for tests and benchmarks: the server `MODELGATE_POSTGRES_URL`
//! names (`scripts/test.sh` starts one with `scripts/postgres.sh`), or for a
//! benchmark run by hand a throwaway cluster of its own; and fresh
//! databases on it. Failing to get them fails the test or benchmark that
//! asked, loudly, with what to do: that is what these panics are for.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");

/// A PostgreSQL server a superuser may use.
pub struct Server {
    /// Its URL (`postgres://postgres@127.0.0.1:PORT/postgres`).
    pub url: String,
    /// The throwaway cluster's directory, when this started one.
    cluster: Option<String>,
}

impl Server {
    /// The server tests must have; panics, saying how to get one, without it.
    pub fn required() -> Self {
        let url = std::env::var("MODELGATE_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "MODELGATE_POSTGRES_URL is not set: this needs a PostgreSQL server \
                 (scripts/test.sh starts one with scripts/postgres.sh)"
            )
        });
        Self { url, cluster: None }
    }

    /// `MODELGATE_POSTGRES_URL`, or a throwaway cluster `scripts/postgres.sh`
    /// starts (and stops when this is dropped).
    pub fn or_start() -> Self {
        if std::env::var_os("MODELGATE_POSTGRES_URL").is_some() {
            return Self::required();
        }
        let out = Command::new(SCRIPT)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("{SCRIPT}: {e}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let (url, dir) = line
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("{SCRIPT} said {line:?}"));
        Self {
            url: url.to_owned(),
            cluster: Some(dir.to_owned()),
        }
    }

    /// A fresh, empty database `name` (an older one dropped first): its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url));
        // Two statements, two calls: a multi-statement batch is one
        // transaction, which DROP DATABASE refuses.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.batch_execute(&sql).unwrap_or_else(|e| {
                let why = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned());
                panic!("{sql}: {why}")
            });
        }
        let base = self.url.rsplit_once('/').map_or(self.url.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.cluster {
            let _ = Command::new(SCRIPT).args(["stop", dir]).status();
        }
    }
}
