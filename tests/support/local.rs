//! `shardline serve` on SQLite and one `shardline worker`, as real
//! processes on loopback: the smallest cluster, for tests of what the
//! cluster commands do and say (no Postgres, no S3).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::cluster::{free_port, Proc};
use super::{command, wait_bounded};

pub struct LocalCluster {
    pub serve: Proc,
    pub worker: Proc,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub client: client::CoordinatorClient,
    admin_token: String,
}

impl LocalCluster {
    /// A coordinator whose dataset root is `dir`, its home and logs in
    /// `dir`, and one worker with `worker_env` set; both up.
    pub async fn start(
        dir: &Path,
        admin_token: &str,
        worker_token: &str,
        worker_env: &[(&str, &str)],
    ) -> LocalCluster {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let home = dir.join("home");
        let mut serve = command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--home",
            home.to_str().unwrap(),
            "--dataset-root",
            dir.to_str().unwrap(),
        ]);
        serve
            .env("SHARDLINE_ADMIN_TOKEN", admin_token)
            .env("SHARDLINE_WORKER_TOKEN", worker_token);
        let serve = Proc::spawn("serve", serve, dir);
        let client = client::CoordinatorClient::new(&url, admin_token.into()).unwrap();
        let start = Instant::now();
        while client.healthz().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "{}", serve.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cache = home.join("cache");
        let mut worker = command(&[
            "worker",
            "--coordinator",
            &url,
            "--cache",
            cache.to_str().unwrap(),
            "--poll-ms",
            "200",
        ]);
        worker.env("SHARDLINE_WORKER_TOKEN", worker_token);
        for (name, value) in worker_env {
            worker.env(name, value);
        }
        let worker = Proc::spawn("worker", worker, dir);
        LocalCluster {
            serve,
            worker,
            url,
            client,
            admin_token: admin_token.to_string(),
        }
    }

    /// Waits for the job to end and returns its status.
    pub async fn wait(&self, id: Uuid) -> jobs::protocol::JobStatus {
        let start = Instant::now();
        loop {
            let status = self.client.job(id).await.unwrap();
            if status.state.is_terminal() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job {id} did not end\n{}\n{}",
                self.serve.log(),
                self.worker.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `shardline ARGS --coordinator URL` with the admin token, to the end
    /// (at most 90 s).
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--coordinator", &self.url]);
        let mut cmd = command(&all);
        cmd.env("SHARDLINE_ADMIN_TOKEN", &self.admin_token);
        wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(90))
    }

    /// Both processes' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}\n{}", self.serve.titled_log(), self.worker.titled_log())
    }
}
