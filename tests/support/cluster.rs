//! A whole cluster on loopback for the end-to-end tests: a private Postgres
//! (initdb + pg_ctl on a free port, so restarting it disturbs no other
//! test), moto's S3 server, the fake OpenAI server as a process, and
//! `shardline serve` / `shardline worker` processes that tests can kill.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "cluster-admin-token";
pub const WORKER_TOKEN: &str = "cluster-worker-token";
pub const FAKE_KEY: &str = "test-key";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn run_checked(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}): {text}",
        out.status
    );
    text
}

/// A Postgres server of our own on a free port, stopped when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// initdb refuses to run as root: then every command runs as the
    /// `postgres` user, which owns the data folder.
    as_postgres: bool,
}

impl PrivatePostgres {
    /// The newest `/usr/lib/postgresql/*/bin` with initdb, else the folder
    /// `pg_config --bindir` names.
    fn bin_dir() -> PathBuf {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        if let Some((_, bin)) = found.pop() {
            return bin;
        }
        let out = Command::new("pg_config").arg("--bindir").output();
        match out {
            Ok(o) if o.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
            }
            _ => panic!(
                "no Postgres server binaries (initdb, pg_ctl) found; run scripts/ensure-postgres.sh, \
                 which installs Debian's postgresql package"
            ),
        }
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn start() -> Self {
        let as_postgres = run_checked(
            {
                let mut c = Command::new("id");
                c.arg("-u");
                c
            },
            "id -u",
        )
        .trim()
            == "0";
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = PrivatePostgres {
            bin: Self::bin_dir(),
            port: free_port(),
            as_postgres,
            dir,
        };
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(pg.dir.path());
            run_checked(chown, "chown of the Postgres folder");
        }
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        ]);
        run_checked(initdb, "initdb");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            pg.port,
            pg.data().display()
        );
        pg.pg_ctl(&["-w", "-t", "60", "-o", &options, "start"], "pg_ctl start");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs pg_ctl with its output in a file: the server it starts keeps
    /// the output open, so a pipe would never reach its end.
    fn pg_ctl(&self, args: &[&str], what: &str) {
        let out = self.dir.path().join("pg_ctl.out");
        let file = std::fs::File::create(&out).expect("pg_ctl output file");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("pg_ctl output file"))
            .stderr(file);
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            status.success(),
            "{what} failed ({status}): {}\n{}",
            std::fs::read_to_string(&out).unwrap_or_default(),
            self.log()
        );
    }

    /// Stops (fast: connections are cut) and starts again on the same port.
    pub fn restart(&self) {
        self.pg_ctl(
            &["-m", "fast", "-w", "-t", "60", "restart"],
            "pg_ctl restart",
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
    }
}

/// A child process whose output goes to a file; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") with kill(1).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log under a `--- name ---` title, for failure messages that show
    /// several processes.
    pub fn titled_log(&self) -> String {
        format!("--- {} ---\n{}", self.name, self.log())
    }

    /// Waits for the process to die by itself (e.g. at a fault point), up to
    /// `limit`.
    pub fn wait_death(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{} did not die\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fake OpenAI server, as its own process.
pub struct FakeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
}

impl FakeProcess {
    /// The `fake-openai` binary beside `shardline` in the target folder.
    fn binary() -> PathBuf {
        let bin = Path::new(env!("CARGO_BIN_EXE_shardline")).with_file_name("fake-openai");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p testkit --bin fake-openai` first \
             (scripts/test.sh builds every binary)",
            bin.display()
        );
        bin
    }

    pub fn start(args: &[&str]) -> FakeProcess {
        let mut child = Command::new(Self::binary())
            .args(args)
            .env("FAKE_OPENAI_KEY", FAKE_KEY)
            .args(["--api-key-env", "FAKE_OPENAI_KEY", "--no-record"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-openai");
        let stdout = child.stdout.take().expect("fake-openai stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fake-openai prints its address");
        let base_url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from fake-openai: {line:?}"))
            .to_string();
        FakeProcess { child, base_url }
    }

    /// `GET /_fake/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        let root = self.base_url.trim_end_matches("/v1");
        reqwest::get(format!("{root}/_fake/stats"))
            .await
            .expect("fake stats")
            .json()
            .await
            .expect("fake stats JSON")
    }

    /// Inference requests answered 200 so far.
    pub async fn ok(&self) -> u64 {
        self.stats().await["ok"].as_u64().expect("ok count")
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared services of a cluster and the processes running on them.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pg: PrivatePostgres,
    pub s3: cache::S3TestServer,
    pub fake: FakeProcess,
    /// `s3://bucket/prefix`
    pub cache: String,
    pub coordinator_url: String,
    coordinator_port: u16,
    /// Extra `serve` arguments (lease length, …).
    serve_args: Vec<String>,
    pub coordinator: Option<Proc>,
    coordinator_starts: usize,
    pub workers: Vec<Proc>,
}

impl Cluster {
    /// Starts Postgres, S3 (with a bucket) and the fake server with
    /// `fake_args`; no coordinator or worker yet.
    pub async fn start(fake_args: &[&str], serve_args: &[&str]) -> Cluster {
        let pg = PrivatePostgres::start();
        let s3 = cache::S3TestServer::start().expect("moto S3 server (scripts/ensure-s3.sh)");
        let cache = "s3://shardline-e2e/cluster".to_string();
        cache::S3Store::new(&cache, s3.options())
            .expect("S3 store")
            .create_bucket_if_missing()
            .await
            .expect("create the bucket");
        let fake = FakeProcess::start(fake_args);
        let port = free_port();
        Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            pg,
            s3,
            fake,
            cache,
            coordinator_url: format!("http://127.0.0.1:{port}"),
            coordinator_port: port,
            serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
            coordinator: None,
            coordinator_starts: 0,
            workers: Vec::new(),
        }
    }

    /// `shardline ARGS` with the cluster's environment: tokens, S3 keys,
    /// the fake's API key.
    pub fn shardline(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(super::shardline_bin());
        cmd.args(args)
            .env("SHARDLINE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHARDLINE_WORKER_TOKEN", WORKER_TOKEN)
            .env("SHARDLINE_KEY_E2E", FAKE_KEY)
            .env("SHARDLINE_LOG", "warn,coordinator=info,worker=info")
            .env_remove("SHARDLINE_CONFIG")
            .env_remove("SHARDLINE_COORDINATOR");
        for (k, v) in self.s3.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `shardline serve` (again) on the cluster's port and waits
    /// until it answers. Settings come from all three sources: the listen
    /// address as a flag, the database URL from the environment, the cache
    /// and the lease timing from a config file.
    pub async fn start_coordinator(&mut self) {
        let config = self.dir.path().join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[serve]\ncache = \"{}\"\nlease_secs = 3\nreaper_interval_ms = 300\n\
                 dataset_roots = [\"{}\"]\n",
                self.cache,
                self.dir.path().display()
            ),
        )
        .expect("write config");
        let listen = format!("127.0.0.1:{}", self.coordinator_port);
        let mut args = vec![
            "serve".to_string(),
            "--listen".to_string(),
            listen,
            "--config".to_string(),
            config.display().to_string(),
        ];
        args.extend(self.serve_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.shardline(&args);
        cmd.env("SHARDLINE_DATABASE_URL", self.pg.url());
        self.coordinator_starts += 1;
        let name = format!("coordinator-{}", self.coordinator_starts);
        self.coordinator = Some(Proc::spawn(&name, cmd, self.dir.path()));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = client
                .get(format!("{}/healthz", self.coordinator_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if up {
                return;
            }
            let coordinator = self.coordinator.as_mut().expect("coordinator");
            if let Some(status) = coordinator.exited() {
                panic!("coordinator exited with {status}:\n{}", coordinator.log());
            }
            assert!(
                Instant::now() < deadline,
                "coordinator not up in 60 s:\n{}",
                coordinator.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `shardline worker --id ID` against `coordinator_url`.
    pub fn start_worker(&mut self, id: &str, coordinator_url: &str, extra: &[&str]) {
        let mut args = vec![
            "worker",
            "--coordinator",
            coordinator_url,
            "--cache",
            &self.cache,
            "--id",
            id,
            "--shards",
            "1",
            "--poll-ms",
            "200",
        ];
        args.extend_from_slice(extra);
        let cmd = self.shardline(&args);
        self.workers.push(Proc::spawn(id, cmd, self.dir.path()));
    }

    pub fn worker(&mut self, id: &str) -> &mut Proc {
        self.workers
            .iter_mut()
            .find(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id}"))
    }

    /// A client of the coordinator with the admin token.
    pub fn client(&self) -> client::CoordinatorClient {
        client::CoordinatorClient::new(&self.coordinator_url, ADMIN_TOKEN.to_string())
            .expect("client")
    }

    /// A connection to the cluster's database, for looking at shards.
    pub async fn store(&self) -> coordinator::PostgresStore {
        coordinator::PostgresStore::connect(&self.pg.url())
            .await
            .expect("connect to the cluster's Postgres")
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("==== {} (last lines)\n", path.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("==== postgres.log (last lines)\n");
        let pg = self.pg.log();
        let tail: Vec<&str> = pg.lines().rev().take(20).collect();
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}
