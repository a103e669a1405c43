//! Rate limits shared by two gateway instances through a real Redis and one PostgreSQL database.

mod common;

use common::{Backend, FakeUpstream, Options, TestServer};
use serde_json::json;

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit_through_redis() {
    let upstream = FakeUpstream::start().await;
    let database_url = common::fresh_postgres_database().await;
    let options = Options {
        database_url: Some(database_url),
        redis_url: Some(redis_url()),
        secret_key: Some("11".repeat(32)),
        ..Options::default()
    };
    let first = TestServer::start_with(Backend::Postgres, options.clone()).await;
    let tenant = first.tenant("shared", &upstream.url("v1")).await;
    let (status, created) = first
        .post(
            &format!("/api/v1/endpoints/{}/keys", tenant.endpoint_id),
            &tenant.token,
            json!({"name": "shared", "rate_limit_per_minute": 4, "rate_limit_per_day": 1000}),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["api_key"].as_str().unwrap().to_owned();
    // The second instance starts after the key exists and loads it from the shared database.
    let second = TestServer::start_with(Backend::Postgres, options).await;

    let mut statuses = Vec::new();
    for server in [&first, &second, &first, &second, &first, &second] {
        statuses.push(
            server
                .chat(&key, &tenant.model, false)
                .await
                .status()
                .as_u16(),
        );
    }
    // Four requests in the minute across both instances, then 429 on either.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    let response = second.chat(&key, &tenant.model, false).await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_minute");
}

#[tokio::test]
async fn unreachable_redis_fails_start_up_clearly() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", closed.local_addr().unwrap());
    drop(closed);
    let data_dir = tempfile::tempdir().unwrap();
    let args = switchyard::config::ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data_dir.path().to_owned()),
        redis_url: Some(url),
        ..Default::default()
    };
    let config =
        switchyard::config::Config::validate(args, Some(common::ADMIN_TOKEN.to_owned()), None)
            .unwrap();
    let error = switchyard::server::start(config)
        .await
        .err()
        .expect("start-up must fail");
    assert!(
        format!("{error:#}").contains("cannot connect to Redis"),
        "{error:#}"
    );
}
