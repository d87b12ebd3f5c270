//! A private PostgreSQL cluster with TLS, for tests of connection settings: started on a free
//! port in a temporary folder with a certificate authority generated for it, and stopped and
//! deleted when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The role that may log in only with a client certificate (`hostssl … cert`).
pub const CERT_USER: &str = "millrace_cert";

/// A throwaway PostgreSQL cluster listening on `127.0.0.1` with `ssl = on`.
///
/// The server's certificate is issued by [`TlsCluster::ca`] for the name `localhost` only, so
/// connecting to `127.0.0.1` with `verify-full` fails on the host name. Every role logs in
/// without a password (`trust`), except [`CERT_USER`], which needs a client certificate
/// issued by the same authority ([`TlsCluster::client_cert`]). A second authority,
/// [`TlsCluster::wrong_ca`], issued nothing the server holds.
///
/// `initdb` and `pg_ctl` refuse to run as root, so under root they run as the `postgres`
/// user, as `scripts/test.sh` does.
///
/// # Panics
///
/// [`TlsCluster::start`] panics when the cluster cannot be made or started: it is a test
/// fixture.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// let cluster = millrace_test::cluster::TlsCluster::start().await;
/// let url = format!(
///     "{}?sslmode=verify-full&sslrootcert={}",
///     cluster.url("localhost"),
///     cluster.ca().display()
/// );
/// # }
/// ```
#[derive(Debug)]
pub struct TlsCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl TlsCluster {
    /// Generates the certificates, runs `initdb` and starts the server.
    pub async fn start() -> TlsCluster {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("start the TLS cluster")
    }

    fn start_blocking() -> TlsCluster {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "millrace-tls-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster folder");
        let cluster = TlsCluster {
            bin: pg_bindir(),
            port: free_port(),
            dir,
        };
        cluster.write_certificates();
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir));
        }
        let data = cluster.dir.join("data");
        cluster.as_postgres(|cmd| {
            cmd.arg(cluster.bin.join("initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"]);
        });
        // The certificate user first: pg_hba.conf takes the first line that matches.
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 host all {CERT_USER} 127.0.0.1/32 reject\n\
                 local all all trust\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
        )
        .expect("write pg_hba.conf");
        // In postgresql.conf rather than on the command line, which would outrank the
        // ALTER SYSTEM of set_ssl.
        let file = |name: &str| cluster.dir.join(name).display().to_string();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(
            &mut conf,
            format!(
                "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                file("server.crt"),
                file("server.key"),
                file("ca.crt"),
            )
            .as_bytes(),
        )
        .expect("write postgresql.conf");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            cluster.port,
            cluster.dir.display(),
        );
        cluster.as_postgres(|cmd| {
            cmd.arg(cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]);
        });
        cluster.psql(&format!("CREATE ROLE {CERT_USER} LOGIN"));
        cluster
    }

    /// `postgres://postgres@HOST:PORT/postgres`, with no parameters.
    pub fn url(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// The port the server listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The authority that issued the server's and the client's certificates (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// An authority that issued nothing the server holds (PEM).
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.join("wrong-ca.crt")
    }

    /// The client certificate and key (PEM, the key in PKCS#8) for [`CERT_USER`].
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.crt"), self.dir.join("client.key"))
    }

    /// Turns the server's TLS on or off, with a configuration reload: new connections see it
    /// at once.
    pub fn set_ssl(&self, on: bool) {
        self.psql(&format!("ALTER SYSTEM SET ssl = {on}"));
        self.psql("SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until the postmaster has read it.
        for _ in 0..100 {
            let out = self.psql_output("SHOW ssl");
            if out.trim() == if on { "on" } else { "off" } {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the cluster did not turn ssl {on}");
    }

    fn psql(&self, sql: &str) {
        self.psql_output(sql);
    }

    /// Runs `sql` through the socket, as the cluster's superuser.
    fn psql_output(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write_certificates(&self) {
        let write = |name: &str, text: String| {
            let path = self.dir.join(name);
            std::fs::write(&path, text).expect("write a certificate file");
            // PostgreSQL refuses a key that others can read.
            set_mode(&path, 0o600);
        };
        let (ca_params, ca_key) = authority("Millrace test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("sign the CA");
        write("ca.crt", ca_cert.pem());
        let ca = Issuer::new(ca_params, ca_key);

        let (wrong_params, wrong_key) = authority("Millrace wrong CA");
        write(
            "wrong-ca.crt",
            wrong_params.self_signed(&wrong_key).expect("sign").pem(),
        );

        let server_key = KeyPair::generate().expect("generate a key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("server certificate parameters")
            .signed_by(&server_key, &ca)
            .expect("sign the server certificate");
        write("server.crt", server.pem());
        write("server.key", server_key.serialize_pem());

        let client_key = KeyPair::generate().expect("generate a key");
        let mut client_params = CertificateParams::new(Vec::new()).expect("client parameters");
        // The server maps a certificate to the role named by its common name.
        client_params
            .distinguished_name
            .push(DnType::CommonName, CERT_USER);
        let client = client_params
            .signed_by(&client_key, &ca)
            .expect("sign the client certificate");
        write("client.crt", client.pem());
        write("client.key", client_key.serialize_pem());
    }

    fn as_postgres(&self, build: impl FnOnce(&mut Command)) {
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]);
            cmd
        } else {
            // Command::new needs a program; the closure adds it as the first argument.
            Command::new("env")
        };
        build(&mut cmd);
        run(&mut cmd);
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if data.join("postmaster.pid").exists() {
            let mut cmd = if is_root() {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]);
                cmd
            } else {
                Command::new("env")
            };
            let _ = cmd
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params, KeyPair::generate().expect("generate a key"))
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("run {cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The server binaries: `pg_config --bindir`, else the newest under /usr/lib/postgresql.
fn pg_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// A port nothing listens on now. Another process may take it before the server does; the
/// start then fails loudly, which is rare enough for a test.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}
