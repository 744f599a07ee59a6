//! The real router over a Db poisoned through the storage layer's
//! fault-injection seam (`Options::with_file_opener` and
//! `rime_bufmgr::io::FaultyFile`). The integration tests in `cli/tests`
//! drive the binary, which has no way to poison its Db, so this one lives
//! here.

use super::errors::invoke_error;
use super::handlers::health_response;
use super::*;
use axum::body::Body;
use axum::http::{StatusCode, header};
use rime_bufmgr::io::{BlockFile, FaultPlan, FaultyFile, IoBackend, open_block_file};
use rime_faas::InvokeError;
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

/// The files of the log, as they are opened.
type Wal = Arc<std::sync::Mutex<Vec<Arc<FaultyFile>>>>;

fn open(dir: &std::path::Path) -> (Shared, Wal) {
    let wal: Wal = Arc::default();
    let seen = wal.clone();
    let opts =
        env::db_options(None, None).with_file_opener(Arc::new(move |p: &std::path::Path| {
            let file = Arc::new(FaultyFile::new(
                open_block_file(p, IoBackend::Auto)?,
                FaultPlan::default(),
            ));
            if p.parent().is_some_and(|d| d.ends_with("wal")) {
                seen.lock().unwrap().push(file.clone());
            }
            Ok(file as Arc<dyn BlockFile>)
        }));
    let db = env::open_db(dir, opts).unwrap();
    let rt = env::open_runtime(dir, db, RuntimeConfig::default()).unwrap();
    let app = Arc::new(App {
        rt,
        token: TOKEN.into(),
        open_invoke: false,
        open_reads: false,
        inflight: Arc::new(AtomicUsize::new(0)),
        metrics: Metrics::default(),
        connections: Arc::default(),
        logs: super::Logs::new(),
        stopping: tokio::sync::watch::Sender::new(false),
        data_dir: dir.to_path_buf(),
    });
    (app, wal)
}

async fn call(router: &Router, method: &str, path: &str) -> (StatusCode, String) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("v"))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn health_is_503_naming_the_cause_when_the_db_is_poisoned() {
    let dir = tempfile::TempDir::new().unwrap();
    let (app, wal) = open(dir.path());
    let router = router(app.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (st, body) = call(&router, "GET", "/health").await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));
        let (st, body) = call(&router, "PUT", "/state/kv/a").await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
        let (_, m) = call(&router, "GET", "/metrics").await;
        assert!(m.contains("\nrime_db_poisoned 0\n"), "{m}");

        // Every log sync fails from now on: the next commit poisons the Db.
        assert!(!wal.lock().unwrap().is_empty(), "no log file seen");
        for f in wal.lock().unwrap().iter() {
            f.set_plan(FaultPlan {
                fail_sync: true,
                ..FaultPlan::default()
            });
        }
        let (st, body) = call(&router, "PUT", "/state/kv/b").await;
        assert!(st.is_server_error(), "{st} {body}");
        let cause = app.rt.db().poisoned().expect("poisoned");

        let (st, body) = call(&router, "GET", "/health").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "poisoned");
        assert_eq!(v["error"]["code"], "poisoned");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(&cause), "{message} vs {cause}");

        // Later writes say so too, and the gauge is up.
        let (st, body) = call(&router, "PUT", "/state/kv/c").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"poisoned\""), "{body}");
        let (_, m) = call(&router, "GET", "/metrics").await;
        assert!(m.contains("\nrime_db_poisoned 1\n"), "{m}");
    });
}

#[test]
fn health_response_maps_poisoning_to_503() {
    let ok = health_response(None);
    assert_eq!(ok.status(), StatusCode::OK);
    let bad = health_response(Some("log sync failed: EIO".into()));
    assert_eq!(bad.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A write set over what one commit can log is the function's fault, and
/// the Db is fine (it was refused before anything was logged): 422, not a
/// 500 that reads like a server failure.
#[test]
fn a_write_set_over_the_commit_limit_is_422_write_set_full() {
    let e = invoke_error(&InvokeError::WriteSetFull { max: 1 << 25 });
    assert_eq!(
        (e.status, e.code),
        (StatusCode::UNPROCESSABLE_ENTITY, "write_set_full")
    );
}
