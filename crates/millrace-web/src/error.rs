//! What a page or action can fail with, and the status each gets.

use axum::http::StatusCode;

/// A failed page or action.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404: no such job, queue or page.
    NotFound(String),
    /// 400: a malformed filter or form, with the reason.
    BadRequest(String),
    /// 403: read-only mode or the host's permissions refused the action.
    Forbidden(String),
    /// 503: the database did not answer; the page retries.
    Unavailable(String),
}

impl PageError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn title(&self) -> &'static str {
        match self {
            PageError::NotFound(_) => "Not found",
            PageError::BadRequest(_) => "Bad request",
            PageError::Forbidden(_) => "Not allowed",
            PageError::Unavailable(_) => "Database unavailable",
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            PageError::NotFound(m)
            | PageError::BadRequest(m)
            | PageError::Forbidden(m)
            | PageError::Unavailable(m) => m,
        }
    }
}

impl From<millrace::Error> for PageError {
    fn from(err: millrace::Error) -> Self {
        use millrace::Error;
        match err {
            Error::JobNotFound(id) => PageError::NotFound(format!("job {id} not found")),
            Error::QueueNotFound(name) => PageError::NotFound(format!("queue {name:?} not found")),
            Error::InvalidArgument(m) | Error::InvalidInsert(m) | Error::Config(m) => {
                PageError::BadRequest(m)
            }
            Error::JobRunning(id) => {
                PageError::BadRequest(format!("job {id} is running; cancel it first"))
            }
            other => {
                // The whole chain: "database operation failed" alone says nothing of why.
                let mut message = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(err) = source {
                    message.push_str(": ");
                    message.push_str(&err.to_string());
                    source = err.source();
                }
                tracing::warn!(%message, "dashboard query failed");
                PageError::Unavailable(message)
            }
        }
    }
}
