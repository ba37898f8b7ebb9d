//! AWS Lambda, as much of it as Firehose's data transformation and the course need: the
//! functions firelake holds, and invoking them.
//!
//! This is the interface the rest of firelake uses; firelake does not run functions yet,
//! so every invocation answers that the function does not exist.

use std::sync::Arc;

use bytes::Bytes;

use crate::store::Store;

/// A synchronous (RequestResponse) invocation's answer.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// What the handler returned, or its error document when `function_error` is set.
    pub payload: Bytes,
    /// `X-Amz-Function-Error`: `Some("Unhandled")` when the function failed (it raised,
    /// timed out or crashed); the payload then is `{"errorMessage", "errorType", ...}`.
    pub function_error: Option<String>,
}

/// Why an invocation did not reach the function's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// No such function (Lambda's ResourceNotFoundException).
    NotFound(String),
    /// The payload is over the invocation limit (RequestTooLargeException).
    TooLarge(String),
    /// Anything else that stopped the invocation (a runtime the machine lacks, ...).
    Failed(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::NotFound(m) | InvokeError::TooLarge(m) | InvokeError::Failed(m) => f.write_str(m),
        }
    }
}

/// Every Lambda function firelake holds.
pub struct Lambda {
    #[allow(dead_code)]
    store: Arc<Store>,
}

impl Lambda {
    pub fn start(store: Arc<Store>) -> std::io::Result<Lambda> {
        Ok(Lambda { store })
    }

    /// Invokes `function` (a name or an ARN) of `account` and `region` synchronously.
    pub async fn invoke(&self, account: &str, region: &str, function: &str, payload: Bytes) -> Result<Invoked, InvokeError> {
        let _ = payload;
        Err(InvokeError::NotFound(format!("Function not found: arn:aws:lambda:{region}:{account}:function:{function}")))
    }

    /// Stops every worker.
    pub async fn shutdown(&self) {}
}
