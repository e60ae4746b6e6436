//! `odoogate run` under a `Type=notify`-like supervisor: the test binds the
//! notify socket itself and checks READY=1 once the listener is up,
//! WATCHDOG=1 at half of `WATCHDOG_USEC`, and STOPPING=1 on SIGTERM. It
//! runs enforce mode with `proxy.listen`, which needs neither root nor eBPF.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("odoogate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &Path, listen_port: u16) -> PathBuf {
    let config = dir.join("odoogate.toml");
    let text = format!(
        "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n\n\
         [policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n\n\
         [proxy]\nlisten = \"127.0.0.1:{listen_port}\"\nupstream = \"127.0.0.1:{}\"\n\n\
         [audit]\noutput = \"file\"\nfile = \"{}\"\n\n\
         [tokens]\nstore = \"{}\"\n\n\
         [control]\nsocket = \"{}\"\n",
        free_port(),
        dir.join("audit.jsonl").display(),
        dir.join("tokens.json").display(),
        dir.join("control.sock").display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let len = socket.recv(&mut buffer).expect("a notification before the receive timeout");
    String::from_utf8(buffer[..len].to_vec()).unwrap()
}

#[test]
fn notify_ready_watchdog_stopping() {
    let dir = scratch_dir("ops-notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    let listen_port = free_port();
    let config = write_config(&dir, listen_port);
    let child = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::null())
        .spawn()
        .expect("odoogate starts");
    let mut child = Guard(child);

    let ready = receive(&socket);
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready:?}");
    assert!(TcpStream::connect(("127.0.0.1", listen_port)).is_ok(), "READY=1 came before the listener");

    // Two pings prove they repeat, not only that one was sent at start.
    assert_eq!(receive(&socket), "WATCHDOG=1");
    assert_eq!(receive(&socket), "WATCHDOG=1");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut after_term = receive(&socket);
    while after_term == "WATCHDOG=1" {
        after_term = receive(&socket);
    }
    assert_eq!(after_term, "STOPPING=1");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_notify_socket_fails_start() {
    let dir = scratch_dir("ops-notify-invalid");
    let config = write_config(&dir, free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", "relative/notify.sock")
        .output()
        .expect("odoogate runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOTIFY_SOCKET"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
