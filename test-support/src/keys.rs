//! The RS256 and ES256 test key pairs (`sockyard/tests/keys`), and a configuration file that
//! names them by paths relative to itself.

use std::path::PathBuf;

use crate::tempdir::TempDir;

/// The directory of the test key pairs: `rsa-private.pem`, `rsa-public.pem`,
/// `ec-private.pem`, `ec-public.pem`.
pub const KEYS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sockyard/tests/keys");

/// A new directory holding `sockyard.toml`, whose `[auth]` signs with `algorithm` (`RS256` or
/// `ES256`) and the matching key pair, copied to `keys/` beside it and named by relative paths
/// (`keys/ec-private.pem`, …), then the `extra` lines of `[auth]`. Returns the directory
/// (removed when dropped) and the file.
pub fn config_with_relative_keys(tag: &str, algorithm: &str, extra: &str) -> (TempDir, PathBuf) {
    let kind = if algorithm == "RS256" { "rsa" } else { "ec" };
    let dir = TempDir::new(tag);
    for half in ["private", "public"] {
        let name = format!("{kind}-{half}.pem");
        let pem = std::fs::read(format!("{KEYS_DIR}/{name}")).expect("a test key");
        dir.write(&format!("keys/{name}"), &pem);
    }
    let text = format!(
        "[auth]\nalgorithm = \"{algorithm}\"\nprivate_key_file = \"keys/{kind}-private.pem\"\n\
         public_key_file = \"keys/{kind}-public.pem\"\n{extra}"
    );
    let file = dir.write("sockyard.toml", text.as_bytes());
    (dir, file)
}
