//! The managed-keys file the benchmarks load: key `i` has token `bench-key-<i>` and the
//! scopes of [`KEY_SCOPES`](crate::mix::KEY_SCOPES).

use crate::mix::KEY_SCOPES;
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::path::Path;

/// The plaintext token of key `i`.
pub fn token(i: u32) -> String {
    format!("bench-key-{i}")
}

/// Writes `count` keys as `{"credentials":[...]}`, streamed so a million keys need no
/// document in memory.
pub fn write(path: &Path, count: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(fail)?;
    let mut out = BufWriter::new(file);
    let scopes = serde_json::to_string(&KEY_SCOPES).expect("scopes serialise");
    out.write_all(b"{\"credentials\":[\n").map_err(fail)?;
    for i in 0..count {
        let hash = hex::encode(Sha256::digest(token(i).as_bytes()));
        let sep = if i + 1 == count { "" } else { "," };
        writeln!(
            out,
            "{{\"id\":\"bench-{i}\",\"tokenHash\":\"{hash}\",\"scopes\":{scopes}}}{sep}"
        )
        .map_err(fail)?;
    }
    out.write_all(b"]}\n").map_err(fail)?;
    out.flush().map_err(fail)
}
