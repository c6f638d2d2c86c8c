//! The small programs the `sockyard wrap` tests wrap (Python scripts that print their
//! environment, speak gwsocket framing or listen on TCP), and the gwsocket frames they read.

use std::process::Command;
use std::sync::OnceLock;

/// The Python preamble of the gwsocket programs: `read(n)` reads exactly `n` bytes of the
/// program's input (`r`), exiting when it ends.
macro_rules! gw_reader {
    () => {
        r#"
import struct, sys
r = sys.stdin.buffer
def read(n):
    b = b""
    while len(b) < n:
        c = r.read(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
"#
    };
}

/// The Python interpreter, by absolute path (the wrapped program's `PATH` may be cleared).
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by these tests");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// For every input line (and once at start), prints the environment variables the tests look
/// at as one JSON object (`null` when unset).
pub const ENV_PRINTER: &str = r#"
import json, os, sys
keys = ["PATH", "LD_LIBRARY_PATH", "FOO", "HOME", "ROOM", "QUERY_STRING", "REMOTE_ADDR", "PORT"]
def show():
    print(json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
show()
for line in sys.stdin:
    show()
"#;

/// gwsocket framing both ways: reads frames (big-endian id, type, length) and answers each
/// with the same frame back to its sender and an `all:`-prefixed copy to everyone (id 0); a
/// payload `to:N …` goes to connection N only.
pub const GW_ECHO: &str = concat!(
    gw_reader!(),
    r#"
w = sys.stdout.buffer
while True:
    sender, kind, n = struct.unpack(">III", read(12))
    p = read(n)
    if p.startswith(b"to:"):
        dest = int(p[3:].split(b" ")[0])
        w.write(struct.pack(">III", dest, kind, len(p)) + p)
    else:
        w.write(struct.pack(">III", sender, kind, len(p)) + p)
        m = b"all:" + p
        w.write(struct.pack(">III", 0, kind, len(m)) + m)
    w.flush()
"#
);

/// Reads gwsocket frames from clients and prints one line per frame:
/// `from=ID type=T len=N hex=PAYLOAD`.
pub const GW_DUMP: &str = concat!(
    gw_reader!(),
    r#"
while True:
    sender, kind, n = struct.unpack(">III", read(12))
    p = read(n)
    print("from=%d type=%d len=%d hex=%s" % (sender, kind, n, p.hex()), flush=True)
"#
);

/// Reads client lines and writes gwsocket output: `DEST TEXT` sends TEXT to DEST (0: everyone)
/// as a text frame; `raw HEX` writes those bytes as they are; `exit` exits.
pub const LINES_TO_GW: &str = r#"
import struct, sys
w = sys.stdout.buffer
for line in sys.stdin:
    line = line.rstrip("\n")
    if line == "exit":
        sys.exit(0)
    head, _, rest = line.partition(" ")
    if head == "raw":
        w.write(bytes.fromhex(rest))
    else:
        p = rest.encode()
        w.write(struct.pack(">III", int(head), 1, len(p)) + p)
    w.flush()
"#;

/// A TCP program for `--tcp`: listens on 127.0.0.1:$PORT, accepts one connection, greets it
/// with `port=PORT`, echoes its lines and exits when it closes.
pub const TCP_ECHO: &str = r#"
import os, socket
port = int(os.environ["PORT"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(1)
c, _ = s.accept()
c.sendall(("port=%d\n" % port).encode())
f = c.makefile("rb")
for line in f:
    c.sendall(b"tcp:" + line)
"#;

/// A gwsocket frame: big-endian id, type (1 text, 2 binary), length, then the payload.
pub fn gw_frame(id: u32, kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
