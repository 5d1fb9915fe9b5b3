//! A private socket, a peer-uid check, and hostile input survived.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn the_socket_is_0600_in_a_0700_directory() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    let runtime = daemon.dir().join("run");
    std::fs::create_dir(&runtime).expect("runtime dir");
    daemon.set_env("XDG_RUNTIME_DIR", Some(runtime.to_str().expect("utf-8")));
    daemon.set_env("ORDERS_SOCKET", None);
    let output = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let socket = runtime.join("orders").join("orders.sock");
    assert!(socket.exists(), "the default socket is in $XDG_RUNTIME_DIR/orders");
    assert_eq!(mode(socket.parent().expect("dir")), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(code(&daemon.command_with_autostart().args(["daemon", "stop"]).output().expect("stop")), 0);
}

/// Needs root, to run a client as `nobody`; skipped otherwise.
#[test]
fn a_foreign_uid_is_refused_even_with_the_socket_opened_up() {
    const NOBODY: u32 = 65534;
    if !std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
    {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let daemon = TestDaemon::start();
    // Open everything up: the daemon's own check must still refuse the stranger.
    for dir in daemon.socket().ancestors().skip(1).take_while(|dir| dir.starts_with(daemon.dir())) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o777)).expect("chmod socket");
    let output = daemon.command().args(["list"]).uid(NOBODY).gid(NOBODY).output().expect("run as nobody");
    assert_ne!(code(&output), 0);
    // Both ends check: the client will not talk to another user's daemon ...
    assert!(stderr(&output).contains("served by uid 0, not by you"), "{}", stderr(&output));
    // ... and the daemon, whose check this test is about, refused the stranger all the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("refused a connection from another user") {
        assert!(Instant::now() < deadline, "the daemon did not refuse: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stranger = std::process::Command::new("python3")
        .args(["-c", &format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(b'{{\"v\":1,\"cmd\":\"list\"}}\\n')\nprint(s.makefile().readline(), end='')",
            daemon.socket().display().to_string()
        )])
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("a raw client as nobody");
    let mut reply = String::new();
    std::io::Read::read_to_string(stranger.stdout.as_mut().expect("stdout"), &mut reply).expect("read");
    stranger.wait().expect("wait");
    assert!(reply.contains("permission_denied") && reply.contains("serves uid 0 only"), "{reply}");
    assert_eq!(daemon.json(["list"]), json!([]), "the owner is still served");
}

/// A client writes its request, then reads. A refused one must get to read its refusal, however
/// late its write comes: the daemon drains what it sends before closing (no `EPIPE`). Needs
/// root, to run the client as `nobody`; skipped otherwise.
#[test]
fn a_refused_foreign_client_reads_its_refusal_every_time() {
    const NOBODY: u32 = 65534;
    if !std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
    {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let daemon = TestDaemon::start();
    for dir in daemon.socket().ancestors().skip(1).take_while(|dir| dir.starts_with(daemon.dir())) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o777)).expect("chmod socket");
    // 50 clients in a row, each a little slow to write (as a loaded machine makes any client).
    let script = format!(
        "import socket,time\nfor _ in range(50):\n s=socket.socket(socket.AF_UNIX)\n s.connect({:?})\n time.sleep(0.02)\n s.sendall(b'{{\"v\":1,\"cmd\":\"list\"}}\\n')\n print(s.makefile().readline(), end='', flush=True)\n s.close()",
        daemon.socket().display().to_string()
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("raw clients as nobody");
    let replies = String::from_utf8_lossy(&output.stdout);
    let refused = replies.lines().filter(|line| line.contains("permission_denied")).count();
    assert_eq!(refused, 50, "{}\n{replies}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_client_refused_busy_reads_its_refusal_even_when_it_writes_late() {
    let daemon = TestDaemon::start_with(&[("ORDERS_MAX_CONNECTIONS", "1")]);
    // The one slot, once the fixture's probe connection has let go of it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let held = loop {
        let mut client = RawClient::connect(&daemon.socket());
        if client.try_send(daemon.raw_line("\"cmd\":\"status\"}\n").as_bytes()).is_ok()
            && client.reply().is_some_and(|reply| reply["ok"] == true)
        {
            break client;
        }
        assert!(Instant::now() < deadline, "the daemon never had its one slot free");
        std::thread::sleep(Duration::from_millis(20));
    };
    for n in 0..50 {
        let mut client = RawClient::connect(&daemon.socket());
        std::thread::sleep(Duration::from_millis(20));
        client
            .try_send(daemon.raw_line("\"cmd\":\"status\"}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write {n}: {e}"));
        let reply = client.reply().unwrap_or_else(|| panic!("no refusal to read, client {n}"));
        assert_eq!(reply["error"]["code"], "busy", "{reply}");
        assert!(client.reply().is_none(), "then the connection is closed");
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    daemon.create("after", 2);
}

#[test]
fn hostile_lines_each_get_an_error_and_the_daemon_keeps_serving() {
    let daemon = TestDaemon::start();
    let mut client = RawClient::connect(&daemon.socket());
    let deep = "[".repeat(100_000);
    let current = |rest: &[u8]| [daemon.raw_line("").as_bytes(), rest].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "invalid_request"),
        (current(b"\"cmd\":\"status\""), "invalid_request"),
        (b"\xff\xfe\x00garbage".to_vec(), "invalid_request"),
        (current(b"\"cmd\":\"st\xc3\x28tus\"}"), "invalid_request"),
        (b"[1,2,3]".to_vec(), "invalid_request"),
        (b"42".to_vec(), "invalid_request"),
        (b"null".to_vec(), "invalid_request"),
        (b"{\"cmd\":\"status\"}".to_vec(), "invalid_request"),
        (current(b"\"cmd\":\"teleport\"}"), "invalid_request"),
        (current(b"\"cmd\":{\"nested\":true}}"), "invalid_request"),
        (current(b"\"cmd\":\"create\",\"user\":42,\"total\":\"two\"}"), "invalid_request"),
        (current(b"\"cmd\":\"create\",\"user\":\"a\",\"total\":1e400}"), "invalid_request"),
        (current(b"\"cmd\":\"create\",\"user\":\"a\",\"total\":-5}"), "invalid_request"),
        (current(b"\"cmd\":\"show\",\"id\":[]}"), "invalid_request"),
        (current(b"\"cmd\":\"list\",\"limit\":-1}"), "invalid_request"),
        (b"{\"v\":99,\"cmd\":\"status\"}".to_vec(), "protocol_mismatch"),
        (b"{\"v\":1,\"cmd\":\"status\"}".to_vec(), "protocol_mismatch"),
        (
            format!("{{\"v\":{},\"cmd\":\"status\"}}", orders_shared::PROTOCOL_VERSION).into_bytes(),
            "invalid_request",
        ),
        (deep.into_bytes(), "invalid_request"),
    ];
    for (line, expected) in &cases {
        client.send_raw(line);
        client.send_raw(b"\n");
        let reply = client.reply().expect("a reply to every line");
        assert_eq!(reply["ok"], false, "{}", String::from_utf8_lossy(&line[..line.len().min(60)]));
        assert_eq!(reply["error"]["code"], *expected, "{reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let status = client.call(daemon.request(json!({"cmd": "status"})));
    assert_eq!(status["ok"], true, "the same connection still works: {status}");
    assert_eq!(daemon.json(["list"]), json!([]), "nothing was created");
}

#[test]
fn a_64_mib_line_is_answered_too_large_and_the_connection_carries_on() {
    let daemon = TestDaemon::start();
    let stream = UnixStream::connect(daemon.socket()).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let status = format!("\n{}\n", daemon.request(json!({"cmd": "status"})));
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            writer.write_all(&chunk).expect("the daemon keeps reading");
        }
        writer.write_all(status.as_bytes()).expect("then a good request");
    });
    let mut client = RawClient::from_stream(stream);
    let refused = client.reply().expect("a reply");
    assert_eq!(refused["error"]["code"], "too_large", "{refused}");
    sender.join().expect("sender");
    let status = client.reply().expect("the next request's reply");
    assert_eq!(status["ok"], true, "{status}");
    let (_, peak_kib) = crate::fixture::memory_kib(daemon.pid());
    assert!(peak_kib < 64 * 1024, "the daemon did not buffer the line: peak RSS {peak_kib} KiB");
}

#[test]
fn a_client_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let daemon = TestDaemon::start_with(&[("ORDERS_IDLE_TIMEOUT", "300ms")]);
    let started = Instant::now();
    let mut client = RawClient::connect(&daemon.socket());
    let reply = client.reply().expect("a goodbye");
    assert_eq!(reply["error"]["code"], "busy", "{reply}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(client.reply().is_none(), "then the connection is closed");
    daemon.create("after", 2);
}

#[test]
fn connections_past_the_limit_are_refused_busy_and_the_daemon_survives() {
    let daemon = TestDaemon::start_with(&[("ORDERS_MAX_CONNECTIONS", "20")]);
    let mut held: Vec<RawClient> = Vec::new();
    let mut refused = 0;
    let status = format!("{}\n", daemon.request(json!({"cmd": "status"})));
    for _ in 0..300 {
        let mut client = RawClient::connect(&daemon.socket());
        // A refused connection gets its reply without asking, and may be closed before the
        // request is written.
        let _ = client.try_send(status.as_bytes());
        let reply = client.reply().expect("a reply");
        if reply["ok"] == true {
            held.push(client);
        } else {
            assert_eq!(reply["error"]["code"], "busy", "{reply}");
            assert!(reply["error"]["message"].as_str().expect("message").contains("limit of 20"));
            refused += 1;
        }
    }
    assert_eq!(held.len(), 20, "the limit is honoured");
    assert_eq!(refused, 280);
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    daemon.create("after", 2);
}

/// Issue 12: version 2 (the store named in every request, strict fields, an opaque cursor).
#[test]
fn a_client_of_another_protocol_version_is_told_so_plainly() {
    let daemon = TestDaemon::start();
    let mut client = RawClient::connect(&daemon.socket());
    // Lines exactly as a version 1 client wrote them: no store, a numeric cursor.
    for line in [json!({"v": 1, "cmd": "status"}), json!({"v": 1, "cmd": "events", "from": 5})] {
        let reply = client.call(line.clone());
        assert_eq!(reply["error"]["code"], "protocol_mismatch", "{line}: {reply}");
        let message = reply["error"]["message"].as_str().expect("message");
        let current = format!("version {}", orders_shared::PROTOCOL_VERSION);
        assert!(message.contains("version 1") && message.contains(&current), "{message}");
    }
    assert_eq!(client.call(daemon.request(json!({"cmd": "status"})))["ok"], true, "then it serves on");

    // The other way round: this client meets a daemon of the previous version.
    let other = TestDaemon::stopped_with(&[]);
    let listener = UnixListener::bind(other.socket()).expect("bind");
    let old_daemon = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).expect("read");
        let refusal = json!({"ok": false, "error": {"code": "protocol_mismatch",
            "message": "the client speaks protocol version 2, this daemon speaks version 1"}});
        writeln!(&stream, "{refusal}").expect("reply");
        serde_json::from_str::<Value>(&request).expect("a JSON request")
    });
    let output = other.run(["list"]);
    let request = old_daemon.join().expect("old daemon");
    assert_eq!(request["v"], orders_shared::PROTOCOL_VERSION, "{request}");
    assert_eq!(request["store"], other.data_dir().display().to_string(), "{request}");
    assert_eq!(code(&output), 5);
    let message = stderr(&output);
    assert!(message.contains("this daemon speaks version 1"), "{message}");
    // The hint names the socket in use, so that it restarts that daemon and no other.
    let restart = format!("--socket {} daemon restart", other.socket().display());
    assert!(message.contains(&restart), "{message}");
}

#[test]
fn replies_are_json_even_for_the_worst_user_names() {
    let daemon = TestDaemon::start();
    let mut client = RawClient::connect(&daemon.socket());
    for user in ["\"; DROP TABLE orders; --", "Ω≈ç√∫", "tab\there", "🦀🦀🦀", "'quote'"] {
        let reply: Value = client.call(daemon.request(json!({"cmd": "create", "user": user, "total": 2})));
        if user.contains('\t') {
            assert_eq!(reply["ok"], false, "control characters are refused: {reply}");
            continue;
        }
        assert_eq!(reply["data"]["user"], user, "{reply}");
    }
    assert_eq!(daemon.json(["list"]).as_array().map(Vec::len), Some(4));
}

/// Needs root, to run the impostor as `nobody`; skipped otherwise.
#[test]
fn a_socket_served_by_another_user_is_not_trusted() {
    const NOBODY: u32 = 65534;
    if !std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
    {
        eprintln!("skipped: needs root to run an impostor as another user");
        return;
    }
    let daemon = TestDaemon::stopped_with(&[]);
    std::fs::set_permissions(daemon.dir(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = daemon.dir().join("impostor.sock");
    // Another user's listener that would happily answer anything.
    let listen = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(8)\nwhile True:\n c,_=s.accept()\n c.sendall(b'{{\"ok\":true,\"data\":{{\"orders\":[],\"more\":false}}}}\\n')",
        socket.display().to_string()
    );
    let mut impostor = std::process::Command::new("python3")
        .args(["-c", &listen])
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .expect("start the impostor");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the impostor did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output =
        daemon.command().env("ORDERS_SOCKET", &socket).args(["list", "--json"]).output().expect("run");
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_ne!(code(&output), 0, "stdout: {}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr(&output).contains("served by uid 65534"), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}
