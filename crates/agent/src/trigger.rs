//! What makes the daemon cycle before its interval is up, and the local trigger: a Unix socket
//! (`agent.sock` in the data directory) on which `invagent cycle`, run while the daemon runs,
//! asks the daemon to cycle and prints its result, instead of a second cycle racing the
//! daemon's on one state file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// Why the daemon should cycle now.
#[derive(Debug)]
pub enum Trigger {
    /// The site woke us through the push channel: an instruction is waiting.
    Push,
    /// The push channel came back after a failure.
    Reconnected,
    /// `invagent cycle` on this machine; the result is written back on the stream.
    Local(UnixStream),
}

pub const SOCKET: &str = "agent.sock";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Accepts local trigger connections until `stop` is set, then removes the socket.
pub fn serve(
    data_dir: &Path,
    triggers: Sender<Trigger>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let path = socket_path(data_dir);
    // A socket file left by a daemon that was killed would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // Only the agent's owner may make it cycle.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok()
                    && line.trim() == "cycle"
                    && triggers.send(Trigger::Local(stream)).is_err()
                {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                tracing::warn!(error = %e, "The local trigger socket failed; `invagent cycle` will run its own cycle.");
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Answers a local trigger: `ok` and the summary lines, or `error` and the message.
pub fn reply(mut stream: UnixStream, result: &Result<Vec<String>, String>) {
    let text = match result {
        Ok(lines) => format!("ok\n{}\n", lines.join("\n")),
        Err(message) => format!("error\n{message}\n"),
    };
    let _ = stream.write_all(text.as_bytes());
}

/// Asks a running daemon to cycle. `None` when no daemon listens (then the caller cycles
/// itself); otherwise the daemon's result.
pub fn ask_daemon(data_dir: &Path) -> Option<Result<Vec<String>, String>> {
    let mut stream = UnixStream::connect(socket_path(data_dir)).ok()?;
    stream.write_all(b"cycle\n").ok()?;
    // A cycle with a slow site can take a while; the daemon answers when it is done.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
    let status = lines.next()?;
    let rest: Vec<String> = lines.filter(|l| !l.is_empty()).collect();
    Some(if status == "ok" {
        Ok(rest)
    } else {
        Err(rest.join("\n"))
    })
}
