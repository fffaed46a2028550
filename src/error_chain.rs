//! One line for an error and its sources.

use std::error::Error;

/// Renders an error and its sources as one line (skipping a cause whose text the line
/// already holds), so a log or status names the outer context and the underlying cause
/// together. tonic's transport errors, for one, say only "transport error" on top.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
