//! Durability: a server process killed with SIGKILL under write load loses no acknowledged
//! write and leaves no half-written segment.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{self, named};

/// Starts `segmentctl serve` as a child process; returns it and its endpoint.
pub fn spawn_server(data: &std::path::Path) -> (std::process::Child, String) {
    spawn_server_with(data, &[])
}

/// As [`spawn_server`], with more arguments.
pub fn spawn_server_with(data: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env("SEGMENTCTL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn segmentctl serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("the server logs its address before serving")
            .expect("read stderr");
        if let Some(rest) = line.split("address=").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if std::env::var_os("DEBUG_SERVER_LOG").is_some() {
                eprintln!("server: {l}");
            }
        }
    });
    (child, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_write_load_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = crate::pg::data_for(dir.path());
    let (mut child, endpoint) = spawn_server(&data);
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "k",
        "s",
        1,
    );
    let app = util::create_app(&client, "crash").await;

    let acked: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, app, acked) = (client.clone(), app.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let created = client
                    .create_segment()
                    .application_id(&app)
                    .write_segment_request(named(&format!("w{w}-{i}")))
                    .send()
                    .await;
                let Ok(out) = created else { return };
                let id = out.segment_response.unwrap().id.unwrap();
                acked.lock().unwrap().push((id.clone(), 1));
                // Every other segment also gets an update, so versions are under load too.
                if i % 2 == 0 {
                    let updated = client
                        .update_segment()
                        .application_id(&app)
                        .segment_id(&id)
                        .write_segment_request(named(&format!("w{w}-{i}-v2")))
                        .send()
                        .await;
                    let Ok(_) = updated else { return };
                    acked.lock().unwrap().push((id, 2));
                }
            }
        }));
    }
    // Kill once a good number of writes are acknowledged, while the writers keep going.
    for _ in 0..600 {
        if acked.lock().unwrap().len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL the server");
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 150,
        "the load ran: {} acknowledged",
        acked.len()
    );

    // Reopen the data the way a restarted server does.
    if !crate::pg::backend_is_postgres() {
        let conn = rusqlite::Connection::open(&data).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    let orphans = crate::pg::query_i64(
        &data,
        "SELECT COUNT(*) FROM segments s WHERE NOT EXISTS (SELECT 1 FROM segment_versions v WHERE v.app_id = s.app_id AND v.segment_id = s.id AND v.version = s.version)",
    );
    assert_eq!(orphans, 0, "every segment row has its current version");

    let (mut child, endpoint) = spawn_server(&data);
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "k",
        "s",
        1,
    );
    for (id, version) in &acked {
        let seg = client
            .get_segment_version()
            .application_id(&app)
            .segment_id(id)
            .version(version.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged {id} v{version} is lost: {e:?}"))
            .segment_response
            .unwrap();
        assert_eq!(seg.version, Some(*version));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
