//! The original order service's HTTP endpoints (issue 17), driven by a real HTTP client: the
//! two requests of the original documentation, exactly as written there, then everything a
//! hostile or clumsy client can send.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon};

const TOKEN: &str = "3f9c1e0a7b2d4c6e8f0a1b2c3d4e5f60";

/// A token file as a user makes one: owner-only.
fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    let path = dir.join("http.token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// A daemon serving the endpoints on a free loopback port with a token, and its base URL.
fn with_endpoints() -> (TestDaemon, String) {
    let mut daemon = TestDaemon::stopped_with(&[("ORDERS_HTTP", "127.0.0.1:0")]);
    let file = token_file(daemon.dir(), TOKEN, 0o600);
    daemon.set_env("ORDERS_HTTP_TOKEN_FILE", Some(file.to_str().expect("utf-8")));
    daemon.spawn();
    let status = daemon.json(["daemon", "status"]);
    let url = status["http_url"].as_str().unwrap_or_else(|| panic!("status names the endpoints: {status}"));
    let base = url.trim_end_matches('/').to_owned();
    (daemon, base)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// What a request got: its status and its body as JSON (`Null` when it had none).
fn outcome(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("an answer");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `POST {base}{path}` with a JSON body as text, the token and the JSON content type.
fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    outcome(
        agent()
            .post(format!("{base}{path}"))
            .header("Authorization", bearer())
            .header("Content-Type", "application/json")
            .send(body),
    )
}

fn put(base: &str, path: &str, body: &str) -> (u16, Value) {
    outcome(
        agent()
            .put(format!("{base}{path}"))
            .header("Authorization", bearer())
            .header("Content-Type", "application/json")
            .send(body),
    )
}

fn get(base: &str, path: &str) -> (u16, Value) {
    outcome(agent().get(format!("{base}{path}")).header("Authorization", bearer()).call())
}

fn wait_for(base: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, order) = get(base, &format!("/order/{id}"));
        assert_eq!(code, 200, "{order}");
        if order["status"] == status {
            return order;
        }
        assert!(Instant::now() < deadline, "never {status}: {order}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_original_requests_place_an_order_see_it_delivered_and_cancel_another() {
    let (daemon, base) = with_endpoints();
    // Exactly as the original documentation wrote them.
    let (code, order) = post(&base, "/order/", r#"{"user_id": "test_user", "total": 2}"#);
    assert_eq!(code, 201, "{order}");
    assert_eq!(order["user_id"], "test_user");
    assert_eq!(order["total"], 2);
    let id = order["id"].as_str().expect("an id").to_owned();
    let delivered = wait_for(&base, &id, "delivered");
    assert!(delivered["approved_at"].is_string() && delivered["delivered_at"].is_string(), "{delivered}");

    let (code, second) = post(&base, "/order", r#"{"user_id": "test_user", "total": 4}"#);
    assert_eq!(code, 201, "{second}");
    let second_id = second["id"].as_str().expect("an id");
    let body = format!(r#"{{"id": "{second_id}"}}"#);
    let (code, cancelled) = put(&base, "/order/cancel", &body);
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer_request");

    let (code, page) = get(&base, "/orders?user_id=test_user");
    assert_eq!(code, 200, "{page}");
    let listed: Vec<&str> =
        page["orders"].as_array().expect("orders").iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [second_id, id.as_str()], "newest first");
    // The same orders through the socket: one house, two doors.
    let through_socket = daemon.json(["show", &id]);
    assert_eq!(through_socket["status"], "delivered");

    // The documented cancel body ends with a comma, which is no JSON: where it breaks is said.
    let documented = format!(r#"{{"id": "{second_id}",}}"#);
    let (code, refused) = put(&base, "/order/cancel", &documented);
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_request");
    let message = refused["error"]["message"].as_str().expect("a message");
    assert!(message.contains("trailing comma at line 1 column 47"), "{message}");
}

#[test]
fn bad_requests_get_the_documented_statuses_and_the_socket_s_messages() {
    let (daemon, base) = with_endpoints();
    // The socket's own message for a total of 0.
    let mut socket = RawClient::connect(&daemon.socket());
    let said = socket.call(daemon.request(json!({"cmd": "create", "user": "a", "total": 0})));
    let socket_message = said["error"]["message"].as_str().expect("the socket refuses").to_owned();
    let (code, refused) = post(&base, "/order/", r#"{"user_id": "a", "total": 0}"#);
    assert_eq!((code, refused["error"]["code"].as_str()), (400, Some("invalid_request")), "{refused}");
    let http_message = refused["error"]["message"].as_str().expect("a message");
    // The same words; over HTTP, where in the body too.
    assert!(
        http_message.starts_with(&socket_message),
        "the same validation: {http_message} / {socket_message}"
    );

    for (body, said) in [
        (r#"{"user_id": "a", "total": 2, "total": 4}"#, "given twice"),
        (r#"{"user_id": "a", "total": "2"}"#, "invalid"),
        (r#"{"user": "a", "total": 2}"#, "unknown field `user`"),
        ("not json", "not valid JSON"),
    ] {
        let (code, refused) = post(&base, "/order/", body);
        assert_eq!(code, 400, "{body}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap_or_default().contains(said), "{body}: {refused}");
    }

    // Unknown order, a bad id, a delivered order cancelled.
    let unknown = r#"{"id": "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"}"#;
    assert_eq!(put(&base, "/order/cancel", unknown).0, 404);
    assert_eq!(get(&base, "/order/019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b").0, 404);
    assert_eq!(get(&base, "/order/not-an-id").0, 400);
    let id = daemon.create("gus", 2);
    daemon.wait_for_status(&id, "delivered");
    let (code, refused) = put(&base, "/order/cancel", &format!(r#"{{"id": "{id}"}}"#));
    assert_eq!((code, refused["error"]["code"].as_str()), (409, Some("rejected")), "{refused}");

    // A wrong method, no such endpoint.
    let (code, refused) =
        outcome(agent().delete(format!("{base}/orders")).header("Authorization", bearer()).call());
    assert_eq!(code, 405, "{refused}");
    assert_eq!(get(&base, "/order/").0, 405, "GET on POST /order/");
    assert_eq!(get(&base, "/nope").0, 404);
    assert_eq!(get(&base, "/orders?colour=red").0, 400, "an unknown parameter");

    // Oversized, and not JSON.
    let huge = format!(r#"{{"user_id": "{}", "total": 2}}"#, "x".repeat(100 << 10));
    let (code, refused) = post(&base, "/order/", &huge);
    assert_eq!((code, refused["error"]["code"].as_str()), (413, Some("too_large")), "{refused}");
    let (code, refused) = outcome(
        agent()
            .post(format!("{base}/order/"))
            .header("Authorization", bearer())
            .header("Content-Type", "text/plain")
            .send(r#"{"user_id": "a", "total": 2}"#),
    );
    assert_eq!(code, 415, "{refused}");

    // No token, a wrong one, a Host that is not this machine.
    let (code, refused) = outcome(agent().get(format!("{base}/orders")).call());
    assert_eq!((code, refused["error"]["code"].as_str()), (401, Some("permission_denied")), "{refused}");
    let response =
        agent().get(format!("{base}/orders")).header("Authorization", "Bearer wrong").call().expect("answer");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    let (code, refused) = outcome(
        agent()
            .get(format!("{base}/orders"))
            .header("Authorization", bearer())
            .header("Host", "evil.example")
            .call(),
    );
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap_or_default().contains("not this machine"),
        "{refused}"
    );
    let nothing = daemon.json(["list", "--user", "a"]);
    assert_eq!(nothing, json!([]), "nothing refused was placed");
}

/// `POST /order` takes a new user by the rules of the socket's `create` (issue 18), and
/// `GET /orders?user_id=` still filters by any name (one with spaces, escaped in the URL).
#[test]
fn a_user_that_looks_like_another_is_refused_over_http_too() {
    let (daemon, base) = with_endpoints();
    for (user, says) in [(" alice", "whitespace"), ("alice ", "whitespace"), ("evil\u{202e}ecila", "U+202E")]
    {
        let body = json!({"user_id": user, "total": 2}).to_string();
        let (code, refused) = post(&base, "/order", &body);
        assert_eq!(
            (code, refused["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{user:?}: {refused}"
        );
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{user:?}: {message}");
    }
    assert_eq!(daemon.json(["list"]), json!([]), "nothing refused was placed");
    let (code, page) = get(&base, "/orders?user_id=%20alice");
    assert_eq!((code, page["orders"].clone()), (200, json!([])), "{page}");
}

#[test]
fn an_idempotency_key_header_does_what_the_flag_does() {
    let (_daemon, base) = with_endpoints();
    let send = |total: i64| {
        outcome(
            agent()
                .post(format!("{base}/order/"))
                .header("Authorization", bearer())
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", "request-42")
                .send(format!(r#"{{"user_id": "hal", "total": {total}}}"#)),
        )
    };
    let (first_code, first) = send(2);
    let (again_code, again) = send(2);
    assert_eq!((first_code, again_code), (201, 201));
    assert_eq!(first["id"], again["id"], "a retry returns the same order");
    let (code, refused) = send(4);
    assert_eq!((code, refused["error"]["code"].as_str()), (409, Some("rejected")), "{refused}");
}

#[test]
fn the_endpoints_refuse_to_start_unprotected_or_with_a_token_others_can_read() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("ORDERS_HTTP", "0.0.0.0:0")], "need a bearer token"),
        (&[("ORDERS_HTTP", "0.0.0.0:0"), ("ORDERS_HTTP_INSECURE_LOCAL", "1")], "loopback address only"),
        (&[("ORDERS_HTTP", "127.0.0.1:0")], "--http-insecure-local"),
    ];
    for (env, said) in cases {
        let mut daemon = TestDaemon::stopped_with(env);
        let refused = daemon.try_spawn().expect_err("refused at start");
        assert!(refused.contains(said), "{env:?}: {refused}");
    }
    for (token, mode, said) in
        [(TOKEN, 0o644, "chmod 600"), ("short", 0o600, "16 to 1024 visible ASCII characters")]
    {
        let mut daemon = TestDaemon::stopped_with(&[("ORDERS_HTTP", "127.0.0.1:0")]);
        let file = token_file(daemon.dir(), token, mode);
        daemon.set_env("ORDERS_HTTP_TOKEN_FILE", Some(file.to_str().expect("utf-8")));
        let refused = daemon.try_spawn().expect_err("refused at start");
        assert!(refused.contains(said), "{refused}");
    }
    // Insecure, on loopback, by choice: served without a token.
    let mut daemon =
        TestDaemon::stopped_with(&[("ORDERS_HTTP", "127.0.0.1:0"), ("ORDERS_HTTP_INSECURE_LOCAL", "1")]);
    daemon.spawn();
    let base =
        daemon.json(["daemon", "status"])["http_url"].as_str().expect("url").trim_end_matches('/').to_owned();
    let (code, _) = outcome(agent().get(format!("{base}/orders")).call());
    assert_eq!(code, 200);
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let (_daemon, base) = with_endpoints();
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"))
            .expect("the document"),
    )
    .expect("JSON");
    let paths = document["paths"].as_object().expect("paths");
    let methods = ["get", "post", "put", "delete", "patch"];
    for (path, operations) in paths {
        let concrete = path.replace("{id}", "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b");
        for method in methods {
            let url = format!("{base}{concrete}");
            let (a, auth, json_type) = (agent(), bearer(), "application/json");
            let (code, body) = outcome(match method {
                "get" => a.get(&url).header("Authorization", &auth).call(),
                "delete" => a.delete(&url).header("Authorization", &auth).call(),
                "post" => {
                    a.post(&url).header("Authorization", &auth).header("Content-Type", json_type).send("{}")
                }
                "put" => {
                    a.put(&url).header("Authorization", &auth).header("Content-Type", json_type).send("{}")
                }
                _ => {
                    a.patch(&url).header("Authorization", &auth).header("Content-Type", json_type).send("{}")
                }
            });
            match operations.get(method) {
                Some(operation) => {
                    assert!(code != 404 || body["error"]["code"] == "not_found", "{method} {path}: no route");
                    assert_ne!(code, 405, "{method} {path} is documented but not routed");
                    let documented = operation["responses"].as_object().expect("responses");
                    assert!(
                        documented.contains_key(&code.to_string()),
                        "{method} {path} answered {code}, undocumented: {body}"
                    );
                }
                None => assert_eq!(code, 405, "{method} {path} is routed but not documented: {body}"),
            }
        }
    }
    assert_eq!(get(&base, "/undocumented").0, 404);
}

#[test]
fn clients_through_a_port_forward_and_any_case_of_bearer_are_let_in() {
    let (_daemon, base) = with_endpoints();
    for (host, auth) in [("localhost:18080", bearer()), ("127.0.0.1", format!("bearer  {TOKEN}"))] {
        let (code, body) = outcome(
            agent().get(format!("{base}/orders")).header("Host", host).header("Authorization", auth).call(),
        );
        assert_eq!(code, 200, "{host}: {body}");
    }
    // Odd requests still get the documented JSON shape.
    let (code, refused) = get(&base, "/order/%FF");
    assert_eq!((code, refused["error"]["code"].as_str()), (400, Some("invalid_request")), "{refused}");
    let (code, refused) = outcome(
        agent()
            .post(format!("{base}/order/"))
            .header("Authorization", bearer())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", "one")
            .header("Idempotency-Key", "two")
            .send(r#"{"user_id": "ida", "total": 2}"#),
    );
    assert_eq!(code, 400, "two keys are no key: {refused}");
}

#[test]
fn a_body_that_never_arrives_is_408_and_nothing_is_done() {
    use std::io::{Read, Write};
    let (daemon, base) = with_endpoints();
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let head = format!(
        "POST /order/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).expect("the head and a byte");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let started = Instant::now();
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("nothing was done"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(daemon.json(["list", "--all"]), json!([]));
}

#[test]
fn http_settings_without_http_do_not_stop_a_daemon_and_odd_tokens_are_refused() {
    let daemon = TestDaemon::stopped_with(&[]);
    let file = token_file(daemon.dir(), TOKEN, 0o600);
    let output = daemon
        .command_with_autostart()
        .args(["create", "--user", "jo", "--total", "2"])
        .env("ORDERS_HTTP_INSECURE_LOCAL", "0")
        .env("ORDERS_HTTP_TOKEN_FILE", &file)
        .output()
        .expect("run orders");
    assert_eq!(crate::fixture::code(&output), 0, "{}", crate::fixture::stderr(&output));
    assert!(daemon.log().contains("do nothing without --http"), "{}", daemon.log());
    let _ = daemon.run(["daemon", "stop"]);

    for (token, said) in [("é".repeat(20), "visible ASCII"), ("a".repeat(5000), "16 to 1024")] {
        let mut refused = TestDaemon::stopped_with(&[("ORDERS_HTTP", "127.0.0.1:0")]);
        let file = token_file(refused.dir(), &token, 0o600);
        refused.set_env("ORDERS_HTTP_TOKEN_FILE", Some(file.to_str().expect("utf-8")));
        let error = refused.try_spawn().expect_err("refused at start");
        assert!(error.contains(said), "{error}");
    }
}
