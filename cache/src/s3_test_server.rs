//! A real S3-compatible server (moto's) on 127.0.0.1 for tests, in this
//! crate and in end-to-end tests of the binary. `scripts/ensure-s3.sh`
//! installs it; this module only starts and stops it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::{S3Credentials, S3Options};

/// Longest wait for the server to accept connections (Python imports).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries with a fresh port when another process takes ours first.
const START_TRIES: usize = 3;
/// Keys the server accepts; moto checks none, but the SDK signs with them.
const TEST_ACCESS_KEY: &str = "shardline-test";
const TEST_SECRET_KEY: &str = "shardline-test-secret";

/// Why the test server could not start; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the S3 test server: {0}")]
pub struct S3TestServerError(String);

/// A moto server process on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct S3TestServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile_dir::TempDir,
}

impl S3TestServer {
    /// The Python with moto installed: `SHARDLINE_S3_TEST_PYTHON`, else the
    /// virtual environment `scripts/ensure-s3.sh` makes
    /// (`SHARDLINE_S3_VENV`, default `~/.cache/shardline/venv`).
    pub fn python() -> PathBuf {
        if let Some(python) = std::env::var_os("SHARDLINE_S3_TEST_PYTHON") {
            return PathBuf::from(python);
        }
        let venv = std::env::var_os("SHARDLINE_S3_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
                PathBuf::from(home).join(".cache/shardline/venv")
            });
        venv.join("bin/python")
    }

    /// Starts the server on a free loopback port and waits until it accepts
    /// connections.
    pub fn start() -> Result<Self, S3TestServerError> {
        let python = Self::python();
        if !python.exists() {
            return Err(S3TestServerError(format!(
                "{} does not exist; run scripts/ensure-s3.sh to install moto's server \
                 (or set SHARDLINE_S3_TEST_PYTHON)",
                python.display()
            )));
        }
        let mut last_error = String::new();
        for _ in 0..START_TRIES {
            match Self::start_once(&python) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(S3TestServerError(format!(
            "{last_error}; run scripts/ensure-s3.sh and try again"
        )))
    }

    fn start_once(python: &PathBuf) -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let dir = tempfile_dir::TempDir::new().map_err(|e| format!("no temp dir: {e}"))?;
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let mut server = S3TestServer {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "moto's server exited with {status} before accepting connections: {}",
                    server.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto's server did not listen on {} within {START_TIMEOUT:?}: {}",
                    server.addr,
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Options that reach this server with its test keys.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint_url: Some(self.endpoint()),
            force_path_style: true,
            region: Some("us-east-1".to_string()),
            credentials: Some(S3Credentials {
                access_key_id: TEST_ACCESS_KEY.to_string(),
                secret_access_key: TEST_SECRET_KEY.to_string(),
            }),
        }
    }

    /// Environment for a child process (the `shardline` binary) so the
    /// standard AWS chain finds this server and its keys, and never probes
    /// EC2 instance metadata.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHARDLINE_S3_ENDPOINT", self.endpoint()),
            ("SHARDLINE_S3_FORCE_PATH_STYLE", "1".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// The server's request log so far (one line per request), so tests can
    /// check which requests a client really sent.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
        format!("(log {}) {}", self.log.display(), &text[start..])
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        // Already exited is fine; either way reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A private temporary directory removed on drop, without a dependency on
/// `tempfile` in the library.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!("shardline-s3-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
