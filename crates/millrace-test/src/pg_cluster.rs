//! A private PostgreSQL cluster that a test may crash and restart: the shared server is never
//! restarted. Used by the proof under load (`tests/proof.rs`) and the chaos soak
//! (`tests/soak.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A PostgreSQL cluster of this test's own, on a free port, with trust authentication: the
/// shared server is never restarted. `initdb` and `pg_ctl` refuse to run as root, so as root
/// they run as the `postgres` user. Dropping it stops the server and deletes its files, also
/// when the test fails.
///
/// # Panics
///
/// Its methods panic when PostgreSQL's tools fail: it is a test fixture.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use millrace_test::pg_cluster::Cluster;
///
/// let cluster = Cluster::start();
/// let url = cluster.url();
/// cluster.restart(Duration::from_secs(1));
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl Cluster {
    /// Its directory in the temp dir: this prefix, the test process's id, `-`, the port.
    const DIR_PREFIX: &'static str = "millrace-proof-pg-";

    /// Runs `initdb` in a fresh directory and starts the server on a free port.
    pub fn start() -> Cluster {
        let bin = postgres_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let as_root = command_output(Command::new("id").arg("-u")).trim() == "0";
        Self::reap_stale(&bin, as_root);
        let dir =
            std::env::temp_dir().join(format!("{}{}-{port}", Self::DIR_PREFIX, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        // From here on, dropping the guard cleans up.
        let cluster = Cluster {
            bin,
            dir,
            port,
            as_root,
        };
        if as_root {
            command_output(Command::new("chown").arg("postgres:").arg(&cluster.dir));
        }
        cluster.tool("initdb", |cmd| {
            cmd.arg("-D").arg(&cluster.dir);
            cmd.args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]);
        });
        cluster.start_server();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops and deletes the clusters of test processes that died before their guard ran
    /// (killed at a timeout, say).
    fn reap_stale(bin: &Path, as_root: bool) {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix(Self::DIR_PREFIX))
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if Path::new("/proc").join(owner).exists() {
                continue;
            }
            drop(Cluster {
                bin: bin.to_owned(),
                dir: entry.path(),
                port: 0,
                as_root,
            });
        }
    }

    fn start_server(&self) {
        // fsync off: the machine does not crash, only PostgreSQL does, and WAL written to the
        // kernel survives that; commits stay synchronous.
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off \
             -c max_connections=60",
            self.port,
            self.dir.display()
        );
        self.tool("pg_ctl", |cmd| {
            cmd.arg("-D").arg(&self.dir);
            cmd.arg("-l").arg(self.dir.join("server.log"));
            cmd.args(["-w", "-t", "30", "-o", &options, "start"]);
        });
    }

    /// Stops PostgreSQL as a crash would (every backend killed, recovery at start), stays
    /// down for `outage`, and starts it again.
    pub fn restart(&self, outage: Duration) {
        self.tool("pg_ctl", |cmd| {
            cmd.arg("-D").arg(&self.dir);
            cmd.args(["-m", "immediate", "-w", "stop"]);
        });
        std::thread::sleep(outage);
        self.start_server();
    }

    /// Runs one of PostgreSQL's tools, as `postgres` when we are root.
    fn tool(&self, name: &str, args: impl FnOnce(&mut Command)) -> String {
        let program = self.bin.join(name);
        let mut cmd = if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        args(&mut cmd);
        command_output(&mut cmd)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.join("postmaster.pid").exists() {
            let program = self.bin.join("pg_ctl");
            let mut cmd = if self.as_root {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(program);
                cmd
            } else {
                Command::new(program)
            };
            let _ = cmd
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `pg_ctl`: `MILLRACE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
fn postgres_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("MILLRACE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        _ => panic!(
            "cannot find PostgreSQL's initdb and pg_ctl: install PostgreSQL's server package or \
             set MILLRACE_PG_BIN to their directory"
        ),
    }
}

fn command_output(cmd: &mut Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    assert!(
        status.success(),
        "{cmd:?} failed ({status}):\n{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}
